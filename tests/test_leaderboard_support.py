"""Builders shared by the leaderboard tests: consistent results files made with the real schema.

The per-seed matrix metrics come from the package's `seed_metrics` (tested on their own in
test_metrics.py); the summary is the mean and sample standard deviation of the seeds, computed
here with the standard library, so the validator's recomputation is checked against numbers it
did not produce. A file built here passes validation unless a test breaks it on purpose.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
from pathlib import Path

from cycl_bench import __version__
from cycl_bench.config import shipped_protocol, shipped_protocol_hash
from cycl_bench.evaluation.results import (
    SUMMARY_KEYS,
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    Stat,
    seed_metrics,
)
from cycl_bench.leaderboard.submission import slugify

BENCHMARK = "core50_nc"
EXPERIENCES = 9


def class_incremental_matrix(seed: int, level: float, experiences: int = EXPERIENCES):
    """A plausible NC accuracy matrix: good on the newest view, decaying on older ones."""
    rng = random.Random(seed)
    matrix = []
    for i in range(experiences):
        row = []
        for j in range(experiences):
            if j > i:
                row.append(0.0)
            else:
                age = i - j
                row.append(round(min(1.0, level * (0.55**age) + rng.uniform(0, 0.05)), 4))
        matrix.append(row)
    return matrix


def make_results(
    matrices: list[list[list[float]]],
    *,
    benchmark: str = BENCHMARK,
    strategy: str = "naive",
    backbone: str = "tiny_bnn",
    data_source: str = "real",
    train_bitops: float = 1.0e12,
    seeds: list[int] | None = None,
) -> Results:
    columns = len(matrices[0][0])
    test_sizes = [450 + 10 * j for j in range(columns)]
    per_seed = []
    for seed, matrix in zip(seeds or range(len(matrices)), matrices, strict=True):
        per_seed.append(
            SeedResult(
                seed=seed,
                accuracy_matrix=matrix,
                **seed_metrics(matrix, test_sizes),
                train_time_s=100.0 + seed,
                peak_memory_mb=512.0 + seed,
                train_bitops=train_bitops * (1 + 0.01 * seed),
                bitops_reduction_vs_fp32=0.88,
                model_size_bytes=1_500_000,
            )
        )
    return Results(
        created_at="2026-01-01T00:00:00+00:00",
        cycl_bench_version=__version__,
        device="cpu",
        benchmark=BenchmarkInfo(
            name=benchmark,
            scenario="nc",
            data_source=data_source,
            protocol_hash=shipped_protocol_hash(benchmark, _track(data_source)),
            protocol=shipped_protocol(benchmark, _track(data_source)),
            n_experiences=len(matrices[0]),
            test_sizes=test_sizes,
        ),
        method=MethodInfo(
            strategy=strategy,
            backbone=backbone,
            weight_bits=1,
            activation_bits=1,
            gradient_bits=8,
            pretraining=PretrainingInfo(
                schedule="cyclic", mode="cyclebnn", min_bits=2, max_bits=6, cycles=8, epochs=60
            ),
        ),
        per_seed=per_seed,
        summary=summary_of(per_seed),
    )


def _track(data_source: str) -> str:
    """The shipped protocol a run on `data_source` has (a folder run: the real one, refused)."""
    return data_source if data_source in ("real", "synthetic") else "real"


def summary_of(per_seed: list[SeedResult]) -> dict[str, Stat]:
    """Mean and sample standard deviation over seeds of every per-seed scalar."""
    summary = {}
    for key in SUMMARY_KEYS:
        values = [getattr(seed, key) for seed in per_seed]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[key] = Stat(mean=statistics.fmean(values), std=std)
    return summary


def make_submission(
    name: str = "Test entry", *, level: float = 0.8, n_seeds: int = 3, **results_options
) -> dict:
    """A reproduced submission as the JSON object a file holds."""
    matrices = [class_incremental_matrix(seed, level) for seed in range(n_seeds)]
    results = make_results(matrices, **results_options)
    return {
        "submission_version": 1,
        "status": "reproduced",
        "entry": {
            "name": name,
            "authors": ["Test Author"],
            "paper_url": "https://example.org/paper",
            "code_url": "https://example.org/code",
            "license": "MIT",
            "hardware": "1x test CPU",
            "date": "2026-01-01",
        },
        "results": results.model_dump(mode="json"),
    }


def make_claimed(name: str = "Claimed entry", **overrides) -> dict:
    data = {
        "submission_version": 1,
        "status": "claimed",
        "entry": {"name": name, "authors": ["Someone Else"], "date": "2017-11-13"},
        "benchmark": BENCHMARK,
        "strategy": "naive",
        "backbone": "Some CNN",
        "weight_bits": 32,
        "activation_bits": 32,
        "gradient_bits": 32,
        "numbers": {"final_accuracy": 0.1075, "final_accuracy_std": 0.0084, "runs": 10},
        "source": {"citation": "A paper", "url": "https://example.org/leaderboard"},
        "measured_on": "the benchmark's own protocol, another network",
        "same_protocol": True,
    }
    data.update(overrides)
    return data


def write_submission(root: Path, data: dict, file_name: str | None = None) -> Path:
    """Write under `root/<benchmark>/<slug>.json` (or an explicit, possibly wrong, file name)."""
    benchmark = data["results"]["benchmark"]["name"] if "results" in data else data["benchmark"]
    path = root / benchmark / (file_name or f"{slugify(data['entry']['name'])}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def git(folder: Path, *args: str) -> None:
    """`git -C folder ARGS` with a fixed test identity, failing the test on an error."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, env=env)
