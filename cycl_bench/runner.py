"""One experiment run: resolved config -> stream -> pretraining -> every strategy x seed -> files.

`prepare` checks the whole run (names, data source and folder, pretraining source, every strategy
parameter, and when resuming the results already there) and builds the stream before anything is
written, so a run that fails before training leaves nothing behind. Then everything a run produces
goes under one folder (`runs/<experiment>/<timestamp>/`): config.yaml (the resolved config with
the selected strategy entries and all their parameters, written first), results/<strategy
entry>.json (rewritten as each seed finishes, so an interrupted run keeps what it finished),
plots/, pretrain/, wandb/, run.log (library output). `run --resume` continues a folder with what
is missing, and refuses results it cannot continue rather than overwrite them.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from cycl_bench import __version__
from cycl_bench.config import ExperimentConfig, load_resolved, to_yaml
from cycl_bench.data.base import Stream, default_data_root
from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import (
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    load_results,
    write_results,
)
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.registry import BACKBONES, BENCHMARKS

CONFIG_FILE = "config.yaml"
RESULTS_DIR = "results"
PLOTS_DIR = "plots"
LOG_FILE = "run.log"
PACKAGES = ("torch", "torchvision", "avalanche-lib", "brevitas", "pytorch-lightning", "wandb")


@dataclass
class Plan:
    """A run checked in full, its stream built, nothing written yet (`prepare`)."""

    config: ExperimentConfig
    """The selected strategy entries, each with every parameter resolved (defaults filled in)."""
    stream: Stream
    bits: dict[str, tuple[int, int, int]]
    """(weight, activation, gradient) bits each entry reports training and evaluating with."""

    @property
    def entries(self) -> list[str]:
        return list(self.config.strategy)

    @property
    def deployed_bits(self) -> int:
        """Weight bits of the evaluated backbone (32 for a float one); every entry shares it."""
        return next(iter(self.bits.values()))[0]


@dataclass
class RunOutcome:
    run_dir: Path
    results: list[Results] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def check_out_dir(out: Path) -> None:
    """A UserError before any work when run folders cannot be created under `out`."""
    existing = Path(out).absolute()
    while not existing.exists():
        existing = existing.parent
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise UserError(
            f"cannot write the run folder under {out}: {existing} is not a writable folder; "
            "choose a writable folder with --out"
        )


def new_run_dir(out: Path, experiment: str) -> Path:
    """`out/<experiment>/<UTC timestamp>`, created now; a UserError if it cannot be written."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(out) / experiment
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    try:
        run_dir.mkdir(parents=True)
        (run_dir / ".write-test").touch()
        (run_dir / ".write-test").unlink()
    except OSError as error:
        raise UserError(
            f"cannot write the run folder {run_dir}: {error.strerror or error}; "
            "choose a writable folder with --out"
        ) from None
    return run_dir


def start(config: ExperimentConfig, out: Path) -> Path:
    """A fresh run folder holding the resolved config (pass `Plan.config`: every parameter)."""
    run_dir = new_run_dir(out, config.experiment)
    (run_dir / CONFIG_FILE).write_text(to_yaml(config))
    return run_dir


def load_run(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); give a folder of runs/")
    return load_resolved(path)


def results_path(run_dir: Path, entry: str) -> Path:
    return Path(run_dir) / RESULTS_DIR / f"{entry}.json"


def finished_seeds(
    run_dir: Path, config: ExperimentConfig, entry: str, protocol_hash: str
) -> dict[int, SeedResult]:
    """The seeds of `entry` already in `run_dir`. A results file this run cannot continue (not a
    valid results file, another stream, other parameters, a seed the run does not have) is a
    UserError: continuing would overwrite it."""
    path = results_path(run_dir, entry)
    if not path.is_file():
        return {}
    fix = f"move it out of {Path(run_dir) / RESULTS_DIR} to run {entry} again, or start a new run"
    results = load_results(path, fix)
    name, params = config.strategy_of(entry)
    if results.benchmark.protocol_hash != protocol_hash:
        problem = (
            f"was measured on another stream (protocol {results.benchmark.protocol_hash}, "
            f"this run's is {protocol_hash})"
        )
    elif results.method.strategy != name or results.method.params != params:
        problem = f"holds results of other parameters than entry '{entry}' of {CONFIG_FILE}"
    elif any(seed.seed not in config.seeds for seed in results.per_seed):
        extra = [seed.seed for seed in results.per_seed if seed.seed not in config.seeds]
        problem = f"holds seed {extra[0]}, which is not among the run's seeds {config.seeds}"
    else:
        return {seed.seed: seed for seed in results.per_seed}
    raise UserError(f"{path} {problem}; {fix}")


