"""`sweep`: several experiments x a grid of config overrides, one run folder per point.

Every point is checked in full (`runner.prepare`) before any starts; then the run folders and the
sweep's index are written and the points run one after another, each on the executor
(`--executor ray` runs each point's cells in parallel). `compare SWEEP_DIR` tabulates them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cycl_bench import run_folder, runner
from cycl_bench import sweep as sweeps
from cycl_bench.cli import run as run_command

HELP = "run experiments over a grid of config overrides: one run folder per point, an index"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiments",
        nargs="+",
        metavar="EXPERIMENT",
        help="shipped experiments, then KEY=VALUE overrides applied to every point",
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="KEY=V1,V2",
        help="grid axes: a config override key and its values (YAML, comma-separated)",
    )
    run_command.add_run_options(parser)
    parser.set_defaults(overrides=[])


PROGRESS_FROM_POINTS = 20
"""A grid this large says how far the check of its points is (each builds its stream)."""


def run(args: argparse.Namespace) -> int:
    from cycl_bench.executors import make_executor

    args.overrides = [*(a for a in args.experiments if "=" in a), *args.overrides]
    experiments = [a for a in args.experiments if "=" not in a]
    run_command.split_strategy_overrides(args)
    executor = make_executor(args.executor, workers=args.workers, address=args.ray_address)
    points = sweeps.expand(experiments, args.grid, args.overrides)
    plans = []
    for number, point in enumerate(points, 1):
        if len(points) >= PROGRESS_FROM_POINTS and (number == 1 or number % 10 == 0):
            print(f"checking sweep points: {number}/{len(points)}", file=sys.stderr)
        plans.append(_checked(args, point, number, len(points)))
    out = Path(args.out or run_command.DEFAULT_OUT)
    run_folder.check_out_dir(out)
    try:
        executor.connect()
        run_dirs = [run_folder.start(plan.config, out) for plan in plans]
        sweep_dir = run_folder.new_run_dir(out, sweeps.SWEEPS_DIR)
        index = sweeps.write_index(sweep_dir, points, run_dirs)
        print(f"sweep of {len(points)} runs: {index}", file=sys.stderr)
        for i, (point, plan, run_dir) in enumerate(zip(points, plans, run_dirs, strict=True), 1):
            print(f"\n[run {i}/{len(points)}] {point.describe()}: {run_dir}", file=sys.stderr)
            run_command.execute(plan, run_dir, executor, verbose=args.verbose)
    finally:
        executor.close()
    print(f"\nsweep done: {index}\ncompare: python -m cycl_bench compare {sweep_dir}")
    return 0


def _checked(args: argparse.Namespace, point: sweeps.Point, number: int, total: int) -> runner.Plan:
    """The point's run, checked in full and its stream built; its problems named with it."""
    from cycl_bench.errors import UserError

    try:
        config = run_command.resolve(args, point.experiment, point.overrides)
        return runner.prepare(config, cache_dir=args.cache_dir)
    except UserError as error:
        raise UserError(f"sweep point {number}/{total} ({point.describe()}): {error}") from None
