"""The results file, schema version 1: written by the runner, read by `compare`, `show` and the
leaderboard. One definition serves all of them.

Every derived number (final accuracy, forgetting, BWT, summary mean/std) can be recomputed from
the raw accuracy matrices and test sizes: `derived_mismatches` does exactly that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cycl_bench.errors import UserError
from cycl_bench.evaluation import metrics

SCHEMA_VERSION = 1
DataSource = Literal["real", "synthetic", "folder"]

# per-seed scalars that the summary aggregates (mean and std over seeds)
SUMMARY_KEYS = (
    "final_accuracy",
    "average_forgetting",
    "bwt",
    "train_time_s",
    "peak_memory_mb",
    "train_bitops",
    "bitops_reduction_vs_fp32",
)
# of those, the ones that are functions of the accuracy matrix
MATRIX_KEYS = ("final_accuracy", "average_forgetting", "bwt")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchmarkInfo(_Model):
    name: str
    scenario: Literal["ni", "nc"]
    data_source: DataSource
    protocol_hash: str
    protocol: dict[str, Any] = Field(default_factory=dict)
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
    params: dict[str, Any] = Field(default_factory=dict)
    backbone: str
    weight_bits: int = Field(ge=1, le=32)
    activation_bits: int = Field(ge=1, le=32)
    gradient_bits: int = Field(ge=1, le=32)
    pretraining: PretrainingInfo


class ExperienceCost(_Model):
    train_time_s: float = Field(ge=0)
    peak_memory_mb: float = Field(ge=0)
    train_bitops: float = Field(ge=0)


class SeedResult(_Model):
    seed: int
    accuracy_matrix: list[list[float]]
    final_accuracy: float = Field(ge=0, le=1)
    average_forgetting: float = Field(ge=-1, le=1)
    bwt: float = Field(ge=-1, le=1)
    train_time_s: float = Field(ge=0)
    peak_memory_mb: float = Field(ge=0)
    train_bitops: float = Field(ge=0)
    bitops_reduction_vs_fp32: float = Field(le=1)
    model_size_bytes: int = Field(ge=0)
    per_experience: list[ExperienceCost] = Field(default_factory=list)

    @field_validator("accuracy_matrix")
    @classmethod
    def _matrix(cls, matrix: list[list[float]]) -> list[list[float]]:
        metrics.first_learned(matrix)  # checks the shape
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
    config: dict[str, Any] = Field(default_factory=dict)

    # -- derived numbers -------------------------------------------------------------------

    @staticmethod
    def summarize(per_seed: list[SeedResult]) -> dict[str, Stat]:
        summary = {}
        for key in SUMMARY_KEYS:
            mean, std = metrics.mean_std([getattr(s, key) for s in per_seed])
            summary[key] = Stat(mean=mean, std=std)
        return summary


def seed_metrics(matrix: list[list[float]], test_sizes: list[int]) -> dict[str, float]:
    """The matrix-derived per-seed numbers, as the runner writes and the validator recomputes."""
    return {
        "final_accuracy": metrics.final_accuracy(matrix, test_sizes),
        "average_forgetting": metrics.average_forgetting(matrix),
        "bwt": metrics.backward_transfer(matrix),
    }


def derived_mismatches(results: Results, tolerance: float = 1e-6) -> list[tuple[str, str]]:
    """(JSON path, reason) for every stored derived number that its raw data does not give."""
    problems = []
    n_views = len(results.benchmark.test_sizes)
    for index, seed in enumerate(results.per_seed):
        path = f"per_seed[{index}]"
        matrix = seed.accuracy_matrix
        if len(matrix) != results.benchmark.n_experiences:
            problems.append((f"{path}.accuracy_matrix", "rows differ from benchmark.n_experiences"))
            continue
        if len(matrix[0]) != n_views:
            problems.append((f"{path}.accuracy_matrix", "columns differ from test_sizes"))
            continue
        for key, value in seed_metrics(matrix, results.benchmark.test_sizes).items():
            stored = getattr(seed, key)
            if abs(stored - value) > tolerance:
                problems.append((f"{path}.{key}", f"stored {stored!r}, the matrix gives {value!r}"))
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


def load_results(path: str | Path) -> Results:
    """Read a results file; user errors for a missing file, bad JSON or a newer schema."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no results file at {path}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read results file {path}: {error}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise UserError(
            f"{path} uses results schema v{version}, newer than this cycl_bench "
            f"(v{SCHEMA_VERSION}); upgrade cycl_bench to read it"
        )
    try:
        return Results.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path} is not a valid results file: {where}: {first['msg']}") from None


def write_results(results: Results, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(results.model_dump_json(indent=2))
    tmp.replace(path)
    return path
