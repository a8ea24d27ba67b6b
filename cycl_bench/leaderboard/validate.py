"""Check submission files: every failure is reported with its JSON path and a one-line reason.

Reproduced entries must be real-data runs of registered components on the shipped protocol,
with at least three seeds, and every derived number must follow from the raw accuracy matrices.
Claimed entries are checked for shape, sources and links only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import derived_mismatches
from cycl_bench.leaderboard import history
from cycl_bench.leaderboard.submission import (
    SUBMISSION_VERSION,
    ClaimedSubmission,
    ReproducedSubmission,
    Submission,
    slugify,
)

MAX_FILE_BYTES = 5 * 1024 * 1024
MIN_SEEDS = 3
ROOT = "$"


@dataclass(frozen=True)
class Problem:
    where: str  # JSON path inside the file, "$" for the file as a whole
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Checked:
    path: Path
    submission: Submission | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# -- reading ---------------------------------------------------------------------------------


def _json_path(location: Iterable[Any]) -> str:
    path = ROOT
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _non_finite(value: Any, path: str = ROOT) -> Iterator[Problem]:
    if isinstance(value, float) and not math.isfinite(value):
        yield Problem(path, f"{value} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{index}]")


def parse_submission(data: Any) -> tuple[Submission | None, list[Problem]]:
    """Schema and types: the submission, or the problems that stop it from being one."""
    if not isinstance(data, dict):
        return None, [Problem(ROOT, "a submission is a JSON object")]
    problems = list(_non_finite(data))
    if problems:
        return None, problems
    version = data.get("submission_version")
    if version != SUBMISSION_VERSION:
        reason = f"submission_version must be {SUBMISSION_VERSION}, not {version!r}"
        return None, [Problem("$.submission_version", reason)]
    kinds = {"reproduced": ReproducedSubmission, "claimed": ClaimedSubmission}
    kind = kinds.get(data.get("status"))
    if kind is None:
        reason = f"status must be 'reproduced' or 'claimed', not {data.get('status')!r}"
        return None, [Problem("$.status", reason)]
    try:
        return kind.model_validate(data), []
    except ValidationError as error:
        return None, [Problem(_json_path(e["loc"]), e["msg"]) for e in error.errors()]


def read_submission(path: Path) -> tuple[Submission | None, list[Problem]]:
    """Size first (a huge file is never parsed), then JSON, then the schema."""
    if path.is_symlink():
        return None, [Problem(ROOT, "symbolic links are not accepted; commit the file itself")]
    try:
        size = path.stat().st_size
    except OSError as error:
        return None, [Problem(ROOT, f"cannot read the file: {error.strerror}")]
    if size > MAX_FILE_BYTES:
        cap = MAX_FILE_BYTES // 2**20
        reason = f"file is {size / 2**20:.1f} MiB; submissions are capped at {cap} MiB"
        return None, [Problem(ROOT, reason)]
    try:
        return parse_submission(json.loads(path.read_bytes()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, [Problem(ROOT, f"not valid JSON: {error}")]
    except RecursionError:
        return None, [Problem(ROOT, "JSON nested too deeply")]


# -- checks on one submission ------------------------------------------------------------------


def _check_file_name(path: Path, submission: Submission) -> list[Problem]:
    problems = []
    if path.parent.name != submission.benchmark:
        reason = (
            f"file is in folder '{path.parent.name}/', its benchmark is '{submission.benchmark}'"
        )
        problems.append(Problem(ROOT, reason))
    expected = f"{slugify(submission.entry.name)}.json"
    if path.name != expected:
        reason = f"file name '{path.name}' does not match entry.name; expected '{expected}'"
        problems.append(Problem(ROOT, reason))
    return problems


def _registered(kind: str, name: str) -> bool:
    from cycl_bench import registry

    return name in getattr(registry, kind).names()


def _check_reproduced(submission: ReproducedSubmission) -> list[Problem]:
    from cycl_bench.config import shipped_protocol_hash
    from cycl_bench.data.base import protocol_hash

    results = submission.results
    benchmark, method = results.benchmark, results.method
    problems = []
    for where, value in (
        ("entry.license", submission.entry.license),
        ("entry.hardware", submission.entry.hardware),
    ):
        if not value.strip():
            problems.append(Problem(f"$.{where}", "required for reproduced entries"))
    for where, kind, name in (
        ("results.benchmark.name", "BENCHMARKS", benchmark.name),
        ("results.method.backbone", "BACKBONES", method.backbone),
        ("results.method.strategy", "STRATEGIES", method.strategy),
    ):
        if not _registered(kind, name):
            problems.append(Problem(f"$.{where}", f"'{name}' is not a registered name"))
    if _registered("BENCHMARKS", benchmark.name):
        shipped = shipped_protocol_hash(benchmark.name)
        if benchmark.protocol_hash != shipped:
            reason = f"'{benchmark.protocol_hash}' is not the shipped protocol's hash '{shipped}'"
            problems.append(Problem("$.results.benchmark.protocol_hash", reason))
    if benchmark.protocol and protocol_hash(benchmark.protocol) != benchmark.protocol_hash:
        reason = "does not hash to results.benchmark.protocol_hash"
        problems.append(Problem("$.results.benchmark.protocol", reason))
    if benchmark.data_source != "real":
        reason = f"'{benchmark.data_source}' data; only runs on real data are accepted"
        problems.append(Problem("$.results.benchmark.data_source", reason))
    if results.fast:
        problems.append(Problem("$.results.fast", "fast (smoke-test) runs are not accepted"))
    seeds = [seed.seed for seed in results.per_seed]
    if len(seeds) < MIN_SEEDS:
        reason = f"{len(seeds)} seed(s); at least {MIN_SEEDS} are required"
        problems.append(Problem("$.results.per_seed", reason))
    for index, seed in enumerate(seeds):
        if seed in seeds[:index]:
            problems.append(Problem(f"$.results.per_seed[{index}].seed", f"seed {seed} repeats"))
    for where, reason in derived_mismatches(results):
        problems.append(Problem(f"$.results.{where}", reason))
    return problems


def _check_claimed(submission: ClaimedSubmission) -> list[Problem]:
    if _registered("BENCHMARKS", submission.benchmark):
        return []
    return [Problem("$.benchmark", f"'{submission.benchmark}' is not a registered name")]


def check_submission(path: Path, submission: Submission) -> list[Problem]:
    """Everything that can be checked from the file alone, once it parsed."""
    problems = _check_file_name(path, submission)
    if isinstance(submission, ReproducedSubmission):
        return problems + _check_reproduced(submission)
    return problems + _check_claimed(submission)


# -- checks across files -------------------------------------------------------------------------


def fingerprint(submission: Submission) -> str:
    """Equal for two files that carry the same run (or the same quoted claim)."""
    if isinstance(submission, ReproducedSubmission):
        key: Any = [
            submission.benchmark,
            [[seed.seed, seed.accuracy_matrix] for seed in submission.results.per_seed],
        ]
    else:
        key = [
            submission.benchmark,
            submission.strategy.lower(),
            submission.backbone.lower(),
            submission.numbers.final_accuracy,
            submission.source.url,
        ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _other_submissions(checked: list[Checked]) -> Iterator[tuple[Path, Submission]]:
    """Every other parseable submission in the submissions folders the checked files live in."""
    mine = {c.path.resolve() for c in checked}
    roots = {c.path.resolve().parent.parent for c in checked}
    for root in sorted(roots):
        for path in sorted(root.glob("*/*.json")):
            if path.resolve() in mine:
                continue
            submission, _ = read_submission(path)
            if submission is not None:
                yield path, submission


def _check_duplicates(checked: list[Checked]) -> None:
    seen: dict[str, Path] = {}
    parsed = [c for c in checked if c.submission is not None]
    for other_path, other in _other_submissions(parsed):
        seen.setdefault(fingerprint(other), other_path)
    for item in parsed:
        key = fingerprint(item.submission)
        if key in seen:
            reason = f"duplicate entry: same results as {seen[key]}"
            item.problems.append(Problem(ROOT, reason))
        else:
            seen[key] = item.path


def _check_base(item: Checked, base: str) -> None:
    old = history.base_text(item.path, base)
    if old is None or item.submission.entry.update:
        return
    try:
        unchanged = json.loads(old) == json.loads(item.path.read_bytes())
    except json.JSONDecodeError:
        unchanged = False
    if not unchanged:
        reason = f"changes an existing entry on {base}; set entry.update to true to replace it"
        item.problems.append(Problem(ROOT, reason))


def resolve_base(paths: list[Path], base: str | None) -> str | None:
    """An explicit ref is required to exist; by default origin/main, when the repository has it."""
    if base is not None:
        return base
    roots = {history.repository_root(p) for p in paths}
    if (
        roots
        and None not in roots
        and all(history.ref_exists(r, history.DEFAULT_BASE) for r in roots)
    ):
        return history.DEFAULT_BASE
    return None


def submission_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders searched for `*.json`; a missing path is a user error."""
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.rglob("*.json")))
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"no submission file or folder at {path}")
    return files


def validate(paths: Iterable[Path], base: str | None = None) -> list[Checked]:
    """Check every file; `base` is the git ref an existing entry is compared with (None: skip)."""
    checked = []
    for path in paths:
        submission, problems = read_submission(path)
        item = Checked(path, submission, problems)
        if submission is not None:
            item.problems.extend(check_submission(path, submission))
        checked.append(item)
    _check_duplicates(checked)
    if base is not None:
        for item in checked:
            if item.submission is not None:
                _check_base(item, base)
    return checked
