"""`run`: an experiment end to end (stream, pretraining, every strategy x seed, files, table).

The whole run is checked (and its stream built) before the run folder is created: a mistake in
what was given prints one line and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cycl_bench import config as configs
from cycl_bench import run_folder, runner
from cycl_bench.cli import kinds
from cycl_bench.errors import UserError

if TYPE_CHECKING:
    from cycl_bench.executors import Executor

HELP = "run an experiment: pretrain, train every strategy x seed, write results, plots, table"
DEFAULT_OUT = "runs"
# options that change what a run computes: a resumed run keeps what its config.yaml says
FIXED_ON_RESUME = ("seeds", "data", "device", "fast", "out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment", nargs="?", metavar="EXPERIMENT", help="a shipped experiment (see `list`)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. seeds=[0]"
    )
    parser.add_argument("--resume", type=kinds.RUN_DIR, help="continue a run folder")
    add_run_options(parser)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a new run (`run` and `sweep`)."""
    parser.add_argument(
        "--strategy", nargs="+", metavar="ENTRY", help="run only these strategy entries"
    )
    parser.add_argument("--seeds", type=kinds.SEED, nargs="+", help="training seeds")
    parser.add_argument(
        "--data", metavar="DATA", help="real | synthetic | folder:PATH (default: real)"
    )
    parser.add_argument(
        "--data-root", type=kinds.FOLDER, help="where datasets live (default: $CYCL_BENCH_DATA)"
    )
    parser.add_argument(
        "--out", type=kinds.FOLDER, help=f"folder for run folders (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"], help="W&B mode")
    parser.add_argument("--device", type=kinds.DEVICE, help="cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument(
        "--fast", action="store_true", help="smoke preset: tiny backbone, short schedules"
    )
    parser.add_argument(
        "--cache-dir",
        type=kinds.FOLDER,
        help="pretrained-checkpoint cache (default: $CYCL_BENCH_CACHE)",
    )
    parser.add_argument(
        "--executor",
        metavar="EXECUTOR",
        help="where the strategy x seed cells run: local (default) or ray",
    )
    parser.add_argument(
        "--workers",
        type=kinds.WORKERS,
        help="with --executor ray: cells at once (default: one per core)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: join a cluster (auto or HOST:PORT; default: start Ray here)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show library output on the console too (it goes to RUN_DIR/{run_folder.LOG_FILE})",
    )


def _resumed(args: argparse.Namespace, executor: Executor) -> tuple[runner.Plan, Path]:
    """The run folder's config as it was recorded; --strategy narrows it, --wandb, --data-root
    and --cache-dir (where things are, not what is computed) apply; the rest is refused."""
    refused = [f"--{name}" for name in FIXED_ON_RESUME if getattr(args, name)]
    if args.experiment or args.overrides:
        refused.append("the experiment and KEY=VALUE overrides")
    if refused:
        raise UserError(
            f"--resume continues a run as its config.yaml says: drop {', '.join(refused)}"
        )
    run_dir = Path(args.resume)
    config = configs.select_strategies(run_folder.load_run(run_dir), args.strategy)
    changes = {"wandb": args.wandb, "data_root": args.data_root}
    config = config.model_copy(update={k: v for k, v in changes.items() if v is not None})
    plan = runner.prepare(config, resume=run_dir, cache_dir=args.cache_dir)
    executor.connect()
    return plan, run_dir


def resolve(
    args: argparse.Namespace, experiment: str, overrides: list[str]
) -> configs.ExperimentConfig:
    """The config of `experiment` with the run options of `args` and `overrides`."""
    return configs.resolve(
        experiment,
        overrides=overrides,
        fast=args.fast,
        strategies=args.strategy,
        seeds=args.seeds,
        data=args.data,
        data_root=args.data_root,
        wandb=args.wandb,
        device=args.device,
    )


def _started(args: argparse.Namespace, executor: Executor) -> tuple[runner.Plan, Path]:
    if not args.experiment:
        raise UserError("name an experiment (see `python -m cycl_bench list`)")
    config = resolve(args, args.experiment, args.overrides)
    out = Path(args.out or DEFAULT_OUT)
    run_folder.check_out_dir(out)
    plan = runner.prepare(config, cache_dir=args.cache_dir)
    executor.connect()  # an unreachable cluster is found before the run folder exists
    return plan, run_folder.start(plan.config, out)


def split_strategy_overrides(args: argparse.Namespace) -> None:
    """`--strategy a b key=value`: the overrides are not strategy names."""
    if args.strategy:
        args.overrides = [*args.overrides, *(s for s in args.strategy if "=" in s)]
        args.strategy = [s for s in args.strategy if "=" not in s]


def execute(
    plan: runner.Plan, run_dir: Path, executor: Executor, *, verbose: bool
) -> runner.RunOutcome:
    """`runner.run` with library output in the run's log file, the run folder locked against a
    second run in it; where to continue if it stops."""
    from cycl_bench.logging.library_output import library_output

    with run_folder.locked(run_dir):
        try:
            with library_output(run_dir / run_folder.LOG_FILE, verbose=verbose):
                return runner.run(
                    plan,
                    run_dir,
                    executor=executor,
                    echo=lambda line: print(line, file=sys.stderr),
                )
        except BaseException:
            print(
                f"run stopped; finished results and the resolved config are in {run_dir} "
                f"(continue with --resume {run_dir})",
                file=sys.stderr,
            )
            raise


def run(args: argparse.Namespace) -> int:
    from cycl_bench.executors import make_executor

    split_strategy_overrides(args)
    executor = make_executor(args.executor, workers=args.workers, address=args.ray_address)
    try:
        plan, run_dir = _resumed(args, executor) if args.resume else _started(args, executor)
        print(f"{'resuming' if args.resume else 'run folder:'} {run_dir}", file=sys.stderr)
        outcome = execute(plan, run_dir, executor, verbose=args.verbose)
    finally:
        executor.close()
    from cycl_bench.logging.console import comparison_table

    print(comparison_table(outcome.results))
    print(
        f"\nresults: {run_dir / run_folder.RESULTS_DIR}\nplots:   {run_dir / run_folder.PLOTS_DIR}"
    )
    return 0
