"""Check submission files: every failure is reported with its JSON path and a one-line reason.

Reproduced entries must be runs of registered components on the shipped protocol, on real data
or (the suite's offline reference track, shown apart) the synthetic source,
with at least three seeds, every number finite and within its physical range (see `accepted`),
and every derived number must follow from the raw accuracy matrices. Claimed entries are checked
for shape, ranges, sources and links. No entry may repeat another one, however it is disguised.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import BenchmarkInfo, derived_mismatches
from cycl_bench.leaderboard import history
from cycl_bench.leaderboard.likeness import comparable_text, comparable_url
from cycl_bench.leaderboard.submission import (
    SUBMISSION,
    ClaimedSubmission,
    ReproducedSubmission,
    Submission,
    slugify,
)

TRACKS = ("real", "synthetic")  # data sources accepted, each shown in its own tables
MAX_FILE_BYTES = 5 * 1024 * 1024
MIN_SEEDS = 3
MAX_PROBLEMS = 20  # per file: a hostile file can break thousands of fields
MAX_TEXT = 300  # characters of a path or reason: hostile keys and values can be megabytes
DUPLICATE_TOLERANCE = 1e-6  # numbers closer than this are the same number
ROOT = "$"


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True)
class Problem:
    where: str  # JSON path inside the file, "$" for the file as a whole
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", _shorten(self.where))
        object.__setattr__(self, "reason", _shorten(self.reason))

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


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects whose keys repeat are refused (Python's json would keep the last one)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _RepeatedKey(key)
        data[key] = value
    return data


def _json_path(location: Iterable[Any], data: Any) -> str:
    """The JSON path of a pydantic error location, followed through the data itself: the tags
    pydantic adds for unions (the `status`, 'list', 'float', ...) are not in the file."""
    path, node = ROOT, data
    for part in location:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            path, node = f"{path}.{part}", node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path, node = f"{path}[{part}]", node[part]
    return path


def _problem(error: Mapping[str, Any], data: Any) -> Problem:  # pydantic's ErrorDetails
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        found = data.get("status") if isinstance(data, dict) else None
        return Problem("$.status", f"must be 'reproduced' or 'claimed', not {found!r}")
    location, reason = error["loc"], error["msg"]
    if error["type"] == "missing":  # the key is not in the data: the walk cannot reach it
        return Problem(f"{_json_path(location[:-1], data)}.{location[-1]}", reason)
    value = error.get("input")
    if isinstance(value, int | float | str | bool):
        reason += f" (found {value!r})"
    return Problem(_json_path(location, data), reason)


def parse_submission(data: Any) -> tuple[Submission | None, list[Problem]]:
    """Schema, types and ranges: the submission, or the problems that stop it from being one."""
    try:
        return SUBMISSION.validate_python(data), []
    except ValidationError as error:
        errors = error.errors()
        problems = [_problem(e, data) for e in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(Problem(ROOT, f"and {len(errors) - MAX_PROBLEMS} more problems"))
        return None, problems


def parse_bytes(raw: bytes) -> tuple[Submission | None, list[Problem]]:
    """UTF-8 JSON with unique keys and real Unicode text, then the schema."""
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeDecodeError:
        return None, [Problem(ROOT, "not UTF-8 text; save the file as UTF-8 JSON")]
    except UnicodeEncodeError:
        reason = "a string holds a lone surrogate escape (\\ud800-\\udfff); write the character"
        return None, [Problem(ROOT, reason)]
    except _RepeatedKey as error:
        reason = f"key {error.args[0]!r} appears twice in one JSON object; keep only one"
        return None, [Problem(ROOT, reason)]
    except RecursionError:
        return None, [Problem(ROOT, "JSON nested too deeply")]
    except ValueError as error:  # json.JSONDecodeError, or an integer with thousands of digits
        return None, [Problem(ROOT, f"not valid JSON: {error}")]
    return parse_submission(data)


def _size_problem(size: int) -> list[Problem]:
    if size <= MAX_FILE_BYTES:
        return []
    cap = MAX_FILE_BYTES // 2**20
    return [Problem(ROOT, f"file is {size / 2**20:.1f} MiB; submissions are capped at {cap} MiB")]


def read_submission(path: Path) -> tuple[Submission | None, list[Problem]]:
    """Links and special files first, then the size (a huge file is never read), then the rest."""
    if path.is_symlink() or path.parent.is_symlink():  # the file, or its benchmark folder
        return None, [Problem(ROOT, "symbolic links are not accepted; commit the file itself")]
    try:
        info = path.stat()
    except OSError as error:
        return None, [Problem(ROOT, f"cannot read the file: {error.strerror}")]
    if not stat.S_ISREG(info.st_mode):
        return None, [Problem(ROOT, "not a regular file; a submission is one JSON file")]
    too_big = _size_problem(info.st_size)
    if too_big:
        return None, too_big
    try:
        raw = path.read_bytes()
    except OSError as error:
        return None, [Problem(ROOT, f"cannot read the file: {error.strerror}")]
    return parse_bytes(raw)


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


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _check_protocol(benchmark: BenchmarkInfo) -> list[Problem]:
    """The stored protocol hashes to the stored hash, and both are the shipped protocol's (on the
    submission's data source)."""
    from cycl_bench.config import shipped_protocol
    from cycl_bench.data.base import protocol_hash

    where = "$.results.benchmark"
    problems = []
    if protocol_hash(benchmark.protocol) != benchmark.protocol_hash:
        reason = f"does not hash to protocol_hash '{benchmark.protocol_hash}'"
        problems.append(Problem(f"{where}.protocol", reason))
    shipped = shipped_protocol(benchmark.name, benchmark.data_source)
    if benchmark.protocol_hash != protocol_hash(shipped):
        reason = (
            f"'{benchmark.protocol_hash}' is not the shipped protocol's hash "
            f"'{protocol_hash(shipped)}'"
        )
        problems.append(Problem(f"{where}.protocol_hash", reason))
    stored = benchmark.protocol
    for key in sorted(shipped.keys() | stored.keys()):
        if key not in stored:
            reason = f"missing; the shipped protocol has {_canonical(shipped[key])}"
        elif key not in shipped:
            reason = "not part of the shipped protocol"
        elif _canonical(stored[key]) != _canonical(shipped[key]):
            reason = f"the shipped protocol has {_canonical(shipped[key])}"
        else:
            continue
        problems.append(Problem(f"{where}.protocol.{key}", reason))
    return problems


