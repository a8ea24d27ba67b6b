"""`submit RESULT --name ...`: turn a results file into a leaderboard submission file.

The file lands at `leaderboard/submissions/<benchmark>/<slug of the name>.json` and is checked
exactly as the pull request's CI will check it; a failing submission is not left behind.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from pydantic import ValidationError

from cycl_bench.errors import UserError

HELP = "turn a results file into a leaderboard submission (then open a pull request)"
DEFAULT_SUBMISSIONS = Path("leaderboard/submissions")


def add_arguments(parser):
    parser.add_argument("result", type=Path, help="results JSON written by `run`")
    parser.add_argument("--name", required=True, help="method name shown on the leaderboard")
    parser.add_argument(
        "--author",
        dest="authors",
        action="append",
        required=True,
        help="an author (repeat for several)",
    )
    parser.add_argument("--license", required=True, help="license of the results and code")
    parser.add_argument("--hardware", required=True, help="hardware the run used, e.g. '1x A100'")
    parser.add_argument("--paper-url", help="http(s) link to the paper")
    parser.add_argument("--code-url", help="http(s) link to the code")
    parser.add_argument("--description", default="", help="one or two sentences on the method")
    parser.add_argument(
        "--date",
        type=datetime.date.fromisoformat,
        default=datetime.date.today(),
        help="YYYY-MM-DD (default: today)",
    )
    parser.add_argument(
        "--update", action="store_true", help="replace an existing entry of the same name"
    )
    parser.add_argument(
        "--submissions",
        type=Path,
        default=DEFAULT_SUBMISSIONS,
        help=f"submissions folder (default: {DEFAULT_SUBMISSIONS})",
    )


def _entry(args):
    from cycl_bench.leaderboard.submission import EntryInfo

    try:
        return EntryInfo(
            name=args.name,
            authors=args.authors,
            paper_url=args.paper_url,
            code_url=args.code_url,
            license=args.license,
            hardware=args.hardware,
            date=args.date,
            description=args.description,
            update=args.update,
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise UserError(f"--{field.replace('_', '-')}: {first['msg']}") from None


def run(args) -> int:
    from cycl_bench.evaluation.results import load_results
    from cycl_bench.leaderboard.submission import ReproducedSubmission, entry_file_name
    from cycl_bench.leaderboard.validate import validate

    submission = ReproducedSubmission(entry=_entry(args), results=load_results(args.result))
    path = args.submissions / entry_file_name(submission)
    previous = path.read_bytes() if path.exists() else None
    if previous is not None and not args.update:
        raise UserError(f"{path} already exists; pass --update to replace it or choose a --name")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(submission.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (checked,) = validate([path])
    if checked.ok:
        print(f"wrote {path}")
        print("next: commit it and open a pull request; CI runs `leaderboard validate` on it")
        return 0
    if previous is None:
        path.unlink()
    else:
        path.write_bytes(previous)
    print(f"not submitted: {args.result} fails the leaderboard checks")
    for problem in checked.problems:
        print(f"  {problem}")
    return 1
