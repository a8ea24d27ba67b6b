"""`run`: an experiment end to end (stream, pretraining, every strategy x seed, files, table).

The whole run is checked (and its stream built) before the run folder is created: a mistake in
what was given prints one line and leaves nothing behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cycl_bench import config as configs
from cycl_bench import runner
from cycl_bench.errors import UserError

HELP = "run an experiment: pretrain, train every strategy x seed, write results, plots, table"
DEFAULT_OUT = "runs"
# options that change what a run computes: a resumed run keeps what its config.yaml says
FIXED_ON_RESUME = ("seeds", "data", "device", "fast", "out")


def add_arguments(parser):
    parser.add_argument("experiment", nargs="?", help="a shipped experiment (see `list`)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. seeds=[0]"
    )
    parser.add_argument(
        "--strategy", nargs="+", metavar="NAME", help="run only these strategy entries"
    )
    parser.add_argument("--seeds", nargs="+", type=int, metavar="N", help="training seeds")
    parser.add_argument("--data", help="real | synthetic | folder:PATH (default: real)")
    parser.add_argument("--data-root", help="where datasets live (default: $CYCL_BENCH_DATA)")
    parser.add_argument("--out", help=f"folder for run folders (default: {DEFAULT_OUT})")
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"], help="W&B mode")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument(
        "--fast", action="store_true", help="smoke preset: tiny backbone, short schedules"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder")
    parser.add_argument(
        "--cache-dir", help="pretrained-checkpoint cache (default: $CYCL_BENCH_CACHE)"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show library output on the console too (it goes to RUN_DIR/{runner.LOG_FILE})",
    )


def _resumed(args) -> tuple[runner.Plan, Path]:
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
    config = configs.select_strategies(runner.load_run(run_dir), args.strategy)
    changes = {"wandb": args.wandb, "data_root": args.data_root}
    config = config.model_copy(update={k: v for k, v in changes.items() if v is not None})
    return runner.prepare(config, resume=run_dir), run_dir


def _started(args) -> tuple[runner.Plan, Path]:
    if not args.experiment:
        raise UserError("name an experiment (see `python -m cycl_bench list`)")
    config = configs.resolve(
        args.experiment,
        overrides=args.overrides,
        fast=args.fast,
        strategies=args.strategy,
        seeds=args.seeds,
        data=args.data,
        data_root=args.data_root,
        wandb=args.wandb,
        device=args.device,
    )
    out = Path(args.out or DEFAULT_OUT)
    runner.check_out_dir(out)
    plan = runner.prepare(config)
    return plan, runner.start(plan.config, out)


def run(args) -> int:
    from cycl_bench.logging.library_output import library_output

    if args.strategy:  # `--strategy a b key=value`: the overrides are not strategy names
        args.overrides = [*args.overrides, *(s for s in args.strategy if "=" in s)]
        args.strategy = [s for s in args.strategy if "=" not in s]
    plan, run_dir = _resumed(args) if args.resume else _started(args)
    print(f"{'resuming' if args.resume else 'run folder:'} {run_dir}", file=sys.stderr)
    try:
        with library_output(run_dir / runner.LOG_FILE, verbose=args.verbose):
            outcome = runner.run(
                plan,
                run_dir,
                cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                echo=lambda line: print(line, file=sys.stderr),
            )
    except BaseException:
        print(
            f"run stopped; finished results and the resolved config are in {run_dir} "
            f"(continue with --resume {run_dir})",
            file=sys.stderr,
        )
        raise
    from cycl_bench.logging.console import comparison_table

    print(comparison_table(outcome.results))
    print(f"\nresults: {run_dir / runner.RESULTS_DIR}\nplots:   {run_dir / runner.PLOTS_DIR}")
    return 0
