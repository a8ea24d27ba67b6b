"""Saved models: the final model of one (strategy entry, seed) cell, rebuilt by name.

A saved model is one file, `<run folder>/models/<entry>-seed<k>.pt`, that
`torch.load(path, weights_only=True)` reads: a dict holding the state dict and what rebuilding
it needs (the registered backbone, its constructor arguments, the deployed bit width), plus
free-form `info` about where it comes from (strategy entry, seed, stream). It holds the model as
it was evaluated last: for the CWR* family, the consolidated head. Files are written atomically
(temporary file, then `os.replace`), so an interrupted run never leaves half a model.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.precision import set_precision, switchable_layers
from cycl_bench.registry import BACKBONES

MODELS_DIR = "models"
FORMAT = "cycl_bench.saved_model"
FORMAT_VERSION = 1
REQUIRED_KWARGS = ("num_classes", "in_channels", "image_size")
"""Constructor arguments a saved model must record: they size the network and its input."""


def model_path(run_dir: str | Path, entry: str, seed: int) -> Path:
    """Where the saved model of a (strategy entry, seed) cell of a run lives."""
    return Path(run_dir) / MODELS_DIR / f"{entry}-seed{seed}.pt"


@dataclass(frozen=True)
class SavedModelInfo:
    """What a saved model file says about the model it holds."""

    backbone: str
    backbone_kwargs: dict[str, Any]
    deployed_bits: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.backbone_kwargs["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the normalized images the model takes."""
        size = int(self.backbone_kwargs["image_size"])
        return int(self.backbone_kwargs["in_channels"]), size, size


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    model: nn.Module,
    path: str | Path,
    *,
    backbone: str,
    backbone_kwargs: dict[str, Any],
    deployed_bits: int,
    info: dict[str, Any] | None = None,
) -> str:
    """Write `model` to `path` atomically and return the file's sha256.

    `backbone_kwargs` are the complete constructor arguments the model was built with
    (`num_classes`, `in_channels`, `image_size`, `precision_mode`, options such as `width`);
    `deployed_bits` the weight and activation bits it is evaluated and deployed at
    (`pretrain.eval_bits`; 32 for a float backbone). `info` (plain JSON-like values) is stored
    as given.
    """
    missing = [key for key in REQUIRED_KWARGS if key not in backbone_kwargs]
    if missing:
        raise ValueError(f"backbone_kwargs lacks {', '.join(missing)}: give the full arguments")
    if backbone_kwargs["num_classes"] != model.classifier.out_features:
        raise ValueError(
            f"backbone_kwargs says {backbone_kwargs['num_classes']} classes, "
            f"the model's classifier has {model.classifier.out_features}"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": backbone,
        "backbone_kwargs": dict(backbone_kwargs),
        "deployed_bits": int(deployed_bits),
        "info": dict(info or {}),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, staging)
        digest = file_sha256(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return digest


def load_model(path: str | Path) -> tuple[nn.Module, SavedModelInfo]:
    """The saved model rebuilt through the backbone registry, its weights loaded, at its
    deployed precision with float gradients, in eval mode, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no saved model at {path}: give a file from a run's {MODELS_DIR}/ folder")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error
        raise UserError(f"{path} is not a readable saved model ({first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a cycl_bench saved model: give a file from {MODELS_DIR}/")
    if payload["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"{path} was saved by a newer cycl_bench (saved-model format "
            f"{payload['format_version']}): upgrade cycl_bench to load it"
        )
    saved = SavedModelInfo(
        backbone=payload["backbone"],
        backbone_kwargs=dict(payload["backbone_kwargs"]),
        deployed_bits=int(payload["deployed_bits"]),
        info=dict(payload["info"]),
    )
    model = BACKBONES.build(saved.backbone, **saved.backbone_kwargs)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        problem = str(error).strip().splitlines()[-1].strip()
        raise UserError(
            f"{path} does not fit backbone '{saved.backbone}' of this cycl_bench version "
            f"({problem}): load it with the version that saved it"
        ) from None
    if switchable_layers(model):  # a float reference records 32 bits and has none to set
        set_precision(
            model,
            weight_bits=saved.deployed_bits,
            act_bits=saved.deployed_bits,
            grad_bits=FLOAT_GRAD_BITS,
        )
    return model.eval(), saved
