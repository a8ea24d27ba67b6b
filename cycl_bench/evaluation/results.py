"""The results file, schema version 1: written by the runner, read by `compare`, `show` and the
leaderboard. One definition serves all of them.

Every derived number (final accuracy, forgetting, BWT, summary mean/std) can be recomputed from
the raw accuracy matrices and test sizes: `derived_mismatches` does exactly that. Every number is
finite (pydantic's `allow_inf_nan=False`, also inside the free-form parts), and `load_results`
refuses a file whose numbers its own raw data does not give.
"""

from __future__ import annotations

import json
import math
import os
import stat as file_mode
from pathlib import Path
from typing import Final, Literal, TypedDict, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from cycl_bench.errors import UserError
from cycl_bench.evaluation import metrics

SCHEMA_VERSION: Final = 1
READ_FIX = "give a results/*.json written by `run`"
DataSource = Literal["real", "synthetic", "folder"]

# per-seed scalars that the summary aggregates (mean and std over seeds)
SummaryKey = Literal[
    "final_accuracy",
    "average_forgetting",
    "bwt",
    "train_time_s",
    "peak_memory_mb",
    "train_bitops",
    "bitops_reduction_vs_fp32",
]
SUMMARY_KEYS: tuple[SummaryKey, ...] = get_args(SummaryKey)
# of those, the ones that are functions of the accuracy matrix
MATRIX_KEYS = ("final_accuracy", "average_forgetting", "bwt")


