"""`show`: one results file, readably."""

import argparse

from cycl_bench.cli import kinds
from cycl_bench.evaluation.results import load_results

HELP = "print one results file readably"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", type=kinds.RESULT, help="a results file (results/*.json)")


def run(args: argparse.Namespace) -> int:
    from cycl_bench.logging.console import describe_results

    print(describe_results(load_results(args.result)))
    return 0
