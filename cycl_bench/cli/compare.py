"""`compare`: results files, run folders or sweep folders side by side, with the comparison plots.

A sweep folder (its `index.json`) stands for the run folders it lists; its results are compared
per stream (one table and one plot per protocol), since a sweep may span experiments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cycl_bench.cli import kinds
from cycl_bench.errors import UserError, check_writable_folder
from cycl_bench.evaluation.results import Results, load_results

HELP = "compare results files or run folders in one table and one plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", type=kinds.RESULTS_OR_FOLDERS, nargs="+", metavar="RESULT_RUN_OR_SWEEP_DIR"
    )
    parser.add_argument(
        "--out", type=kinds.FOLDER, default="comparison", help="folder for the plots"
    )
    parser.add_argument(
        "--force", action="store_true", help="compare results of different protocols anyway"
    )


def collect(paths: list[str]) -> list[tuple[Path, Results]]:
    """Every results file named, or found under the run folders named (results/*.json) and
    the run folders of the sweeps named."""
    from cycl_bench import sweep

    found = []
    for given in paths:
        path = Path(given)
        if sweep.is_sweep(path):
            found.extend(collect([str(run_dir) for run_dir in sweep.run_dirs_of(path)]))
            continue
        if path.is_dir():
            files = sorted(path.glob("results/*.json")) or sorted(path.glob("*.json"))
            if not files:
                raise UserError(f"no results files in {path} (expected {path}/results/*.json)")
        else:
            files = [path]
        found.extend((file, load_results(file)) for file in files)
    return found


def check_same_protocol(found: list[tuple[Path, Results]]) -> None:
    hashes: dict[str, list[Path]] = {}
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


def by_protocol(found: list[tuple[Path, Results]]) -> list[list[tuple[Path, Results]]]:
    """The results grouped by stream, in the order first seen."""
    groups: dict[str, list[tuple[Path, Results]]] = {}
    for path, results in found:
        groups.setdefault(results.benchmark.protocol_hash, []).append((path, results))
    return list(groups.values())


def distinct(results: list[Results]) -> list[Results]:
    """Results whose rows would carry the same label (an entry at several grid points) get what
    tells them apart (strategy parameters, other config keys) in their method name, for the table
    and the plot only."""
    from cycl_bench.evaluation.plots import method_labels

    labels = method_labels(results)
    shown = list(results)
    for label in set(labels):
        same = [i for i, other in enumerate(labels) if other == label]
        if len(same) < 2:
            continue
        settings = [_settings(results[i]) for i in same]
        keys = sorted(
            {k for s in settings for k in s if any(s.get(k) != t.get(k) for t in settings)}
        )
        told = [" ".join(f"{key}={own.get(key)}" for key in keys) for own in settings]
        for i, values in zip(same, told, strict=True):
            if told.count(values) > 1:  # the same settings twice: number them
                values = f"{values} #{told[: same.index(i) + 1].count(values)}".strip()
            config = results[i].config
            entry = config.get("strategy_entry") or results[i].method.strategy
            config = {**config, "strategy_entry": f"{entry} {values}"}
            shown[i] = results[i].model_copy(update={"config": config})
    return shown


def _settings(results: Results) -> dict[str, object]:
    """The row's strategy parameters and every other config key, flat ('pretrain.max_bits')."""
    flat: dict[str, object] = dict(results.method.params)
    pending = [("", {k: v for k, v in results.config.items() if k != "strategy"})]
    while pending:
        prefix, mapping = pending.pop()
        for key, value in mapping.items():
            if isinstance(value, dict):
                pending.append((f"{prefix}{key}.", value))
            elif key != "strategy_entry":
                flat[f"{prefix}{key}"] = value
    return flat


def run(args: argparse.Namespace) -> int:
    from cycl_bench import sweep
    from cycl_bench.evaluation.plots import plot_accuracy_curves
    from cycl_bench.logging.console import comparison_table

    check_writable_folder(args.out, "--out")
    found = collect(args.paths)
    if any(sweep.is_sweep(Path(path)) for path in args.paths) and not args.force:
        groups = by_protocol(found)  # a sweep may span streams: one comparison per stream
    else:
        if not args.force:
            check_same_protocol(found)
        groups = [found]
    for number, group in enumerate(groups):
        results = distinct([r for _, r in group])
        name = "accuracy_curves.png"
        if len(groups) > 1:
            bench = results[0].benchmark
            name = f"accuracy_curves_{bench.name}_{bench.protocol_hash}.png"
        print(("\n" if number else "") + comparison_table(results))
        plot = plot_accuracy_curves(results, Path(args.out) / name)
        print(f"\nplot: {plot}")
    return 0
