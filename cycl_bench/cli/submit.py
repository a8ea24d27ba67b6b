"""`submit RESULT --name ...`: turn a results file into a leaderboard submission file.

The file lands at `leaderboard/submissions/<benchmark>/<slug of the name>.json` once it passes
the checks the pull request's CI runs; a failing submission is never written, and an existing
entry is replaced only with --update.

When the results file's run folder holds each seed's saved model (with the sha256 the results
record), the submission lists them (`models`: seed, sha256, and with `--models-url` where to
fetch them), so that `leaderboard verify` can re-evaluate them. `--models-out DIR` writes their
packed form (1-bit weights as bits) to `DIR/<benchmark>/<slug>-seed<k>.pt`, and the submission
lists those files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cycl_bench.cli import kinds
from cycl_bench.errors import UserError, check_writable_folder

if TYPE_CHECKING:
    from cycl_bench.evaluation.results import Results
    from cycl_bench.leaderboard.submission import EntryInfo

HELP = "turn a results file into a leaderboard submission (then open a pull request)"
DEFAULT_SUBMISSIONS = Path("leaderboard/submissions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", type=kinds.RESULT, help="results JSON written by `run`")
    parser.add_argument(
        "--name", type=kinds.TEXT, required=True, help="method name shown on the leaderboard"
    )
    parser.add_argument(
        "--author",
        type=kinds.TEXT,
        dest="authors",
        action="append",
        required=True,
        help="an author (repeat for several)",
    )
    parser.add_argument(
        "--license", type=kinds.TEXT, required=True, help="license of the results and code"
    )
    parser.add_argument(
        "--hardware", type=kinds.TEXT, required=True, help="hardware the run used, e.g. '1x A100'"
    )
    parser.add_argument("--paper-url", type=kinds.URL, help="http(s) link to the paper")
    parser.add_argument("--code-url", type=kinds.URL, help="http(s) link to the code")
    parser.add_argument(
        "--description", type=kinds.NOTE, default="", help="one or two sentences on the method"
    )
    parser.add_argument(
        "--date",
        type=kinds.DATE,
        default=datetime.date.today(),
        help="YYYY-MM-DD (default: today)",
    )
    parser.add_argument(
        "--update", action="store_true", help="replace an existing entry of the same name"
    )
    parser.add_argument(
        "--models-out",
        type=kinds.FOLDER_PATH,
        help="write each seed's model, packed, to DIR/<benchmark>/<slug>-seed<k>.pt and list those",
    )
    parser.add_argument(
        "--models-url",
        type=kinds.URL,
        help="http(s) folder the models will be fetched from: URL/<benchmark>/<slug>-seed<k>.pt",
    )
    parser.add_argument(
        "--submissions",
        type=kinds.FOLDER_PATH,
        default=DEFAULT_SUBMISSIONS,
        help=f"submissions folder (default: {DEFAULT_SUBMISSIONS})",
    )


def _entry(args: argparse.Namespace) -> EntryInfo:
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


def _target(submissions: Path, relative: str) -> Path:
    """Where the entry goes; never through a symbolic link, never over a folder."""
    path = submissions / relative
    for part in (path.parent, path):
        if part.is_symlink():
            raise UserError(f"{part} is a symbolic link; submissions are plain files and folders")
    if path.exists() and not path.is_file():
        raise UserError(f"{path} exists and is not a file; move it away or choose a --name")
    return path


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, suffix=".tmp", delete=False
    ) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def _saved_models(result: Path, results: Results) -> list[tuple[int, Path]]:
    """(seed, saved model file) of every seed, from the run folder the results file is in;
    empty when the run saved none (an older run) or the file is no longer in its run folder. A
    model missing there, or whose sha256 is not the recorded one, is a UserError: it is not the
    model the numbers were measured with."""
    from cycl_bench.export.saved import file_sha256

    if any(seed.model_file is None or seed.model_sha256 is None for seed in results.per_seed):
        return []
    run_dir = result.resolve().parent.parent
    if not (run_dir / "config.yaml").is_file():
        print(f"note: {result} is not in its run folder; the submission lists no models")
        return []
    found = []
    for seed in results.per_seed:
        assert seed.model_file is not None  # every seed records its model (checked above)
        path = run_dir / seed.model_file
        if not path.is_file():
            raise UserError(
                f"{path} is missing: the results file records seed {seed.seed}'s model there"
            )
        if file_sha256(path) != seed.model_sha256:
            raise UserError(
                f"{path} is not the model {result} was measured with (its sha256 differs "
                "from the recorded one)"
            )
        found.append((seed.seed, path))
    return found


def _models(
    args: argparse.Namespace, results: Results, name: str, staging: Path
) -> list[dict[str, object]]:
    """The submission's `models`; packed copies go to `staging` (moved into place later)."""
    from cycl_bench.export.saved import file_sha256, pack_saved_model
    from cycl_bench.leaderboard.submission import model_file_name

    listed = []
    for seed, path in _saved_models(args.result, results):
        relative = model_file_name(results.benchmark.name, name, seed)
        if args.models_out is not None:
            sha256 = pack_saved_model(path, staging / relative)
        else:
            sha256 = file_sha256(path)
        model = {"seed": seed, "sha256": sha256}
        if args.models_url:
            model["url"] = f"{args.models_url.rstrip('/')}/{relative}"
        listed.append(model)
    return listed


def run(args: argparse.Namespace) -> int:
    from cycl_bench.evaluation.results import load_results
    from cycl_bench.leaderboard.submission import SUBMISSION_VERSION, entry_file_name
    from cycl_bench.leaderboard.validate import validate_new

    entry = _entry(args)
    check_writable_folder(args.submissions, "--submissions")
    if args.models_out is not None:
        check_writable_folder(args.models_out, "--models-out")
    results = load_results(args.result)
    path = _target(args.submissions, entry_file_name(results.benchmark.name, entry.name))
    if path.exists() and not args.update:
        raise UserError(f"{path} already exists; pass --update to replace it or choose a --name")
    with tempfile.TemporaryDirectory() as staging:
        models = _models(args, results, entry.name, Path(staging))
        submission = {
            "submission_version": SUBMISSION_VERSION,
            "status": "reproduced",
            "entry": entry.model_dump(mode="json"),
            "results": results.model_dump(mode="json"),
            **({"models": models} if models else {}),
        }
        text = json.dumps(submission, indent=2, ensure_ascii=False) + "\n"
        checked = validate_new(path, text.encode("utf-8"))
        if not checked.ok:
            print(f"not submitted: {args.result} fails the leaderboard checks")
            for problem in checked.problems:
                print(f"  {problem}")
            return 1
        if args.models_out is not None:
            for packed in sorted(Path(staging).rglob("*.pt")):
                target = args.models_out / packed.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy(packed, target)
                print(f"wrote {target}")
    _write_atomically(path, text)
    print(f"wrote {path}" + (f" (with {len(models)} model(s))" if models else ""))
    print("next: commit it and open a pull request; CI runs `leaderboard validate` on it")
    return 0


def _copy(source: Path, target: Path) -> None:
    """Copy next to `target`, then rename: a reader never sees half a model."""
    import shutil

    partial = target.with_suffix(".pt.part")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