def _check_reproduced(submission: ReproducedSubmission) -> list[Problem]:
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
    if benchmark.data_source not in TRACKS:
        reason = (
            f"'{benchmark.data_source}' data; only runs on real data (or the synthetic source, "
            "for the reference track) are accepted"
        )
        problems.append(Problem("$.results.benchmark.data_source", reason))
    elif _registered("BENCHMARKS", benchmark.name):
        problems.extend(_check_protocol(benchmark))
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
    return problems + _check_models(submission, seeds)


def _check_models(submission: ReproducedSubmission, seeds: list[int]) -> list[Problem]:
    """Either no models, or one per seed of the results, each seed once."""
    if not submission.models:
        return []
    problems = []
    listed = [model.seed for model in submission.models]
    for index, seed in enumerate(listed):
        if seed in listed[:index]:
            problems.append(Problem(f"$.models[{index}].seed", f"seed {seed} repeats"))
        elif seed not in seeds:
            problems.append(
                Problem(f"$.models[{index}].seed", f"seed {seed} is not in the results")
            )
    missing = [seed for seed in seeds if seed not in listed]
    if missing:
        reason = f"no model for seed(s) {', '.join(map(str, missing))}; list every seed's or none"
        problems.append(Problem("$.models", reason))
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


def _same_matrix(a: list[list[float]], b: list[list[float]]) -> bool:
    return len(a) == len(b) and all(
        len(row_a) == len(row_b)
        and all(abs(x - y) <= DUPLICATE_TOLERANCE for x, y in zip(row_a, row_b, strict=True))
        for row_a, row_b in zip(a, b, strict=True)
    )


def repeats(new: Submission, old: Submission) -> str | None:
    """What `new` repeats of `old` (a run, or a quoted claim), or None.

    A run is its accuracy matrix: one seed's matrix found in another file, whatever its seed
    number, is the same run. A claim is its strategy, backbone, number and source, compared as a
    reader sees them (`likeness`). Numbers within DUPLICATE_TOLERANCE are equal.
    """
    if new.benchmark != old.benchmark:
        return None
    if isinstance(new, ReproducedSubmission) and isinstance(old, ReproducedSubmission):
        for i, seed in enumerate(new.results.per_seed):
            for j, other in enumerate(old.results.per_seed):
                if _same_matrix(seed.accuracy_matrix, other.accuracy_matrix):
                    return f"per_seed[{i}] has the accuracy matrix of per_seed[{j}] in"
    if isinstance(new, ClaimedSubmission) and isinstance(old, ClaimedSubmission):
        same = (
            comparable_text(new.strategy) == comparable_text(old.strategy)
            and comparable_text(new.backbone) == comparable_text(old.backbone)
            and abs(new.numbers.final_accuracy - old.numbers.final_accuracy) <= DUPLICATE_TOLERANCE
            and comparable_url(new.source.url) == comparable_url(old.source.url)
        )
        if same:
            return "the same claim (strategy, backbone, final accuracy, source) as"
    return None


