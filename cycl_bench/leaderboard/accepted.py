"""The results file as the leaderboard accepts it: every number finite and physically possible.

These models extend the results schema (`cycl_bench.evaluation.results`) and only tighten it:
no NaN or infinity anywhere (pydantic's `allow_inf_nan=False`, also inside free-form parts such as
the strategy parameters), every cost within the bounds below, the stream's protocol present,
summary keys known, texts of a sane length. The bounds are generous on purpose: they refuse
numbers no run can produce, not numbers that are merely surprising.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, JsonValue

from cycl_bench.evaluation.results import (
    MAX_MODEL_BYTES,
    MAX_PEAK_MEMORY_MB,
    MAX_TRAIN_BITOPS,
    MAX_TRAIN_TIME_S,
    BenchmarkInfo,
    ExperienceCost,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    Stat,
    SummaryKey,
)

STRICT = ConfigDict(allow_inf_nan=False)

MIN_PEAK_MEMORY_MB = 1.0  # a process that trains a network holds more than 1 MB
MAX_EXPERIENCES = 1000
MAX_TEST_SIZE = 10**7  # images in one test view
MAX_SEEDS = 100
MAX_EPOCHS = 100_000

Bits = Annotated[int, Field(ge=1, le=32)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Line = Annotated[str, Field(max_length=200)]
TestSize = Annotated[int, Field(ge=1, le=MAX_TEST_SIZE)]


class AcceptedCost(ExperienceCost):
    model_config = STRICT
    train_time_s: float = Field(ge=0, le=MAX_TRAIN_TIME_S)
    peak_memory_mb: float = Field(ge=MIN_PEAK_MEMORY_MB, le=MAX_PEAK_MEMORY_MB)
    train_bitops: float = Field(ge=0, le=MAX_TRAIN_BITOPS)


class AcceptedSeed(SeedResult):
    """Tighter than what a run may write: some training happened, in a real process."""

    model_config = STRICT
    train_time_s: float = Field(gt=0, le=MAX_TRAIN_TIME_S)
    peak_memory_mb: float = Field(ge=MIN_PEAK_MEMORY_MB, le=MAX_PEAK_MEMORY_MB)
    train_bitops: float = Field(ge=1, le=MAX_TRAIN_BITOPS)
    model_size_bytes: int = Field(ge=1, le=MAX_MODEL_BYTES)
    # pydantic validates the narrower field; mypy's rule for mutable attributes (list is
    # invariant) does not allow a subclass to narrow it
    per_experience: list[AcceptedCost] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=MAX_EXPERIENCES
    )


class AcceptedStat(Stat):
    model_config = STRICT


class AcceptedBenchmark(BenchmarkInfo):
    model_config = STRICT
    name: Name
    protocol_hash: str = Field(pattern=r"^[0-9a-f]{16}$")
    # required: the validator hashes it and compares it with the shipped protocol
    protocol: dict[str, JsonValue] = Field(min_length=1)
    n_experiences: int = Field(ge=1, le=MAX_EXPERIENCES)
    test_sizes: list[TestSize] = Field(min_length=1, max_length=MAX_EXPERIENCES)


class AcceptedPretraining(PretrainingInfo):
    model_config = STRICT
    min_bits: Bits | None = None
    max_bits: Bits | None = None
    cycles: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)
    epochs: int = Field(default=0, ge=0, le=MAX_EPOCHS)
    eval_bits: Bits | None = None


class AcceptedMethod(MethodInfo):
    model_config = STRICT
    strategy: Name
    params: dict[str, JsonValue] = Field(default_factory=dict)
    backbone: Name
    pretraining: AcceptedPretraining


class AcceptedResults(Results):
    model_config = STRICT
    created_at: Line
    cycl_bench_version: Line
    git_sha: Line | None = None
    packages: dict[Line, Line] = Field(default_factory=dict)
    device: Line
    benchmark: AcceptedBenchmark
    method: AcceptedMethod
    # narrower fields, validated by pydantic (mypy: list and dict are invariant, see above)
    per_seed: list[AcceptedSeed] = Field(min_length=1, max_length=MAX_SEEDS)  # type: ignore[assignment]
    summary: dict[SummaryKey, AcceptedStat]  # type: ignore[assignment]
    config: dict[str, JsonValue] = Field(default_factory=dict)
