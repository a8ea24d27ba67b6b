"""`run`: an experiment end to end (stream, pretraining, every strategy x seed, files, table)."""

from __future__ import annotations

import sys
from pathlib import Path

from cycl_bench import config as configs
from cycl_bench import runner
from cycl_bench.errors import UserError

HELP = "run an experiment: pretrain, train every strategy x seed, write results, plots, table"


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
    parser.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"], help="W&B mode")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument(
        "--fast", action="store_true", help="smoke preset: tiny backbone, short schedules"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder")
    parser.add_argument(
        "--cache-dir", help="pretrained-checkpoint cache (default: $CYCL_BENCH_CACHE)"
    )


def run(args) -> int:
    if args.strategy:  # `--strategy a b key=value`: the overrides are not strategy names
        args.overrides = [*args.overrides, *(s for s in args.strategy if "=" in s)]
        args.strategy = [s for s in args.strategy if "=" not in s]
    if args.resume:
        if args.experiment or args.overrides:
            raise UserError(
                "--resume continues a run as it was configured: drop the other arguments"
            )
        run_dir = Path(args.resume)
        config = runner.load_run(run_dir)
        print(f"resuming {run_dir}", file=sys.stderr)
    else:
        if not args.experiment:
            raise UserError("name an experiment (see `python -m cycl_bench list`)")
        config = configs.resolve(
            args.experiment,
            overrides=args.overrides,
            fast=args.fast,
            seeds=args.seeds,
            data=args.data,
            data_root=args.data_root,
            wandb=args.wandb,
            device=args.device,
        )
        run_dir = runner.start(config, Path(args.out))
        print(f"run folder: {run_dir}", file=sys.stderr)
    try:
        outcome = runner.run(
            config,
            run_dir,
            strategies=args.strategy,
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