def _absolute(path: Path) -> Path:
    """Absolute and normalized, without following symbolic links."""
    return Path(os.path.abspath(path))


def _other_submissions(checked: list[Checked]) -> Iterator[tuple[Path, Submission]]:
    """Every other parseable submission in the submissions folders the checked files live in."""
    mine = {_absolute(c.path) for c in checked}
    roots = {_absolute(c.path).parent.parent for c in checked}
    for root in sorted(roots):
        for path in sorted(root.glob("*/*.json")):
            if _absolute(path) in mine:
                continue
            submission, _ = read_submission(path)
            if submission is not None:
                yield path, submission


def _age(path: Path, submission: Submission, base: str | None) -> tuple:
    """Older sorts first: on the base branch before new, then by entry date, then by path."""
    new = base is None or history.base_text(path, base) is None
    return (new, submission.entry.date, _absolute(path).as_posix())


def _report_repeat(
    item: Checked,
    submission: Submission,
    pool: list[tuple[Path, Submission]],
    base: str | None,
    is_new: bool = False,
) -> None:
    """When `item` (read as `submission`) repeats older files of `pool`, report it with the
    oldest: the original."""
    age = None if is_new else _age(item.path, submission, base)
    originals = []
    for path, other in pool:
        reason = repeats(submission, other) if path != item.path else None
        if reason is not None:
            other_age = _age(path, other, base)
            if age is None or other_age < age:
                originals.append((other_age, reason, path))
    if originals:
        _, reason, path = min(originals)
        item.problems.append(Problem(ROOT, f"duplicate entry: {reason} {path}"))


def _check_duplicates(checked: list[Checked], base: str | None) -> None:
    parsed = [(c, c.submission) for c in checked if c.submission is not None]
    items = [item for item, _ in parsed]
    pool = [(c.path, submission) for c, submission in parsed] + list(_other_submissions(items))
    for item, submission in parsed:
        _report_repeat(item, submission, pool, base)


def _check_base(item: Checked, submission: Submission, base: str) -> None:
    old = history.base_text(item.path, base)
    if old is None or submission.entry.update:
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
    roots = {history.repository_root(p) for p in paths}
    if base is not None:
        if None in roots:  # the ref itself is checked where an entry is compared with it
            raise UserError(
                f"--base {base}: a submission given is not in a git repository; "
                "drop --base or give files of a clone"
            )
        return base
    found = {root for root in roots if root is not None}
    if (
        roots
        and len(found) == len(roots)  # every path in a repository
        and all(history.ref_exists(r, history.DEFAULT_BASE) for r in found)
    ):
        return history.DEFAULT_BASE
    return None


def _folder_files(folder: Path) -> list[Path]:
    """Every `*.json` below `folder` (a folder so named too), and every symbolic link there (never
    followed): each is checked, so what is not a submission file is reported, not skipped."""
    return sorted(path for path in folder.rglob("*") if path.is_symlink() or path.suffix == ".json")


def submission_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders searched; a missing path is a user error."""
    files = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            files.extend(_folder_files(path))
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            raise UserError(f"no submission file or folder at {path}")
    return files


def _checked(path: Path, read: tuple[Submission | None, list[Problem]]) -> Checked:
    submission, problems = read
    item = Checked(path, submission, problems)
    if submission is not None:
        item.problems.extend(check_submission(path, submission))
    return item


def validate(paths: Iterable[Path], base: str | None = None) -> list[Checked]:
    """Check every file; `base` is the git ref an existing entry is compared with (None: skip)."""
    checked = [_checked(path, read_submission(path)) for path in paths]
    _check_duplicates(checked, base)
    if base is not None:
        for item in checked:
            if item.submission is not None:
                _check_base(item, item.submission, base)
    return checked


def validate_new(path: Path, raw: bytes) -> Checked:
    """The checks `validate` runs, on content about to be written to `path` (what `submit` does).

    A file already at `path` is the entry this content replaces, so it is not a duplicate.
    """
    read = (None, _size_problem(len(raw))) if len(raw) > MAX_FILE_BYTES else parse_bytes(raw)
    item = _checked(path, read)
    if item.submission is not None:
        others = list(_other_submissions([item]))
        _report_repeat(item, item.submission, others, base=None, is_new=True)
    return item
