"""`leaderboard verify`: a reproduced entry's models re-evaluated against its numbers.

An entry is *verified* when each seed's final model, listed in the submission's `models` by
sha256, gives the file's last accuracy row. For each seed:

1. the model is found in a models folder as `<benchmark>/<entry slug>-seed<k>.pt`, or fetched from
   its URL into the cache (`$CYCL_BENCH_CACHE/models/<sha256>.pt`);
2. its sha256 is the one the submission lists;
3. it loads (`export.load_model`: a saved model, full or packed) and says it was trained on this
   benchmark's stream (protocol hash), with this seed, backbone and strategy;
4. it is evaluated on every test view of the stream, rebuilt from the submission's protocol, at
   its deployed precision, and each accuracy is compared with the file's last row.

Tolerance, per test view: max(1 image, 0.5% of the view's images). The same model on the same
images computes the same float sums in another order on another machine (thread count, vector
width, library version); a binary network's sign can flip on a value at its threshold and move
a prediction or two. A changed number of more than that is a different model, data or code.
The suite's own reference models, re-evaluated with 1 and 2 threads, differ by 0 images.

`--rerun` also retrains the first listed seed from the results file's recorded config (its
pretraining from the cache, or again) and compares the whole matrix within the same tolerance:
for streams where that is cheap (the synthetic track, `--fast` sizes).

A record of each check (`VerificationRecord`: who, when, hardware, suite version, the numbers)
is written to `<records>/<benchmark>/<entry slug>.json`; the site shows an entry as verified only
while its record says so for the submission file as it is now (its sha256). An entry whose
models cannot be checked (no models listed, a real dataset not on disk here: verify downloads
none unless told, `download=True`) gets no record: its page says "not verified yet". Nothing of
the submission is ever changed or deleted.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from cycl_bench import __version__
from cycl_bench.errors import UserError
from cycl_bench.leaderboard.submission import ReproducedSubmission, model_file_name, slugify

if TYPE_CHECKING:
    from cycl_bench.data.base import Stream
    from cycl_bench.export.saved import SavedModelInfo
    from cycl_bench.models.common import Backbone

Rerun = Callable[[ReproducedSubmission, int], list[list[float]]]

RECORD_VERSION: Final = 1
TOLERANCE_IMAGES = 1
TOLERANCE_FRACTION = 0.005
MAX_MODEL_DOWNLOAD = 500 * 2**20
DOWNLOAD_TIMEOUT_S = 60
Status = Literal["verified", "drifted", "failed"]


class SeedCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    seed: int
    model_sha256: str
    # the file's row and the model's, per test view; the model's is empty when it could not run
    recorded: list[float]
    measured: list[float] = Field(default_factory=list)
    # largest difference, in images of a view
    max_difference_images: int | None = None
    ok: bool
    reason: str = ""


class VerificationRecord(BaseModel):
    """What one `leaderboard verify` found for one submission file."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    record_version: Literal[1] = RECORD_VERSION
    submission: str  # `<benchmark>/<slug>.json`
    submission_sha256: str  # of the file's bytes: a record of an earlier version does not count
    status: Status
    reason: str = ""
    mode: Literal["evaluate", "rerun"] = "evaluate"
    verified_at: str
    verified_by: str
    hardware: str
    cycl_bench_version: str
    git_sha: str | None = None
    tolerance: str
    seeds: list[SeedCheck] = Field(default_factory=list)

    @property
    def date(self) -> str:
        return self.verified_at[:10]


@dataclass
class Outcome:
    """One submission's verification: a record, or why there is none (`skipped`)."""

    path: Path
    record: VerificationRecord | None = None
    skipped: str = ""

    @property
    def status(self) -> str:
        return self.record.status if self.record else "skipped"


def tolerance_images(test_size: int) -> int:
    """Images of a view by which a re-evaluation may differ (module doc)."""
    return max(TOLERANCE_IMAGES, int(TOLERANCE_FRACTION * test_size))


TOLERANCE_TEXT = (
    f"per test view, max({TOLERANCE_IMAGES} image, {100 * TOLERANCE_FRACTION:g}% of its images)"
)


def verifier() -> str:
    """Who verifies: the CI run, or the user on this machine."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        repository = os.environ.get("GITHUB_REPOSITORY", "?")
        return f"GitHub Actions ({repository}, run {os.environ.get('GITHUB_RUN_ID', '?')})"
    return f"{getpass.getuser()}@{socket.gethostname()}"


def record_path(records: Path, submission: ReproducedSubmission) -> Path:
    return records / submission.benchmark / f"{slugify(submission.entry.name)}.json"


def read_record(path: Path) -> VerificationRecord | None:
    """The record at `path`, or None when there is none or it does not parse."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return VerificationRecord.model_validate_json(path.read_bytes())
    except ValueError:
        return None


