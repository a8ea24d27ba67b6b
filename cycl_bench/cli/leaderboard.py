"""`leaderboard validate` checks submission files; `leaderboard build` writes the static site."""

from __future__ import annotations

import sys
from pathlib import Path

from cycl_bench.errors import UserError

HELP = "validate leaderboard submissions or build the static leaderboard site"
DEFAULT_SUBMISSIONS = Path("leaderboard/submissions")


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate",
        help="check submission files; exit 1 if any fails",
        description="Check submission files: each failure with its JSON path; exit 1 on any.",
    )
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help=f"submission files or folders (default: {DEFAULT_SUBMISSIONS})",
    )
    validate.add_argument(
        "--base",
        help="git ref to compare existing entries with (default: origin/main when it exists)",
    )
    validate.set_defaults(action_run=run_validate)
    build = actions.add_parser(
        "build",
        help="build the static site from valid submissions",
        description="Build the static leaderboard site (works from file://, no network).",
    )
    build.add_argument(
        "--submissions",
        type=Path,
        default=DEFAULT_SUBMISSIONS,
        help=f"submissions folder (default: {DEFAULT_SUBMISSIONS})",
    )
    build.add_argument(
        "--out",
        type=Path,
        default=Path("leaderboard/site"),
        help="output folder: new, empty, or a site an earlier build made (then replaced)",
    )
    build.set_defaults(action_run=run_build)


def _default_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise UserError(
            f"no submissions folder at {folder}; run from the repository root or pass a path"
        )
    return folder


def _report(checked) -> int:
    failed = [item for item in checked if not item.ok]
    for item in checked:
        print(f"{'ok  ' if item.ok else 'FAIL'} {item.path}")
        for problem in item.problems:
            print(f"     {problem}")
    print(f"{len(checked)} file(s) checked, {len(failed)} failed")
    return 1 if failed else 0


def run_validate(args) -> int:
    from cycl_bench.leaderboard.validate import resolve_base, submission_files, validate

    paths = args.paths or [_default_folder(DEFAULT_SUBMISSIONS)]
    files = submission_files(paths)
    base = resolve_base(files, args.base)
    if base is None:
        print(
            "note: no base branch to compare with (origin/main not found); skipping that check",
            file=sys.stderr,
        )
    return _report(validate(files, base=base))


def _check_apart(out: Path, submissions: Path) -> None:
    """The site never goes into the submissions folder, nor replaces a folder that holds it."""
    real_out, real_submissions = out.resolve(), submissions.resolve()
    if (
        real_out == real_submissions
        or real_submissions in real_out.parents
        or real_out in real_submissions.parents
    ):
        raise UserError(
            f"--out {out} overlaps the submissions folder {submissions}; "
            "choose a folder outside it, e.g. leaderboard/site"
        )


def run_build(args) -> int:
    from cycl_bench.leaderboard.site import build_site, check_output_folder
    from cycl_bench.leaderboard.validate import submission_files, validate

    _check_apart(args.out, args.submissions)
    check_output_folder(args.out)
    files = submission_files([_default_folder(args.submissions)])
    checked = validate(files)
    if any(not item.ok for item in checked):
        _report(checked)
        print("not building: fix the submissions above first")
        return 1
    pages = build_site([(item.path, item.submission) for item in checked], args.out)
    print(f"built {len(pages)} pages from {len(checked)} submission(s) into {args.out}")
    print(f"open {(args.out / 'index.html').resolve().as_uri()}")
    return 0


def run(args) -> int:
    return args.action_run(args)