# -- pieces of the results file ------------------------------------------------------------


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


# -- the run -------------------------------------------------------------------------------


def build_stream(config: ExperimentConfig) -> Stream:
    data_root = Path(config.data_root) if config.data_root else default_data_root()
    return BENCHMARKS.build(
        config.benchmark.name,
        data=config.data,
        data_root=data_root,
        seed=config.benchmark.seed,
        **config.benchmark.options_for(config.data),
    )


def check_pretraining_source(config: PretrainConfig) -> None:
    """The pretraining source is known and, for folder:PATH, the folder exists."""
    from cycl_bench.pretrain.data import FOLDER_PREFIX, check_data_name

    name = check_data_name(config.data)
    if config.schedule == "none" or not name.startswith(FOLDER_PREFIX):
        return
    folder = Path(name[len(FOLDER_PREFIX) :]).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"pretrain data folder {folder} does not exist; check the path after folder: "
            "in pretrain.data"
        )


def resolve_parameters(config: ExperimentConfig) -> ExperimentConfig:
    """Every strategy entry with all its parameters: the strategy's defaults, then the entry's."""
    from cycl_bench.strategies import strategy_defaults

    entries = {}
    for entry in config.strategy:
        name, params = config.strategy_of(entry)
        entries[entry] = {
            **({"use": name} if name != entry else {}),
            **strategy_defaults(name),
            **params,
        }
    return config.model_copy(update={"strategy": entries})


def check_parameters(config: ExperimentConfig, stream: Stream) -> dict[str, tuple[int, int, int]]:
    """Build every strategy once on a throwaway model, so a bad parameter stops the run before
    any training rather than after the strategies before it. Returns the (weight, activation,
    gradient) bits each entry reports it trains with (`ContinualStrategy.precision`)."""
    from cycl_bench.evaluation.loop import build_model
    from cycl_bench.strategies import build_strategy

    backbone_kwargs = _backbone_kwargs(config, stream)
    bits = {}
    for entry in config.strategy:
        name, params = config.strategy_of(entry)
        model = build_model(
            stream, config.backbone.name, backbone_kwargs, None, config.pretrain.eval_bits
        )
        try:
            built = build_strategy(name, model=model, params=params, device="cpu")
        except UserError as error:
            raise UserError(f"strategy.{entry}: {error}") from None
        bits[entry] = built.precision()
    return bits


def prepare(config: ExperimentConfig, *, resume: Path | None = None) -> Plan:
    """Check the whole run before anything is written, cheapest checks first: W&B mode, the
    benchmark, its data source, options and folder (its protocol, no image read), the backbone,
    the pretraining source, the strategies; for `resume`, the results already in that folder.
    Then build the stream and every strategy once (their parameters' values)."""
    from cycl_bench.data import protocol_hash, protocol_of
    from cycl_bench.logging.wandb_run import check_wandb_mode

    check_wandb_mode(config.wandb)  # a missing login fails now, not after pretraining
    protocol = protocol_of(
        config.benchmark.name,
        data=config.data,
        seed=config.benchmark.seed,
        **config.benchmark.options_for(config.data),
    )
    BACKBONES.get(config.backbone.name)
    check_pretraining_source(config.pretrain)
    config = resolve_parameters(config)
    if resume is not None:
        for entry in config.strategy:
            finished_seeds(resume, config, entry, protocol_hash(protocol))
    stream = build_stream(config)
    return Plan(config=config, stream=stream, bits=check_parameters(config, stream))


