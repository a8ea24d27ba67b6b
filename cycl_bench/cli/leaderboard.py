"""`leaderboard validate` checks submission files, `leaderboard verify` re-evaluates their models
and `leaderboard build` writes the static site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cycl_bench.cli import kinds
from cycl_bench.errors import UserError

if TYPE_CHECKING:
    from cycl_bench.leaderboard.submission import ReproducedSubmission
    from cycl_bench.leaderboard.validate import Checked
    from cycl_bench.leaderboard.verify import Rerun

HELP = "validate, verify (re-evaluate models) or build the static leaderboard site"
DEFAULT_SUBMISSIONS = Path("leaderboard/submissions")
DEFAULT_MODELS = Path("leaderboard/models")
DEFAULT_RECORDS = Path("leaderboard/verifications")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate",
        help="check submission files; exit 1 if any fails",
        description="Check submission files: each failure with its JSON path; exit 1 on any.",
    )
    validate.add_argument(
        "paths",
        type=kinds.PATHS,
        nargs="*",
        help=f"submission files or folders (default: {DEFAULT_SUBMISSIONS})",
    )
    validate.add_argument(
        "--base",
        metavar="GIT_REF",
        help="git ref to compare existing entries with (default: origin/main when it exists)",
    )
    validate.set_defaults(action_run=run_validate)
    verify = actions.add_parser(
        "verify",
        help="re-evaluate each entry's models against its numbers; exit 1 if any differs",
        description=(
            "Re-evaluate the final models of reproduced entries on their streams and compare "
            "with each file's last accuracy row; write a verification record per entry."
        ),
    )
    verify.add_argument(
        "paths",
        type=kinds.PATHS,
        nargs="*",
        help=f"submission files or folders (default: {DEFAULT_SUBMISSIONS})",
    )
    verify.add_argument(
        "--models",
        type=kinds.DIR,
        default=None,
        help=f"folder of models as <benchmark>/<entry>-seed<k>.pt (default: {DEFAULT_MODELS} "
        "when it exists); a model not there is fetched from its URL",
    )
    verify.add_argument(
        "--data-root", type=kinds.FOLDER_PATH, help="where datasets live ($CYCL_BENCH_DATA)"
    )
    verify.add_argument(
        "--device", type=kinds.DEVICE, default="cpu", help="cpu, cuda, cuda:1 (default: cpu)"
    )
    verify.add_argument(
        "--records",
        type=kinds.FOLDER_PATH,
        default=DEFAULT_RECORDS,
        help=f"folder for verification records (default: {DEFAULT_RECORDS})",
    )
    verify.add_argument("--cache-dir", type=kinds.FOLDER_PATH, help="download and checkpoint cache")
    verify.add_argument(
        "--download",
        action="store_true",
        help="download a real dataset that is missing (default: such entries are skipped)",
    )
    verify.add_argument(
        "--rerun",
        action="store_true",
        help="also retrain the first seed from the recorded config and compare the whole matrix",
    )
    verify.set_defaults(action_run=run_verify)
    build = actions.add_parser(
        "build",
        help="build the static site from valid submissions",
        description="Build the static leaderboard site (works from file://, no network).",
    )
    build.add_argument(
        "--submissions",
        type=kinds.DIR,
        default=DEFAULT_SUBMISSIONS,
        help=f"submissions folder (default: {DEFAULT_SUBMISSIONS})",
    )
    build.add_argument(
        "--out",
        type=kinds.FOLDER_PATH,
        default=Path("leaderboard/site"),
        help="output folder: new, empty, or a site an earlier build made (then replaced)",
    )
    build.add_argument(
        "--verifications",
        type=kinds.RECORDS,
        default=DEFAULT_RECORDS,
        help=f"verification records of `verify` (default: {DEFAULT_RECORDS}; none: no badge)",
    )
    build.set_defaults(action_run=run_build)


def _default_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise UserError(
            f"no submissions folder at {folder}; run from the repository root or pass a path"
        )
    return folder


def _report(checked: list[Checked]) -> int:
    failed = [item for item in checked if not item.ok]
    for item in checked:
        print(f"{'ok  ' if item.ok else 'FAIL'} {item.path}")
        for problem in item.problems:
            print(f"     {problem}")
    print(f"{len(checked)} file(s) checked, {len(failed)} failed")
    return 1 if failed else 0


def run_validate(args: argparse.Namespace) -> int:
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


def _check_device(device: str) -> None:
    import torch

    kind, _, index = device.partition(":")
    if device != "cpu" and (kind != "cuda" or (index and not index.isdigit())):
        raise UserError(f"--device {device} is not cpu, cuda or cuda:N; use one of them")
    if kind == "cuda" and int(index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: torch sees {torch.cuda.device_count()} GPU(s)")


def _folder_for_records(records: Path) -> None:
    if records.is_symlink() or (records.exists() and not records.is_dir()):
        raise UserError(f"--records {records} is not a folder; give a folder for the records")


def _rerun(data_root: Path | None, cache_dir: Path | None) -> Rerun:
    """`--rerun`: retrain one seed of a submission from its recorded config in a scratch folder
    (its pretraining from the cache, or again) and return its accuracy matrix."""

    def rerun(submission: ReproducedSubmission, seed: int) -> list[list[float]]:
        import shutil
        import tempfile

        from cycl_bench import config as config_module
        from cycl_bench import run_folder, runner
        from cycl_bench.evaluation.results import load_results

        recorded = dict(submission.results.config)
        entry = recorded.pop("strategy_entry", None)
        if not recorded or not isinstance(entry, str):  # None: not recorded
            raise UserError("the results file records no config to rerun")
        recorded.update(seeds=[seed], wandb="disabled")
        if data_root is not None:
            recorded["data_root"] = str(data_root)
        config = config_module.select_strategies(config_module.validate(recorded), [entry])
        plan = runner.prepare(config, cache_dir=cache_dir)
        scratch = Path(tempfile.mkdtemp(prefix="cycl_bench-rerun-"))
        try:
            run_dir = run_folder.start(plan.config, scratch)
            runner.run(plan, run_dir, echo=lambda line: print(f"  rerun: {line}"))
            results = load_results(run_folder.results_path(run_dir, entry))
            return results.per_seed[0].accuracy_matrix
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return rerun


def run_verify(args: argparse.Namespace) -> int:
    from cycl_bench.leaderboard.submission import ReproducedSubmission
    from cycl_bench.leaderboard.validate import submission_files, validate
    from cycl_bench.leaderboard.verify import verify_submission, write_record
    from cycl_bench.spec import default_cache_dir

    _check_device(args.device)
    _folder_for_records(args.records)
    if args.models is not None and not args.models.is_dir():
        raise UserError(f"--models {args.models} is not a folder of models")
    models = args.models or (DEFAULT_MODELS if DEFAULT_MODELS.is_dir() else None)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    paths = args.paths or [_default_folder(DEFAULT_SUBMISSIONS)]
    counts = {"verified": 0, "drifted": 0, "failed": 0, "skipped": 0}
    for item in validate(submission_files(paths)):
        if not item.ok:
            counts["failed"] += 1
            print(f"FAILED   {item.path}: does not validate ({item.problems[0]})")
            continue
        if not isinstance(item.submission, ReproducedSubmission):
            continue  # claimed numbers have no model
        outcome = verify_submission(
            item.path,
            item.submission,
            models=models,
            data_root=args.data_root,
            cache=cache,
            device=args.device,
            download=args.download,
            rerun=_rerun(args.data_root, args.cache_dir) if args.rerun else None,
        )
        counts[outcome.status] += 1
        if outcome.record is None:
            print(f"skipped  {item.path}: {outcome.skipped}")
            continue
        written = write_record(args.records, item.submission, outcome.record)
        record = outcome.record
        if record.status == "verified":
            worst = max(check.max_difference_images or 0 for check in record.seeds)
            print(
                f"verified {item.path}: {len(record.seeds)} seed(s), largest difference "
                f"{worst} image(s); record {written}"
            )
        else:
            print(f"{record.status.upper():8} {item.path}: {record.reason}; record {written}")
    print(", ".join(f"{n} {status}" for status, n in counts.items()))
    return 1 if counts["drifted"] or counts["failed"] else 0


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


def run_build(args: argparse.Namespace) -> int:
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
    records = args.verifications if args.verifications.is_dir() else None
    submissions = [(item.path, item.submission) for item in checked if item.submission is not None]
    pages = build_site(submissions, args.out, records)  # every file ok: every one read
    print(f"built {len(pages)} pages from {len(checked)} submission(s) into {args.out}")
    print(f"open {(args.out / 'index.html').resolve().as_uri()}")
    return 0


def run(args: argparse.Namespace) -> int:
    return args.action_run(args)
