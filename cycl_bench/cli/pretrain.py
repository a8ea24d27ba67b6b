"""`pretrain`: pretrain a backbone under a precision schedule and save a cached checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from cycl_bench.cli import kinds
from cycl_bench.errors import UserError, check_writable_folder
from cycl_bench.pretrain.config import STRATEGIES, PretrainConfig

HELP = "pretrain a backbone with a cyclic (or constant) precision schedule"
DEFAULT_OUT = Path("runs") / "pretrain"
LOG_FILE = "pretrain.log"

# option -> PretrainConfig field (defaults come from PretrainConfig)
CONFIG_OPTIONS = {
    "--schedule": "schedule",
    "--mode": "mode",
    "--min-bits": "min_bits",
    "--max-bits": "max_bits",
    "--cycles": "cycles",
    "--eval-bits": "eval_bits",
    "--grad-bits": "grad_bits",
    "--closing-fraction": "closing_fraction",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "lr",
    "--weight-decay": "weight_decay",
    "--pretrain-data": "data",
    "--num-workers": "num_workers",
    "--devices": "devices",
    "--strategy": "strategy",
}
CHOICES = {
    "schedule": ["cyclic", "constant", "none"],
    "mode": ["cyclebnn", "cpt"],
    "strategy": list(STRATEGIES),
}
HELP_NOTES = {
    "schedule": "cyclic: cosine cycle min..max bits; constant: eval bits throughout",
    "closing_fraction": "last fraction of steps at the eval bits (default 0.1 in cpt mode, else 0)",
    "data": "synthetic (default), folder:PATH, first_experience or a benchmark name",
    "devices": "processes training together (DDP), one per CPU process or GPU (default: 1)",
    "strategy": "auto (default; ddp_spawn for several devices), ddp, ddp_spawn or ddp_fork",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone",
        required=True,
        metavar="BACKBONE",
        help="registered backbone, e.g. resnet18_bnn",
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        metavar="BENCHMARK",
        help="registered benchmark, e.g. core50_nc",
    )
    parser.add_argument(
        "--data",
        default="real",
        metavar="DATA",
        help="real | synthetic | folder:PATH (default: real)",
    )
    parser.add_argument(
        "--data-root", type=kinds.FOLDER_PATH, help="dataset folder (default: user cache)"
    )
    parser.add_argument(
        "--out", type=kinds.FOLDER_PATH, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}"
    )
    parser.add_argument(
        "--cache-dir",
        type=kinds.FOLDER_PATH,
        help="checkpoint cache (default: $CYCL_BENCH_CACHE, else the user cache)",
    )
    parser.add_argument("--seed", type=kinds.SEED, default=0)
    parser.add_argument(
        "--device", type=kinds.DEVICE, default="cpu", help="cpu, cuda, cuda:1 (default: cpu)"
    )
    parser.add_argument("--fast", action="store_true", help="a real but very short training")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show library output on the console too (it goes to OUT/{LOG_FILE})",
    )
    fields = PretrainConfig.model_fields
    for option, name in CONFIG_OPTIONS.items():
        annotation = fields[name].annotation
        converters: dict[object, type] = {int: int, float: float}
        kind = converters.get(annotation, float if name.endswith("fraction") else str)
        parser.add_argument(
            option,
            dest=f"config_{name}",
            type=kind,
            choices=CHOICES.get(name),
            metavar=name.upper() if name not in CHOICES else None,
            help=HELP_NOTES.get(name, f"default: {fields[name].default}"),
        )


def run(args: argparse.Namespace) -> int:
    from cycl_bench.logging.console import precision_label
    from cycl_bench.logging.library_output import library_output
    from cycl_bench.pretrain.data import check_source
    from cycl_bench.registry import BACKBONES, BENCHMARKS
    from cycl_bench.spec import RunSpec

    given = {name: getattr(args, f"config_{name}") for name in CONFIG_OPTIONS.values()}
    given = {name: value for name, value in given.items() if value is not None}
    try:
        config = PretrainConfig(**given)
    except ValidationError as error:  # --lr nan: the option and what it must be
        first = error.errors()[0]
        options = {field: option for option, field in CONFIG_OPTIONS.items()}
        option = options.get(str(first["loc"][0]), str(first["loc"][0]))
        raise UserError(f"{option} {first['input']!r}: {first['msg'].lower()}") from None
    BACKBONES.get(args.backbone)  # fail on a bad name before loading any data
    check_source(config)
    check_writable_folder(args.out, "--out")
    from cycl_bench.spec import default_cache_dir

    check_writable_folder(args.cache_dir or default_cache_dir(), "--cache-dir")
    options = {"data_root": args.data_root} if args.data_root else {}
    stream = BENCHMARKS.build(args.benchmark, data=args.data, seed=args.seed, **options)
    spec = RunSpec.of(
        args.backbone,
        stream.image_shape,
        mode=config.mode,
        eval_bits=config.eval_bits,
        cache_dir=args.cache_dir,
        device=args.device,
    )

    from cycl_bench.pretrain.run import pretrain

    with library_output(args.out / LOG_FILE, verbose=args.verbose):
        result = pretrain(
            config,
            spec,
            stream=stream,
            seed=args.seed,
            out_dir=args.out,
            fast=args.fast,
            data_root=args.data_root,
            rerunnable=True,  # strategy=ddp re-runs this command for every other process
        )
    if result is None:
        return 0  # another process of a DDP run: the first one reports
    bits = precision_label(spec.bits[0])
    origin = "reused from the cache" if result.from_cache else "trained"
    print(f"pretrained {args.backbone} on {stream.name} ({stream.source} data): {origin}")
    print(f"  checkpoint     {result.checkpoint}")
    print(f"  metrics        {result.metrics_csv}")
    if result.schedule_png:
        print(f"  schedule plot  {result.schedule_png}")
    print(f"  {bits} val accuracy  {result.val_accuracy:.4f}")
    print(
        f"  training cost  {result.train_bitops:.3e} BitOPs over {result.steps} steps "
        f"({result.reduction_vs_fp32:.2%} less than FP32 training), each layer at the bits it "
        "multiplies"
    )
    if result.cpt_convention_bitops is not None:
        print(
            f"  CPT/CycleBNN convention  {result.cpt_convention_bitops:.3e} BitOPs "
            f"({result.cpt_convention_reduction_vs_fp32:.2%} less than FP32 training), binary "
            "layers at the scheduled bits"
        )
    return 0