# Physical bounds: numbers no run can produce are refused, not numbers that are merely surprising.
MAX_TRAIN_TIME_S = 365 * 24 * 3600  # a year of training for one seed
MAX_PEAK_MEMORY_MB = 2.0**24  # 16 TiB, beyond any single machine
MAX_TRAIN_BITOPS = 1e30  # ~1000x the largest training runs on record, in bit operations
MAX_MODEL_BYTES = 2**40  # 1 TiB
MAX_SEED = 2**32 - 1  # what numpy and torch accept as a seed


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BenchmarkInfo(_Model):
    name: str
    # ni: new instances, nc: new classes, nic: new instances and classes (CORe50 NICv2)
    scenario: Literal["ni", "nc", "nic"]
    data_source: DataSource
    protocol_hash: str
    protocol: dict[str, JsonValue] = Field(default_factory=dict)
    n_experiences: int = Field(ge=1)
    test_sizes: list[int]

    @field_validator("test_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(n <= 0 for n in sizes):
            raise ValueError("every test view needs at least one sample")
        return sizes


class PretrainingInfo(_Model):
    schedule: Literal["cyclic", "constant", "none"]
    mode: Literal["cyclebnn", "cpt"] | None = None
    min_bits: int | None = None
    max_bits: int | None = None
    cycles: int | None = None
    epochs: int = 0
    eval_bits: int | None = None


class MethodInfo(_Model):
    strategy: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    # the publication the registered strategy name means, and how this configuration departs
    # from it (empty: the published algorithm); absent in files written before they were kept
    paper: str = ""
    deviations: list[str] = Field(default_factory=list)
    # its own parameters that no published source fixes for this scenario (the experiment says)
    untuned: list[str] = Field(default_factory=list)
    backbone: str
    weight_bits: int = Field(ge=1, le=32)
    activation_bits: int = Field(ge=1, le=32)
    gradient_bits: int = Field(ge=1, le=32)
    pretraining: PretrainingInfo


class ExperienceCost(_Model):
    train_time_s: float = Field(ge=0, le=MAX_TRAIN_TIME_S)
    peak_memory_mb: float = Field(ge=0, le=MAX_PEAK_MEMORY_MB)
    train_bitops: float = Field(ge=0, le=MAX_TRAIN_BITOPS)
    # seconds the evaluation after this experience took (the test views at the deployed
    # precision); absent where the experience was not evaluated, and in older files
    eval_time_s: float | None = Field(
        default=None, ge=0, le=MAX_TRAIN_TIME_S, exclude_if=lambda value: value is None
    )


class SeedResult(_Model):
    seed: int = Field(ge=0, le=MAX_SEED)
    # the experience each row of the accuracy matrix follows, when not every experience was
    # evaluated (`eval_every`); absent: row i follows experience i
    evaluated_after: list[int] | None = Field(
        default=None, min_length=1, exclude_if=lambda value: value is None
    )
    accuracy_matrix: list[list[float]]
    final_accuracy: float = Field(ge=0, le=1)
    average_forgetting: float = Field(ge=-1, le=1)
    bwt: float = Field(ge=-1, le=1)
    train_time_s: float = Field(ge=0, le=MAX_TRAIN_TIME_S)
    peak_memory_mb: float = Field(ge=0, le=MAX_PEAK_MEMORY_MB)
    train_bitops: float = Field(ge=0, le=MAX_TRAIN_BITOPS)
    # 1 - bitops / FP32 bitops: at most 32 bits per operand, so never negative; below 1
    bitops_reduction_vs_fp32: float = Field(ge=0, lt=1)
    model_size_bytes: int = Field(ge=0, le=MAX_MODEL_BYTES)
    # bytes of the replay memory at the end (its payload: stored samples or latent
    # activations, at the precision they are stored in); None for strategies without one
    replay_buffer_bytes: int | None = Field(default=None, ge=0, le=MAX_MODEL_BYTES)
    # where this seed ran (`cuda:0 (NVIDIA H100 ...)`, `cpu (x86_64, 2 threads)`)
    device: str | None = None
    per_experience: list[ExperienceCost] = Field(default_factory=list)
    # the saved final model (relative to the run folder) and its sha256, tying the numbers to
    # the weights; absent in files written before models were saved
    model_file: str | None = Field(default=None, pattern=r"^models/[^/]+\.pt$")
    model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("accuracy_matrix")
    @classmethod
    def _matrix(cls, matrix: list[list[float]], info: ValidationInfo) -> list[list[float]]:
        metrics.first_learned(matrix, info.data.get("evaluated_after"))  # checks the shape
        for row in matrix:
            for value in row:
                if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                    raise ValueError(f"accuracy {value!r} is not a fraction in [0, 1]")
        return matrix


class Stat(_Model):
    mean: float
    std: float = Field(ge=0)


class Results(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    created_at: str
    cycl_bench_version: str
    git_sha: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    device: str
    fast: bool = False
    benchmark: BenchmarkInfo
    method: MethodInfo
    per_seed: list[SeedResult] = Field(min_length=1)
    summary: dict[str, Stat]
    config: dict[str, JsonValue] = Field(default_factory=dict)

    # -- derived numbers -------------------------------------------------------------------

    @staticmethod
    def summarize(per_seed: list[SeedResult]) -> dict[str, Stat]:
        summary: dict[str, Stat] = {}
        for key in SUMMARY_KEYS:
            mean, std = metrics.mean_std([getattr(s, key) for s in per_seed])
            summary[key] = Stat(mean=mean, std=std)
        return summary


class SeedMetrics(TypedDict):
    final_accuracy: float
    average_forgetting: float
    bwt: float


def seed_metrics(
    matrix: list[list[float]], test_sizes: list[int], evaluated_after: list[int] | None = None
) -> SeedMetrics:
    """The matrix-derived per-seed numbers, as the runner writes and the validator recomputes
    (`evaluated_after`: the experience each row follows, None for every experience)."""
    return {
        "final_accuracy": metrics.final_accuracy(matrix, test_sizes, evaluated_after),
        "average_forgetting": metrics.average_forgetting(matrix, evaluated_after),
        "bwt": metrics.backward_transfer(matrix, evaluated_after),
    }


def derived_mismatches(results: Results, tolerance: float = 1e-6) -> list[tuple[str, str]]:
    """(JSON path, reason) for every stored derived number that its raw data does not give."""
    problems = []
    n_views = len(results.benchmark.test_sizes)
    for index, seed in enumerate(results.per_seed):
        path = f"per_seed[{index}]"
        matrix, after = seed.accuracy_matrix, seed.evaluated_after
        if after != results.per_seed[0].evaluated_after:
            reason = "differs from per_seed[0]; a run evaluates its seeds after the same ones"
            problems.append((f"{path}.evaluated_after", reason))
            continue
        if after is None and len(matrix) != results.benchmark.n_experiences:
            problems.append((f"{path}.accuracy_matrix", "rows differ from benchmark.n_experiences"))
            continue
        if after is not None and after[-1] != results.benchmark.n_experiences - 1:
            reason = "the last row must follow the last experience (benchmark.n_experiences - 1)"
            problems.append((f"{path}.evaluated_after", reason))
            continue
        if len(matrix[0]) != n_views:
            problems.append((f"{path}.accuracy_matrix", "columns differ from test_sizes"))
            continue
        for key, value in seed_metrics(matrix, results.benchmark.test_sizes, after).items():
            stored = getattr(seed, key)
            if abs(stored - value) > tolerance:
                problems.append((f"{path}.{key}", f"stored {stored!r}, the matrix gives {value!r}"))
    for key in results.summary:
        if key not in SUMMARY_KEYS:
            problems.append((f"summary.{key}", "not a per-seed number the summary aggregates"))
    for key, stat in Results.summarize(results.per_seed).items():
        stored = results.summary.get(key)
        if stored is None:
            problems.append((f"summary.{key}", "missing"))
            continue
        for part in ("mean", "std"):
            want, have = getattr(stat, part), getattr(stored, part)
            if abs(want - have) > tolerance * max(1.0, abs(want)):
                problems.append(
                    (f"summary.{key}.{part}", f"stored {have!r}, the seeds give {want!r}")
                )
    return problems


MAX_RESULTS_BYTES = 64 * 2**20
"""A results file of a thousand seeds of a thousand experiences is a few MB: more is not one."""


def _check_readable(path: Path, fix: str) -> None:
    """Only a regular file of a sane size is read: a named pipe would block and /dev/zero never
    end (`stat` opens neither)."""
    info = path.stat()
    if not file_mode.S_ISREG(info.st_mode):
        raise UserError(f"{path} is not a regular file (a folder, pipe or device); {fix}")
    if info.st_size > MAX_RESULTS_BYTES:
        raise UserError(
            f"{path} is {info.st_size / 2**20:.0f} MB, too large for a results file; {fix}"
        )


def load_results(path: str | Path, fix: str = READ_FIX) -> Results:
    """Read a results file, refusing (UserError: the JSON path, the reason and `fix`) a file that
    is not JSON, breaks the schema (a NaN, a number out of range) or whose derived numbers its raw
    data does not give (a summary the seeds do not give, a seed twice)."""
    path = Path(path)
    problem: str | None
    try:
        _check_readable(path, fix)
        data = json.loads(path.read_bytes())
        version = data.get("schema_version") if isinstance(data, dict) else None
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise UserError(
                f"{path} uses results schema v{version}, newer than this cycl_bench "
                f"(v{SCHEMA_VERSION}); upgrade cycl_bench to read it"
            )
        results = Results.model_validate(data)
    except FileNotFoundError:
        raise UserError(f"no results file at {path}; {fix}") from None
    except OSError as error:
        problem = f"cannot read it: {error.strerror or error}"
    except UnicodeDecodeError:
        problem = "binary data, not JSON text"
    except json.JSONDecodeError as error:
        problem = f"not JSON: {error}"
    except RecursionError:
        problem = "nested too deeply for a results file"
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        problem = f"{where.lstrip('.') or 'the file'}: {first['msg']}"
    else:
        problem = _first_problem(results)
    if problem:
        raise UserError(f"{path} is not a valid results file ({problem}); {fix}")
    return results


def _first_problem(results: Results) -> str | None:
    """'where: reason' of the first number its raw data does not give, or of a seed twice."""
    problems = [
        (f"per_seed[{index}].seed", f"seed {seed.seed} appears twice")
        for index, seed in enumerate(results.per_seed)
        if seed.seed in [s.seed for s in results.per_seed[:index]]
    ]
    problems += derived_mismatches(results)
    if not problems:
        return None
    where, reason = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {reason}{more}"


def write_results(results: Results, path: str | Path) -> Path:
    """Write `path` atomically: a stop at any moment leaves the previous file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(results.model_dump_json(indent=2))
        file.flush()
        os.fsync(file.fileno())  # on disk before it replaces the previous file
    tmp.replace(path)
    return path
