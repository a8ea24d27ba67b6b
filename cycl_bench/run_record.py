"""What a run records about itself: provenance (versions, git commit, device) and the results
file of a strategy entry, assembled from the run's config, stream and finished seeds."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from cycl_bench import __version__
from cycl_bench.config import ExperimentConfig
from cycl_bench.data.base import Stream
from cycl_bench.evaluation.results import (
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
)
from cycl_bench.strategies import strategy_params

PACKAGES = ("torch", "torchvision", "avalanche-lib", "brevitas", "pytorch-lightning", "wandb")


def environment() -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    packages["python"] = platform.python_version()
    return {"cycl_bench_version": __version__, "git_sha": _git_sha(), "packages": packages}


def _git_sha() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def benchmark_info(stream: Stream) -> BenchmarkInfo:
    return BenchmarkInfo(
        name=stream.name,
        scenario=stream.scenario,
        data_source=stream.source,
        protocol_hash=stream.protocol_hash,
        protocol=stream.protocol,
        n_experiences=stream.n_experiences,
        test_sizes=stream.test_sizes,
    )


def pretraining_info(config: ExperimentConfig) -> PretrainingInfo:
    pre = config.pretrain
    if pre.schedule == "none":
        return PretrainingInfo(schedule="none")
    cyclic = pre.schedule == "cyclic"
    return PretrainingInfo(
        schedule=pre.schedule,
        mode=pre.mode,
        min_bits=pre.min_bits if cyclic else pre.eval_bits,
        max_bits=pre.max_bits if cyclic else pre.eval_bits,
        cycles=pre.cycles if cyclic else None,
        epochs=pre.epochs,
        eval_bits=pre.eval_bits,
    )


def method_info(config: ExperimentConfig, entry: str, bits: tuple[int, int, int]) -> MethodInfo:
    """The strategy entry (its parameters resolved by `runner.prepare`) and the (weight,
    activation, gradient) bits it reports training and evaluating with."""
    name, params = config.strategy_of(entry)
    checked = strategy_params(name, params)
    return MethodInfo(
        strategy=name,
        params=params,
        paper=checked.paper,
        deviations=checked.deviations(),
        backbone=config.backbone.name,
        weight_bits=bits[0],
        activation_bits=bits[1],
        gradient_bits=bits[2],
        pretraining=pretraining_info(config),
    )


def entry_results(
    config: ExperimentConfig,
    stream: Stream,
    entry: str,
    method: MethodInfo,
    per_seed: list[SeedResult],
    env: dict[str, Any],
    device: str,
) -> Results:
    """The results file of `entry` with the seeds finished so far, in the config's seed order;
    `device` as `device_name` says it where the cells ran."""
    return Results(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=device,
        fast=config.fast,
        benchmark=benchmark_info(stream),
        method=method,
        per_seed=sorted(per_seed, key=lambda s: config.seeds.index(s.seed)),
        summary=Results.summarize(per_seed),
        config={**config.model_dump(mode="json"), "strategy_entry": entry},
        **env,
    )
