"""`export`: a saved model of a run to QONNX or ONNX, checked against PyTorch on the test set."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cycl_bench import run_folder, runner
from cycl_bench.cli import kinds
from cycl_bench.errors import UserError, suggest

if TYPE_CHECKING:
    from cycl_bench.export.size import DeployedSize

HELP = "export a run's saved model to QONNX or ONNX and check it against PyTorch on the test set"
FORMAT_NAMES = ("qonnx", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=kinds.RUN_DIR, help="a run folder (runs/<exp>/<time>)")
    parser.add_argument(
        "--entry", required=True, metavar="ENTRY", help="the strategy entry, e.g. cwr_star"
    )
    parser.add_argument("--seed", type=kinds.SEED, required=True, help="the training seed")
    parser.add_argument("--format", required=True, metavar="FORMAT", help=" | ".join(FORMAT_NAMES))
    parser.add_argument("--out", type=kinds.OUT_FILE, required=True, help="the file to write")
    parser.add_argument(
        "--limit",
        type=kinds.LIMIT,
        help="check on N test images spread over the test set (default: all of it)",
    )


def check_format(name: str) -> str:
    if name not in FORMAT_NAMES:
        raise UserError(
            f"unknown format '{name}'{suggest(name, FORMAT_NAMES)}: use "
            f"--format {' or --format '.join(FORMAT_NAMES)}"
        )
    return name


def check_writable(out: Path) -> Path:
    """The output file, its folder created; a UserError when it cannot be written."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file name such as {out / 'model.onnx'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}."):
            pass
    except OSError as error:
        raise UserError(
            f"cannot write --out {out}: {error.strerror or error}; choose a writable path"
        ) from None
    return out


def saved_model_file(run_dir: Path, entry: str, seed: int) -> Path:
    """The saved model of (entry, seed) in a run, or a UserError saying why there is none."""
    from cycl_bench.export.saved import MODELS_DIR, model_path

    config = run_folder.load_run(run_dir)
    entries = list(config.strategy)
    if entry not in entries:
        raise UserError(
            f"strategy entry '{entry}' is not in this run{suggest(entry, entries)}; "
            f"its entries: {', '.join(entries)}"
        )
    if seed not in config.seeds:
        raise UserError(
            f"seed {seed} is not a seed of this run; its seeds: {', '.join(map(str, config.seeds))}"
        )
    if not (run_dir / MODELS_DIR).is_dir():
        raise UserError(
            f"{run_dir} has no saved models (no {MODELS_DIR}/ folder: it was run before "
            "models were saved); run the experiment again to export its models"
        )
    path = model_path(run_dir, entry, seed)
    if not path.is_file():
        raise UserError(
            f"no saved model for {entry} seed {seed} in {run_dir / MODELS_DIR} (the cell has "
            f"not finished); continue the run with: python -m cycl_bench run --resume {run_dir}"
        )
    check_recorded_sha256(run_dir, entry, seed, path)
    return path


def check_recorded_sha256(run_dir: Path, entry: str, seed: int, path: Path) -> None:
    """A UserError when the results file of the entry records another sha256 for this seed's
    model than the file's: it is not the model those numbers were measured with."""
    from cycl_bench.evaluation.results import load_results
    from cycl_bench.export.saved import file_sha256

    results_file = run_folder.results_path(run_dir, entry)
    if not results_file.is_file():
        return  # the cell's numbers were never written: nothing to tie the model to
    recorded = {s.seed: s.model_sha256 for s in load_results(results_file).per_seed}
    if recorded.get(seed) and recorded[seed] != file_sha256(path):
        raise UserError(
            f"{path} is not the model {results_file} was measured with (its sha256 differs from "
            f"the one recorded there); restore the run's model, or run {entry} again"
        )


def run(args: argparse.Namespace) -> int:
    format_name = check_format(args.format)
    limit: int | None = args.limit  # checked by its kind
    run_folder.check_not_in_a_run(Path(args.out))
    run_dir = Path(args.run_dir)
    path = saved_model_file(run_dir, args.entry, args.seed)
    out = check_writable(Path(args.out))  # creates its folder: after every other check

    from cycl_bench.export.check import (
        AGREEMENT_THRESHOLD,
        batches,
        compare_predictions,
        spread_subset,
    )
    from cycl_bench.export.formats import FORMATS, export_model
    from cycl_bench.export.saved import load_model
    from cycl_bench.export.size import deployed_size

    model, saved = load_model(path)
    export_format = FORMATS[format_name]
    export_model(model, out, saved.input_shape, format_name)
    print(
        f"exported {saved.backbone} ({saved.deployed_bits}-bit) from {path} to {out} "
        f"({out.stat().st_size:,} bytes): {export_format.description}"
    )

    stream = runner.build_stream(run_folder.load_run(run_dir))
    test_set = spread_subset(stream.test_views, limit)
    started = time.perf_counter()
    result = compare_predictions(model, export_format.predictor(out), batches(test_set))
    print(
        f"checked on {result.images} test images of {stream.name} ({stream.source} data) in "
        f"{time.perf_counter() - started:.1f} s: agreement {result.agreement:.2%} "
        f"({result.agreeing}/{result.images}), largest logit difference "
        f"{result.max_logit_difference:.3g}; accuracy PyTorch "
        f"{result.reference_correct / result.images:.1%}, exported "
        f"{result.exported_correct / result.images:.1%}"
    )
    print(describe_size(deployed_size(model)))
    if not result.passed:
        print(
            f"export check failed: the exported graph agrees with PyTorch on "
            f"{result.agreement:.2%} of the test images, below {AGREEMENT_THRESHOLD:.1%}; "
            f"the file is kept for inspection: {out}",
            file=sys.stderr,
        )
        return 1
    return 0


def describe_size(size: DeployedSize) -> str:
    higher = ", ".join(
        f"{count:,} {'float32' if bits == 32 else f'at {bits} bits'}"
        for bits, count in size.numbers_by_bits.items()
        if bits > 1
    )
    parts = ", ".join(f"{kind} {count:,}" for kind, count in size.bytes_by_kind.items())
    return (
        f"deployed size: {size.packed_bytes:,} bytes ({parts}) vs {size.fp32_bytes:,} bytes at "
        f"FP32 ({size.compression:.1f}x smaller); stored numbers: {size.binary_numbers:,} "
        f"binary, {size.higher_precision_numbers:,} higher precision ({higher})"
    )
