"""`data`: prepare a stream (download real data if missing) and print its summary."""

from __future__ import annotations

import argparse
import json

from cycl_bench.cli import kinds
from cycl_bench.errors import UserError
from cycl_bench.registry import BENCHMARKS

HELP = "prepare a benchmark stream (download real data if missing) and print its summary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "benchmark", metavar="BENCHMARK", help="a registered benchmark (see `list`)"
    )
    parser.add_argument(
        "--data",
        default="real",
        metavar="DATA",
        help="real | synthetic | folder:PATH (default: real; synthetic needs no download)",
    )
    parser.add_argument(
        "--data-root",
        type=kinds.FOLDER,
        help="where datasets live (default: $CYCL_BENCH_DATA, else the user cache directory)",
    )
    parser.add_argument(
        "--seed",
        type=kinds.SEED,
        default=0,
        help="stream seed: class order, CORe50 run (default: 0)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="benchmark option, repeatable (e.g. --option mini=true); see docs/data.md",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option {pair!r} is not KEY=VALUE, e.g. --option mini=true")
        options[key.strip()] = value.strip()
    return options


def run(args: argparse.Namespace) -> int:
    stream = BENCHMARKS.build(
        args.benchmark,
        data=args.data,
        data_root=args.data_root,
        seed=args.seed,
        **parse_options(args.option),
    )
    summary = stream.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for key, value in summary.items():
        print(f"{key:<24} {value}")
    return 0