def run(
    plan: Plan,
    run_dir: Path,
    *,
    cache_dir: Path | None = None,
    echo=print,
) -> RunOutcome:
    """Run (or continue) every strategy entry x seed of `plan` not yet in `run_dir`."""
    from cycl_bench.evaluation.loop import run_strategy
    from cycl_bench.logging.wandb_run import WandbSession, offline_sync_hint

    config, stream = plan.config, plan.stream
    echo(_describe_stream(stream))
    checkpoint, backbone_kwargs, schedule_png = _pretrain(plan, run_dir, cache_dir, echo)
    env = environment()
    outcome = RunOutcome(run_dir=run_dir)
    total, done = len(plan.entries) * len(config.seeds), 0
    for entry in plan.entries:
        method = method_info(config, entry, plan.bits[entry])
        finished = finished_seeds(run_dir, config, entry, stream.protocol_hash)
        per_seed: list[SeedResult] = []
        for seed in config.seeds:
            done += 1
            if seed in finished:
                per_seed.append(finished[seed])
                echo(f"[{done}/{total}] {entry} seed {seed}: already done, kept")
                continue
            started = time.perf_counter()
            with WandbSession(
                mode=config.wandb,
                out_dir=run_dir,
                group=config.experiment,
                name=f"{entry}-seed{seed}",
                config={**config.model_dump(mode="json"), "strategy_entry": entry, "seed": seed},
                tags=[stream.source, method.strategy],
            ) as session:
                seed_result = run_strategy(
                    stream,
                    strategy=method.strategy,
                    params=method.params,
                    backbone=config.backbone.name,
                    backbone_kwargs=backbone_kwargs,
                    checkpoint=checkpoint,
                    seed=seed,
                    device=config.device,
                    eval_bits=config.pretrain.eval_bits,
                    on_experience=_experience_logger(session, stream.test_sizes),
                    on_finished=_model_saver(plan, run_dir, entry, seed, backbone_kwargs),
                )
                per_seed.append(seed_result)
                results = _results(config, stream, entry, method, per_seed, env)
                path = write_results(results, results_path(run_dir, entry))
                session.finish(summary=_seed_summary(seed_result), files=[path])
            echo(
                f"[{done}/{total}] {entry} seed {seed}: final accuracy "
                f"{100 * seed_result.final_accuracy:.1f}% ({time.perf_counter() - started:.1f} s)"
            )
        outcome.results.append(load_results(results_path(run_dir, entry)))
    outcome.plots = _plots(outcome.results, run_dir, schedule_png)
    hint = offline_sync_hint(run_dir) if config.wandb == "offline" else None
    if hint:
        echo(hint)
    return outcome


def method_info(config: ExperimentConfig, entry: str, bits: tuple[int, int, int]) -> MethodInfo:
    """The strategy entry with every parameter resolved (defaults filled in) and the
    (weight, activation, gradient) bits it reports training and evaluating with."""
    from cycl_bench.strategies import strategy_defaults

    name, params = config.strategy_of(entry)
    resolved = {**strategy_defaults(name), **params}
    return MethodInfo(
        strategy=name,
        params=resolved,
        backbone=config.backbone.name,
        weight_bits=bits[0],
        activation_bits=bits[1],
        gradient_bits=bits[2],
        pretraining=pretraining_info(config),
    )


def _model_saver(plan: Plan, run_dir: Path, entry: str, seed: int, backbone_kwargs):
    """Saves a cell's final model (before its results file is written, so a run interrupted
    between the two redoes the cell and replaces the model) and returns where, with its sha256."""
    from cycl_bench.export import model_path, save_model

    def save(model) -> dict[str, str]:
        config, stream = plan.config, plan.stream
        path = model_path(run_dir, entry, seed)
        sha256 = save_model(
            model,
            path,
            backbone=config.backbone.name,
            backbone_kwargs=backbone_kwargs,
            deployed_bits=plan.deployed_bits,
            info={
                "experiment": config.experiment,
                "strategy_entry": entry,
                "strategy": config.strategy_of(entry)[0],
                "seed": seed,
                "benchmark": stream.name,
                "data_source": stream.source,
                "protocol_hash": stream.protocol_hash,
            },
        )
        return {"model_file": path.relative_to(run_dir).as_posix(), "model_sha256": sha256}

    return save


