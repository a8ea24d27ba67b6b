"""`pretrain`: train a backbone under a precision schedule with a Lightning Trainer, or reuse the
cached result of an identical earlier run (`models.checkpoint.load_pretrained` loads it)."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.multiprocessing
from lightning_fabric.accelerators.cuda import num_cuda_devices
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from cycl_bench import __version__
from cycl_bench.data.base import Stream
from cycl_bench.errors import UserError
from cycl_bench.evaluation.plots import plot_precision_schedule
from cycl_bench.pretrain import cache
from cycl_bench.pretrain.callback import CyclicPrecision
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.data import PretrainingData, pretraining_data
from cycl_bench.pretrain.module import BackboneClassifier
from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.precision import set_precision
from cycl_bench.registry import BACKBONES
from cycl_bench.spec import RunSpec

# --fast: a real but short training
FAST_EPOCHS = 2
FAST_TRAIN_BATCHES = 16
FAST_VAL_BATCHES = 4
METRICS = "metrics.csv"
SCHEDULE_PNG = "schedule.png"
TRAINING_RECORD = "training.json"  # the callback's record, read back and folded into the sidecar
# cache entry file -> its copy in out_dir (a run folder keeps the backbone its cells used)
PUBLISHED = {
    METRICS: "pretrain_metrics.csv",
    SCHEDULE_PNG: "pretrain_schedule.png",
    cache.SIDECAR: "pretrain.json",
    cache.CHECKPOINT: "backbone.pt",
}


@dataclass
class PretrainResult:
    checkpoint: Path
    from_cache: bool
    val_accuracy: float
    """Accuracy on the validation data at the deployment precision (eval_bits)."""
    train_bitops: int
    """each layer at the bits it really multiplies (1 x 1 for a binary convolution in cyclebnn
    mode whatever the cycled k)"""
    fp32_bitops: int
    """the same steps at 32 bits everywhere: the reference of both conventions"""
    steps: int
    metrics_csv: Path
    schedule_png: Path | None
    cache_key: str
    backbone_kwargs: dict[str, Any]
    cpt_convention_bitops: int | None = None
    """CPT's and CycleBNN's convention: binary layers at the scheduled k bits, forward k x k,
    gradients k x grad_bits (None for a cache entry written before it was recorded)"""

    @property
    def reduction_vs_fp32(self) -> float:
        return 1.0 - self.train_bitops / self.fp32_bitops if self.fp32_bitops else 0.0

    @property
    def cpt_convention_reduction_vs_fp32(self) -> float | None:
        if self.cpt_convention_bitops is None:
            return None
        return 1.0 - self.cpt_convention_bitops / self.fp32_bitops if self.fp32_bitops else 0.0


def pretrain(
    config: PretrainConfig,
    spec: RunSpec,
    *,
    stream: Stream,
    seed: int,
    out_dir: Path,
    fast: bool = False,
    data_root: Path | None = None,
    rerunnable: bool = False,
) -> PretrainResult | None:
    """Pretrain the spec's backbone on `config.data` at the stream's image size, or reuse the
    cached identical run (a source separate from the stream is shared by every stream of that
    size).

    The checkpoint stays in `spec.cache_dir`; it, its record, the metrics CSV and the schedule PNG
    are copied to `out_dir`. An `out_dir` that already holds this key's checkpoint (a resumed run
    folder) keeps its own: restored into a cache that lacks it, and a UserError where the cache
    or a new pretraining holds other weights (pretraining is not bit-reproducible across
    machines, and a run's cells must share one backbone). `rerunnable`: this process's command
    line may be run again for each extra process of `strategy=ddp` (the `pretrain` command);
    those processes train and get None, the first one alone writes the entry.
    """
    if spec.precision_mode != config.mode:
        raise ValueError(
            f"spec precision mode {spec.precision_mode} != pretrain.mode {config.mode}"
        )
    backbone = spec.backbone
    data = pretraining_data(config, stream, seed=seed, data_root=data_root)
    kwargs = spec.kwargs_for(data.num_classes)
    key_inputs = {
        "config": config.cache_fields(),
        "backbone": backbone,
        "backbone_kwargs": kwargs,
        "data": data.identity,
        "seed": seed,
        "fast": fast,
    }
    key = cache.cache_key(key_inputs)
    folder = cache.entry_dir(spec.cache_dir, backbone, key)
    record = cache.read_entry(folder, key)
    if record is not None and cache.damaged(folder, record):
        aside = cache.move_aside(folder)
        print(
            f"the cached checkpoint {folder / cache.CHECKPOINT} is damaged (not the file written "
            f"with it); moved aside to {aside}, pretraining again",
            file=sys.stderr,
        )
        record = None
    out_dir = Path(out_dir)
    kept = _published_record(out_dir, key)
    if record is None and kept is not None and (out_dir / PUBLISHED[cache.CHECKPOINT]).is_file():
        record = _restore(out_dir, kept, folder, key)
    from_cache = record is not None
    if record is None:
        launch = trainer_launch(config, spec.device, rerunnable=rerunnable)
        staging = cache.staging_dir(folder)
        try:
            record = _train(
                config, backbone, kwargs, data, seed=seed, fast=fast, folder=staging, **launch
            )
            if record is None:
                return None  # another process of a DDP run: the first one writes the entry
            record.update(
                cache_key=key,
                key_inputs=key_inputs,
                data=data.description,
                checkpoint_sha256=cache.checkpoint_sha256(staging),
            )
            (staging / cache.SIDECAR).write_text(json.dumps(record, indent=2))
            cache.commit_entry(staging, folder, key)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    if kept and kept.get("checkpoint_sha256") not in (None, record.get("checkpoint_sha256")):
        origin = "the cache holds" if from_cache else "pretraining again gave"
        raise UserError(
            f"{out_dir} was made with the pretrained backbone of sha256 "
            f"{str(kept.get('checkpoint_sha256'))[:12]}, {origin} another ({folder}, sha256 "
            f"{str(record.get('checkpoint_sha256'))[:12]}; pretraining is not bit-reproducible "
            "across machines): resume with the --cache-dir that holds it, or start a new run"
        )
    return _publish(folder, record, out_dir, from_cache=from_cache)


def _published_record(out_dir: Path, key: str) -> dict[str, Any] | None:
    """The record `_publish` left in `out_dir` for this cache key, if any."""
    path = out_dir / PUBLISHED[cache.SIDECAR]
    try:
        record = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("cache_key") == key else None


def _restore(out_dir: Path, record: dict, folder: Path, key: str) -> dict | None:
    """Put a run folder's own checkpoint back into the cache (None where it is not the file its
    record names: then it is pretrained again and checked)."""
    staging = cache.staging_dir(folder)
    try:
        for name, copy_name in PUBLISHED.items():
            if (out_dir / copy_name).is_file():
                shutil.copyfile(out_dir / copy_name, staging / name)
        if cache.damaged(staging, record):
            return None
        cache.commit_entry(staging, folder, key)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print(f"restored the run folder's pretrained backbone to the cache: {folder}", file=sys.stderr)
    return cache.read_entry(folder, key)


def _publish(folder: Path, record: dict, out_dir: Path, *, from_cache: bool) -> PretrainResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, copy_name in PUBLISHED.items():
        if (folder / name).is_file():
            copies[name] = Path(shutil.copyfile(folder / name, out_dir / copy_name))
    return PretrainResult(
        checkpoint=folder / cache.CHECKPOINT,
        from_cache=from_cache,
        val_accuracy=record["val_accuracy"],
        train_bitops=record["train_bitops"],
        fp32_bitops=record["fp32_bitops"],
        steps=record["steps"],
        metrics_csv=copies[METRICS],
        schedule_png=copies.get(SCHEDULE_PNG),
        cache_key=record["cache_key"],
        backbone_kwargs=record["key_inputs"]["backbone_kwargs"],
        cpt_convention_bitops=record.get("cpt_convention_bitops"),
    )


def _loader(
    dataset: Dataset[Any], config: PretrainConfig, *, shuffle: bool, seed: int
) -> DataLoader[Any]:
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        persistent_workers=config.num_workers > 0,
    )


def trainer_launch(config: PretrainConfig, device: str, *, rerunnable: bool) -> dict[str, Any]:
    """Lightning's accelerator, devices and strategy for `config` on the run's device: cpu
    (`devices` processes), cuda (`devices` GPUs) or cuda:N (that GPU)."""
    devices, strategy = config.devices, config.strategy
    if strategy == "auto" and devices > 1:
        # not Lightning's auto choice (ddp), which re-runs the command; forking is the quickest
        # start, but CUDA cannot be used in a forked process once the parent has touched it
        strategy = "ddp_fork" if device == "cpu" else "ddp_spawn"
    if strategy == "ddp" and devices > 1 and not rerunnable:
        raise UserError(
            "pretrain strategy=ddp starts its other processes by re-running the command, which "
            "only the pretrain command can; use pretrain.strategy=ddp_spawn, or pretrain first "
            "with `python -m cycl_bench pretrain ... --strategy ddp` (run reuses the checkpoint)"
        )
    if device == "cpu":
        return {"accelerator": "cpu", "devices": devices, "strategy": strategy}
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"device {device!r} is not cpu, cuda or cuda:N; use one of them")
    visible = num_cuda_devices()  # without initializing CUDA, which would rule out ddp_fork
    wanted = [int(index)] if index else list(range(devices))
    if index and devices > 1:
        raise UserError(
            f"device {device} names one GPU but pretrain devices={devices}; "
            f"use device cuda to train on GPUs 0..{devices - 1}"
        )
    if max(wanted) >= visible:
        raise UserError(
            f"device {device} with pretrain devices={devices} needs GPU {max(wanted)}, "
            f"but torch sees {visible} GPU(s); use fewer devices or device cpu"
        )
    return {"accelerator": "gpu", "devices": wanted, "strategy": strategy}


def _train(
    config: PretrainConfig,
    backbone: str,
    kwargs: dict[str, Any],
    data: PretrainingData,
    *,
    seed: int,
    fast: bool,
    folder: Path,
    accelerator: str = "cpu",
    devices: int | list[int] = 1,
    strategy: str = "auto",
) -> dict[str, Any] | None:
    """One Lightning run into `folder`; returns the numbers for the sidecar (None in a process
    other than the first of a DDP run: it writes nothing)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    model = BACKBONES.build(backbone, **kwargs)
    module = BackboneClassifier(
        model,
        num_classes=data.num_classes,
        lr=config.lr,
        weight_decay=config.weight_decay,
        registered=(backbone, kwargs),
    )
    record_path = folder / TRAINING_RECORD
    callback = CyclicPrecision.from_config(
        config, input_shape=_input_shape(data.train), record_path=record_path
    )
    on_terminal = sys.stderr.isatty()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    trainer = pl.Trainer(
        max_epochs=min(config.epochs, FAST_EPOCHS) if fast else config.epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        deterministic="warn",
        logger=CSVLogger(save_dir=folder, name="", version=""),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=on_terminal,
        enable_model_summary=on_terminal,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=folder,
        # None: Lightning's default, every batch
        limit_train_batches=FAST_TRAIN_BATCHES if fast else None,
        limit_val_batches=FAST_VAL_BATCHES if fast else None,
    )
    train_loader = _loader(data.train, config, shuffle=True, seed=seed)
    val_loader = _loader(data.val, config, shuffle=False, seed=seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # the last epoch's validation already ran on the final weights at eval_bits: under
            # ddp_spawn another validate() would start the processes once more
            with _spawn_sharing(strategy):
                if config.schedule != "none":
                    trainer.fit(module, train_loader, val_loader)
                else:
                    trainer.validate(module, val_loader, verbose=False)
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    if not trainer.is_global_zero:
        return None
    # under ddp_spawn the Trainer loaded the first process's weights back into `model`, not the
    # precision it left them at: deploy again
    set_precision(
        model, weight_bits=config.eval_bits, act_bits=config.eval_bits, grad_bits=FLOAT_GRAD_BITS
    )
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    torch.save(state, folder / cache.CHECKPOINT)
    training = callback.record()  # no training (schedule none): zero cost, no steps
    if record_path.is_file():
        training = json.loads(record_path.read_text())
        record_path.unlink()
    applied = training["applied_bits"]
    if applied:
        steps_bits = {
            "weight": [bits[1] for bits in applied],
            "activation": [bits[2] for bits in applied],
        }
        plot_precision_schedule(
            steps_bits, folder / SCHEDULE_PNG, title=f"{config.schedule} schedule ({config.mode})"
        )
    return {
        "val_accuracy": float(trainer.callback_metrics["val/accuracy"]),
        **training,
        "devices": config.devices,
        "cycl_bench_version": __version__,
    }


@contextmanager
def _spawn_sharing(strategy: str) -> Iterator[None]:
    """ddp_spawn hands the data sets' tensors to its workers through shared memory; torch's
    default way (file descriptors) failed here ("unable to resize file"), its file_system way
    works. Restored afterwards: it is process-wide."""
    if strategy != "ddp_spawn":
        yield
        return
    previous = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        yield
    finally:
        torch.multiprocessing.set_sharing_strategy(previous)


def _input_shape(dataset: Dataset[Any]) -> tuple[int, ...]:
    return tuple(dataset[0][0].shape)
