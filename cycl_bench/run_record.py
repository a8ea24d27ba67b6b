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
    return {"cycl_bench_version": __version__, "git_sha": git_sha(), "packages": packages}


PACKAGE_DIR = Path(__file__).resolve().parent
UNKNOWN_SHA = "unknown"


def git_sha(package_dir: Path = PACKAGE_DIR) -> str:
    """The commit of the repository that holds this package's own source, else "unknown".

    The repository must have the package directory at its top level (`<toplevel>/cycl_bench`)
    and track it: a copy installed inside another repository (a virtual environment in some
    project's checkout, a vendored copy) is not that repository's commit.
    """
    package_dir = Path(package_dir).resolve()

    def git(*args: str) -> str | None:
        done = subprocess.run(
            ["git", *args], cwd=package_dir, capture_output=True, text=True, timeout=5
        )
        return done.stdout.strip() or None if done.returncode == 0 else None

    try:
        toplevel = git("rev-parse", "--show-toplevel")
        if toplevel is None or Path(toplevel).resolve() != package_dir.parent:
            return UNKNOWN_SHA
        if git("ls-files", "--error-unmatch", "__init__.py") is None:  # not tracked there
            return UNKNOWN_SHA
        return git("rev-parse", "HEAD") or UNKNOWN_SHA
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_SHA


def device_name(device: str) -> str:
    """Where this process trains on `device`, as the results file says it:
    `cuda:0 (NVIDIA H100 80GB HBM3)` or `cpu (x86_64, 2 torch threads)`."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} torch threads)"


def run_device(per_seed: list[SeedResult]) -> str:
    """The results file's `device`: where its seeds ran, each distinct device once in seed
    order, joined with "; " when they differ (a seed written before seeds recorded their
    device counts as "unknown")."""
    devices = dict.fromkeys(seed.device or "unknown" for seed in per_seed)
    return "; ".join(devices)


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
        untuned=config.untuned.get(entry, []),
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
) -> Results:
    """The results file of `entry` with the seeds finished so far, in the config's seed order;
    its `device` names every device its seeds ran on (`run_device`)."""
    per_seed = sorted(per_seed, key=lambda s: config.seeds.index(s.seed))
    return Results(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=run_device(per_seed),
        fast=config.fast,
        benchmark=benchmark_info(stream),
        method=method,
        per_seed=per_seed,
        summary=Results.summarize(per_seed),
        config={**config.model_dump(mode="json"), "strategy_entry": entry},
        **env,
    )