def _experience_logger(session, test_sizes: list[int]):
    from cycl_bench.logging.wandb_run import experience_accuracies

    def log(index: int, info: dict[str, Any]) -> None:
        metrics = experience_accuracies(index, info["accuracy_row"], test_sizes)
        metrics.update(
            {
                f"experience/{key}": float(value)
                for key, value in info.items()
                if key != "accuracy_row" and isinstance(value, (int, float))
            }
        )
        session.log_experience(index, metrics)

    return log


def _describe_stream(stream: Stream) -> str:
    s = stream.summary()
    return (
        f"stream {s['benchmark']} ({s['data_source']} data): {s['experiences']} experiences, "
        f"{s['num_classes']} classes, train {sum(s['train_sizes'])} / test {sum(s['test_sizes'])} "
        f"images of {'x'.join(map(str, s['image_shape']))}, protocol {s['protocol_hash']}"
    )


def _pretrain(plan: Plan, run_dir: Path, cache_dir, echo):
    from cycl_bench.logging.console import precision_label
    from cycl_bench.pretrain.run import pretrain

    config, stream = plan.config, plan.stream
    if config.pretrain.schedule == "none":
        return None, _backbone_kwargs(config, stream), None
    result = pretrain(
        config.pretrain,
        backbone=config.backbone.name,
        stream=stream,
        seed=config.benchmark.seed,
        out_dir=run_dir / "pretrain",
        cache_dir=cache_dir or default_cache_dir(),
        backbone_options=config.backbone.options,
        data_root=Path(config.data_root) if config.data_root else None,
    )
    origin = "reused from the cache" if result.from_cache else "trained"
    bits = precision_label(plan.deployed_bits)
    echo(
        f"pretraining {origin}: {result.val_accuracy:.1%} at {bits}, "
        f"training BitOPs -{result.reduction_vs_fp32:.1%} vs FP32 ({result.checkpoint})"
    )
    kwargs = {**result.backbone_kwargs, "num_classes": stream.num_classes}
    return result.checkpoint, kwargs, result.schedule_png


def _backbone_kwargs(config: ExperimentConfig, stream: Stream) -> dict[str, Any]:
    from cycl_bench.pretrain.run import backbone_kwargs

    return backbone_kwargs(
        stream,
        num_classes=stream.num_classes,
        mode=config.pretrain.mode,
        options=config.backbone.options,
    )


def default_cache_dir() -> Path:
    import os

    from platformdirs import user_cache_dir

    env = os.environ.get("CYCL_BENCH_CACHE")
    return Path(env) if env else Path(user_cache_dir("cycl_bench")) / "checkpoints"


def _results(config, stream, entry, method, per_seed, env) -> Results:
    return Results(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=device_name(config.device),
        fast=config.fast,
        benchmark=benchmark_info(stream),
        method=method,
        per_seed=sorted(per_seed, key=lambda s: config.seeds.index(s.seed)),
        summary=Results.summarize(per_seed),
        config={**config.model_dump(mode="json"), "strategy_entry": entry},
        **env,
    )


def _seed_summary(seed: SeedResult) -> dict[str, float]:
    keys = ("final_accuracy", "average_forgetting", "bwt", "train_time_s", "peak_memory_mb")
    summary = {key: getattr(seed, key) for key in keys}
    summary.update(
        train_bitops=seed.train_bitops, bitops_reduction_vs_fp32=seed.bitops_reduction_vs_fp32
    )
    return summary


def _plots(results: list[Results], run_dir: Path, schedule_png: Path | None) -> list[Path]:
    from cycl_bench.evaluation.plots import plot_accuracy_curves, plot_accuracy_matrix

    if not results:
        return []
    folder = Path(run_dir) / PLOTS_DIR
    paths = [plot_accuracy_curves(results, folder / "accuracy_curves.png")]
    for entry_results in results:
        entry = entry_results.config.get("strategy_entry", entry_results.method.strategy)
        paths.append(plot_accuracy_matrix(entry_results, folder / f"accuracy_matrix_{entry}.png"))
    if schedule_png and Path(schedule_png).is_file():
        paths.append(Path(schedule_png))
    return paths
