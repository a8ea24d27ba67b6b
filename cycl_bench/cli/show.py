"""`show`: one results file, readably."""

from cycl_bench.evaluation.results import load_results

HELP = "print one results file readably"


def add_arguments(parser):
    parser.add_argument("result", metavar="RESULT", help="a results file (results/*.json)")


def run(args) -> int:
    from cycl_bench.logging.console import describe_results

    print(describe_results(load_results(args.result)))
    return 0