# -- finding and checking a model ----------------------------------------------------------------


def _download(url: str, sha256: str, cache: Path) -> Path:
    """The file at `url` in the cache, named by its sha256; a UserError when it does not answer,
    is too big or is another file."""
    from cycl_bench.export.saved import file_sha256

    target = cache / "models" / f"{sha256}.pt"
    if target.is_file() and file_sha256(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            with open(partial, "wb") as file:
                copied = 0
                while block := response.read(1 << 20):
                    copied += len(block)
                    if copied > MAX_MODEL_DOWNLOAD:
                        raise UserError(f"{url} is larger than {MAX_MODEL_DOWNLOAD >> 20} MiB")
                    file.write(block)
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise UserError(f"{url} does not answer ({reason})") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def locate_model(
    submission: ReproducedSubmission, seed: int, models: Path | None, cache: Path
) -> Path:
    """The seed's model file: in `models`, else from its URL; a UserError naming what is missing."""
    listed = next(model for model in submission.models if model.seed == seed)
    relative = model_file_name(submission.benchmark, submission.entry.name, seed)
    if models is not None and (models / relative).is_file():
        return models / relative
    if listed.url:
        return _download(listed.url, listed.sha256, cache)
    where = f"{models / relative}" if models is not None else relative
    raise UserError(f"no model at {where} and no URL for seed {seed}")


def check_model_file(path: Path, sha256: str) -> tuple[Backbone, SavedModelInfo]:
    """The model at `path` loaded, once its sha256 is `sha256`; a UserError naming the file."""
    from cycl_bench.export.saved import file_sha256, load_model

    if path.is_symlink() or not path.is_file():
        raise UserError(f"{path} is not a regular file")
    found = file_sha256(path)
    if found != sha256:
        raise UserError(f"{path} has sha256 {found[:12]}…, the submission lists {sha256[:12]}…")
    return load_model(path)


def model_mismatch(submission: ReproducedSubmission, seed: int, saved: SavedModelInfo) -> str:
    """Why the model is not one of this entry's (another stream, seed, backbone or strategy)."""
    results = submission.results
    expected = {
        "protocol_hash": results.benchmark.protocol_hash,
        "seed": seed,
        "strategy": results.method.strategy,
    }
    for key, value in expected.items():
        found = saved.info.get(key)
        if found is not None and found != value:
            return f"the model was trained with {key} {found!r}, the entry with {value!r}"
    if saved.backbone != results.method.backbone:
        return f"the model is a {saved.backbone}, the entry's backbone is {results.method.backbone}"
    return ""


# -- evaluating -------------------------------------------------------------------------------


def build_stream(
    submission: ReproducedSubmission, data_root: Path | None, download: bool
) -> Stream:
    """The submission's stream, rebuilt from the shipped benchmark config on its data source; a
    UserError when the data is not here (and `download` is off) or the protocol is no longer
    the shipped one."""
    import contextlib

    from cycl_bench.config import BenchmarkConfig, load_part
    from cycl_bench.data.base import default_data_root
    from cycl_bench.data.download import downloads_off
    from cycl_bench.registry import BENCHMARKS

    benchmark = submission.results.benchmark
    part = BenchmarkConfig.model_validate(load_part("benchmarks", benchmark.name))
    with contextlib.nullcontext() if download else downloads_off():
        stream = BENCHMARKS.build(
            benchmark.name,
            data=benchmark.data_source,
            data_root=data_root or default_data_root(),
            seed=part.seed,
            **part.options_for(benchmark.data_source),
        )
    if stream.protocol_hash != benchmark.protocol_hash:
        raise UserError(
            f"the suite's {benchmark.name} stream is protocol {stream.protocol_hash}, the entry's "
            f"{benchmark.protocol_hash}: verify with the suite version that ran it"
        )
    return stream


def compare_row(
    recorded: list[float], measured: list[float], test_sizes: list[int]
) -> tuple[int, int | None]:
    """(largest difference in images, the first view outside the tolerance or None)."""
    worst, outside = 0, None
    for view, (a, b, size) in enumerate(zip(recorded, measured, test_sizes, strict=True)):
        images = round(abs(a - b) * size)
        worst = max(worst, images)
        if images > tolerance_images(size) and outside is None:
            outside = view
    return worst, outside


def evaluate_seed(
    submission: ReproducedSubmission, seed: int, path: Path, stream: Stream, device: str
) -> SeedCheck:
    from cycl_bench.continual.loop import accuracy_row

    listed = next(model for model in submission.models if model.seed == seed)
    recorded = _last_row(submission, seed)
    check = SeedCheck(seed=seed, model_sha256=listed.sha256, recorded=recorded, ok=False)
    try:
        model, saved = check_model_file(path, listed.sha256)
    except UserError as error:
        check.reason = str(error)
        return check
    mismatch = model_mismatch(submission, seed, saved)
    if mismatch:
        check.reason = mismatch
        return check
    model.to(device)
    check.measured = accuracy_row(model, stream.test_views, device, eval_bits=saved.deployed_bits)
    return _judged(check, stream.test_sizes)


def _judged(check: SeedCheck, test_sizes: list[int]) -> SeedCheck:
    worst, outside = compare_row(check.recorded, check.measured, test_sizes)
    check.max_difference_images = worst
    check.ok = outside is None
    if outside is not None:
        images = round(abs(check.recorded[outside] - check.measured[outside]) * test_sizes[outside])
        check.reason = (
            f"seed {check.seed}, test view {outside}: the file says "
            f"{100 * check.recorded[outside]:.2f}%, the model gives "
            f"{100 * check.measured[outside]:.2f}% ({images} of {test_sizes[outside]} images)"
        )
    return check


# -- one submission ------------------------------------------------------------------------------


def verify_submission(
    path: Path,
    submission: ReproducedSubmission,
    *,
    models: Path | None,
    data_root: Path | None,
    cache: Path,
    device: str = "cpu",
    download: bool = False,
    rerun: Rerun | None = None,
) -> Outcome:
    """Verify one submission (module doc). `rerun(submission, seed)`, when given, retrains that
    seed from the recorded config and returns its accuracy matrix (the command line's
    `--rerun`: the runner lives above this module)."""
    from cycl_bench.export.saved import file_sha256
    from cycl_bench.run_record import device_name, git_sha

    outcome = Outcome(path)
    if not submission.models:
        outcome.skipped = "no models listed (the entry stays reproduced)"
        return outcome
    try:
        stream = build_stream(submission, data_root, download)
    except UserError as error:
        outcome.skipped = f"not verified yet: {error}"
        return outcome
    record = VerificationRecord(
        submission=f"{submission.benchmark}/{path.name}",
        submission_sha256=file_sha256(path),
        status="verified",
        mode="rerun" if rerun else "evaluate",
        verified_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        verified_by=verifier(),
        hardware=device_name(device),
        cycl_bench_version=__version__,
        git_sha=git_sha(),
        tolerance=TOLERANCE_TEXT,
    )
    for listed in submission.models:
        try:
            model_path = locate_model(submission, listed.seed, models, cache)
        except UserError as error:
            check = SeedCheck(
                seed=listed.seed,
                model_sha256=listed.sha256,
                recorded=_last_row(submission, listed.seed),
                ok=False,
                reason=str(error),
            )
        else:
            check = evaluate_seed(submission, listed.seed, model_path, stream, device)
        record.seeds.append(check)
    if rerun is not None and all(check.ok for check in record.seeds):
        record.seeds.append(_rerun_check(submission, rerun))
    failed = [check for check in record.seeds if not check.ok]
    if failed:
        # numbers that differ: drifted; a model that could not be evaluated: failed
        record.status = "drifted" if all(check.measured for check in failed) else "failed"
        record.reason = failed[0].reason
    outcome.record = record
    return outcome


def _last_row(submission: ReproducedSubmission, seed: int) -> list[float]:
    return next(s for s in submission.results.per_seed if s.seed == seed).accuracy_matrix[-1]


def _rerun_check(submission: ReproducedSubmission, rerun: Rerun) -> SeedCheck:
    seed = submission.models[0].seed
    result = next(s for s in submission.results.per_seed if s.seed == seed)
    check = SeedCheck(seed=seed, model_sha256=submission.models[0].sha256, recorded=[], ok=False)
    try:
        matrix = rerun(submission, seed)
    except UserError as error:
        check.reason = f"rerun of seed {seed}: {error}"
        return check
    if len(matrix) != len(result.accuracy_matrix):
        check.reason = f"rerun of seed {seed}: {len(matrix)} rows, the file has " + str(
            len(result.accuracy_matrix)
        )
        return check
    sizes = submission.results.benchmark.test_sizes
    worst = 0
    for row, (recorded, measured) in enumerate(zip(result.accuracy_matrix, matrix, strict=True)):
        check.recorded, check.measured = recorded, measured
        _judged(check, sizes)
        worst = max(worst, check.max_difference_images or 0)
        if not check.ok:
            check.reason = f"rerun, row {row}: {check.reason}"
            return check
    check.recorded = [x for row in result.accuracy_matrix for x in row]
    check.measured = [x for row in matrix for x in row]
    check.max_difference_images = worst  # over the whole matrix
    return check


def write_record(
    records: Path, submission: ReproducedSubmission, record: VerificationRecord
) -> Path:
    target = record_path(records, submission)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".tmp")
    staging.write_text(json.dumps(record.model_dump(mode="json"), indent=2) + "\n")
    os.replace(staging, target)
    return target
