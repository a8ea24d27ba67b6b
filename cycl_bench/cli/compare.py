"""`compare`: results files or run folders side by side, with the comparison plots."""

from __future__ import annotations

from pathlib import Path

from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import Results, load_results

HELP = "compare results files or run folders in one table and one plot"


def add_arguments(parser):
    parser.add_argument("paths", nargs="+", metavar="RESULT_OR_RUN_DIR")
    parser.add_argument("--out", default="comparison", help="folder for the plots")
    parser.add_argument(
        "--force", action="store_true", help="compare results of different protocols anyway"
    )


def collect(paths: list[str]) -> list[tuple[Path, Results]]:
    """Every results file named, or found under the run folders named (results/*.json)."""
    found = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(path.glob("results/*.json")) or sorted(path.glob("*.json"))
            if not files:
                raise UserError(f"no results files in {path} (expected {path}/results/*.json)")
        else:
            files = [path]
        found.extend((file, load_results(file)) for file in files)
    return found


def check_same_protocol(found: list[tuple[Path, Results]]) -> None:
    hashes = {}
    for path, results in found:
        hashes.setdefault(results.benchmark.protocol_hash, []).append(path)
    if len(hashes) > 1:
        described = "; ".join(
            f"{digest}: {', '.join(str(p) for p in paths)}" for digest, paths in hashes.items()
        )
        raise UserError(
            "these results come from different protocols (streams), so their numbers are not "
            f"comparable ({described}); use --force to compare them anyway"
        )


def run(args) -> int:
    from cycl_bench.evaluation.plots import plot_accuracy_curves
    from cycl_bench.logging.console import comparison_table

    found = collect(args.paths)
    if not args.force:
        check_same_protocol(found)
    results = [r for _, r in found]
    print(comparison_table(results))
    plot = plot_accuracy_curves(results, Path(args.out) / "accuracy_curves.png")
    print(f"\nplot: {plot}")
    return 0
