"""`pretrain`: train a backbone under a precision schedule with a Lightning Trainer, or reuse the
cached result of an identical earlier run; `load_pretrained`: put those weights into a model."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from cycl_bench import __version__
from cycl_bench.data.base import Stream
from cycl_bench.evaluation.plots import plot_precision_schedule
from cycl_bench.pretrain import cache
from cycl_bench.pretrain.callback import CyclicPrecision
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.data import pretraining_data
from cycl_bench.pretrain.module import BackboneClassifier
from cycl_bench.quant.precision import set_precision
from cycl_bench.registry import BACKBONES

# --fast: a real but short training
FAST_EPOCHS = 2
FAST_TRAIN_BATCHES = 16
FAST_VAL_BATCHES = 4
METRICS = "metrics.csv"
SCHEDULE_PNG = "schedule.png"
# cache entry file -> its copy in out_dir
PUBLISHED = {
    METRICS: "pretrain_metrics.csv",
    SCHEDULE_PNG: "pretrain_schedule.png",
    cache.SIDECAR: "pretrain.json",
}


@dataclass
class PretrainResult:
    checkpoint: Path
    from_cache: bool
    val_accuracy: float
    """Accuracy on the validation data at the deployment precision (eval_bits)."""
    train_bitops: int
    fp32_bitops: int
    steps: int
    metrics_csv: Path
    schedule_png: Path | None
    cache_key: str
    backbone_kwargs: dict[str, Any]

    @property
    def reduction_vs_fp32(self) -> float:
        return 1.0 - self.train_bitops / self.fp32_bitops if self.fp32_bitops else 0.0


def backbone_kwargs(
    stream: Stream, *, num_classes: int, mode: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Constructor kwargs of a backbone for this stream's images."""
    channels, height, _ = stream.image_shape
    return {
        "num_classes": num_classes,
        "in_channels": channels,
        "image_size": height,
        "precision_mode": mode,
        **(options or {}),
    }


def pretrain(
    config: PretrainConfig,
    *,
    backbone: str,
    stream: Stream,
    seed: int,
    out_dir: Path,
    cache_dir: Path,
    fast: bool = False,
    backbone_options: dict[str, Any] | None = None,
    data_root: Path | None = None,
) -> PretrainResult:
    """Pretrain `backbone` on `config.data` at the stream's image size, or reuse the cached
    identical run (a source separate from the stream is shared by every stream of that size).

    The checkpoint stays in `cache_dir`; the metrics CSV and the schedule PNG are copied to
    `out_dir`.
    """
    BACKBONES.get(backbone)  # unknown names fail before any data is read
    data = pretraining_data(config, stream, seed=seed, data_root=data_root)
    kwargs = backbone_kwargs(
        stream, num_classes=data.num_classes, mode=config.mode, options=backbone_options
    )
    key_inputs = {
        "config": config.cache_fields(),
        "backbone": backbone,
        "backbone_kwargs": kwargs,
        "data": data.identity,
        "seed": seed,
        "fast": fast,
    }
    key = cache.cache_key(key_inputs)
    folder = cache.entry_dir(cache_dir, backbone, key)
    record = cache.read_entry(folder, key)
    from_cache = record is not None
    if record is None:
        staging = cache.staging_dir(folder)
        try:
            record = _train(config, backbone, kwargs, data, seed=seed, fast=fast, folder=staging)
            record.update(cache_key=key, key_inputs=key_inputs, data=data.description)
            (staging / cache.SIDECAR).write_text(json.dumps(record, indent=2))
            cache.commit_entry(staging, folder, key)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return _publish(folder, record, Path(out_dir), from_cache=from_cache)


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
    )


def _loader(dataset, config: PretrainConfig, *, shuffle: bool, seed: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        persistent_workers=config.num_workers > 0,
    )


def _train(config, backbone, kwargs, data, *, seed: int, fast: bool, folder: Path) -> dict:
    """One Lightning run into `folder`; returns the numbers for the sidecar."""
    pl.seed_everything(seed, workers=True, verbose=False)
    model = BACKBONES.build(backbone, **kwargs)
    module = BackboneClassifier(
        model, num_classes=data.num_classes, lr=config.lr, weight_decay=config.weight_decay
    )
    callback = CyclicPrecision.from_config(config, input_shape=_input_shape(data.train))
    on_terminal = sys.stderr.isatty()
    limits = {}
    if fast:
        limits = {"limit_train_batches": FAST_TRAIN_BATCHES, "limit_val_batches": FAST_VAL_BATCHES}
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    trainer = pl.Trainer(
        max_epochs=min(config.epochs, FAST_EPOCHS) if fast else config.epochs,
        accelerator="auto",
        devices=1,
        deterministic="warn",
        logger=CSVLogger(save_dir=folder, name="", version=""),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=on_terminal,
        enable_model_summary=on_terminal,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=folder,
        **limits,
    )
    train_loader = _loader(data.train, config, shuffle=True, seed=seed)
    val_loader = _loader(data.val, config, shuffle=False, seed=seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            if config.schedule != "none":
                trainer.fit(module, train_loader, val_loader)
            set_precision(model, weight_bits=config.eval_bits, act_bits=config.eval_bits)
            final = trainer.validate(module, val_loader, verbose=False)[0]
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    torch.save(state, folder / cache.CHECKPOINT)
    if callback.applied:
        steps_bits = {
            "weight": [bits[1] for bits in callback.applied],
            "activation": [bits[2] for bits in callback.applied],
        }
        plot_precision_schedule(
            steps_bits, folder / SCHEDULE_PNG, title=f"{config.schedule} schedule ({config.mode})"
        )
    cost = callback.cost
    return {
        "val_accuracy": float(final["val/accuracy"]),
        "train_bitops": int(cost.total_bitops) if cost else 0,
        "fp32_bitops": int(cost.fp32_bitops) if cost else 0,
        "steps": len(callback.applied),
        "applied_bits": [list(bits) for bits in callback.applied],
        "macs_per_sample": cost.macs_per_sample if cost else None,
        "cycl_bench_version": __version__,
    }


def _input_shape(dataset) -> tuple[int, ...]:
    return tuple(dataset[0][0].shape)


def load_pretrained(model: nn.Module, path: Path) -> list[str]:
    """Load a pretrained checkpoint into `model`; returns the keys left out for their shape.

    Only a differently sized `classifier` may be left out (pretraining on another benchmark);
    any other difference means the wrong backbone and raises.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    skipped = [
        name for name, tensor in state.items() if name in own and own[name].shape != tensor.shape
    ]
    if any(not name.startswith("classifier.") for name in skipped):
        raise ValueError(f"checkpoint {path} does not fit this model: shapes differ at {skipped}")
    # strict=False so a resized classifier can stay out; every other key must match
    kept = {name: tensor for name, tensor in state.items() if name not in skipped}
    outcome = model.load_state_dict(kept, strict=False)
    missing = [name for name in outcome.missing_keys if name not in skipped]
    if missing or outcome.unexpected_keys:
        raise ValueError(
            f"checkpoint {path} does not fit this model: missing {missing}, "
            f"unexpected {outcome.unexpected_keys}"
        )
    return skipped
