"""Saved models: the final model of one (strategy entry, seed) cell, rebuilt by name.

A saved model is one file, `<run folder>/models/<entry>-seed<k>.pt`, that
`torch.load(path, weights_only=True)` reads: a dict holding the state dict and what rebuilding
it needs (the registered backbone, its constructor arguments, the deployed bit width), plus
free-form `info` about where it comes from (strategy entry, seed, stream). It holds the model as
it was evaluated last: for the CWR* family, the consolidated head. Files are written atomically
(temporary file, then `os.replace`), so an interrupted run never leaves half a model.

A *packed* saved model (`save_model(..., packed=True)`, `pack_saved_model`; format version 2) is
the deployed form for distribution: each binary convolution's weight is stored as its signs, 8 per
byte (`numpy.packbits`, 1 for +1), and every other tensor as it is. A deployed binary layer reads
only the sign of its weight (times a positive per-channel gain), so the model `load_model` rebuilds
from the signs (+-1) computes bit for bit what the full model computes: resnet18_bnn takes about
1.7 MB instead of 45 MB. Only a model whose switchable layers all compute at 1 x 1 bits packs.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.precision import set_precision, switchable_layers
from cycl_bench.registry import BACKBONES

if TYPE_CHECKING:
    from cycl_bench.models.common import Backbone

MODELS_DIR = "models"
FORMAT = "cycl_bench.saved_model"
FORMAT_VERSION = 1
PACKED_FORMAT_VERSION = 2
"""A packed file: binary weights as sign bits (`packed_signs`); older readers refuse it."""
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
    model: Backbone,
    path: str | Path,
    *,
    backbone: str,
    backbone_kwargs: dict[str, Any],
    deployed_bits: int,
    info: dict[str, Any] | None = None,
    packed: bool = False,
) -> str:
    """Write `model` to `path` atomically and return the file's sha256.

    `backbone_kwargs` are the complete constructor arguments the model was built with
    (`num_classes`, `in_channels`, `image_size`, `precision_mode`, options such as `width`);
    `deployed_bits` the weight and activation bits it is evaluated and deployed at
    (`pretrain.eval_bits`; 32 for a float backbone). `info` (plain JSON-like values) is stored
    as given. `packed`: binary weights as sign bits (module doc); a UserError for a model that
    does not compute at 1 x 1 bits.
    """
    missing = [key for key in REQUIRED_KWARGS if key not in backbone_kwargs]
    if missing:
        raise ValueError(f"backbone_kwargs lacks {', '.join(missing)}: give the full arguments")
    if backbone_kwargs["num_classes"] != model.classifier.out_features:
        raise ValueError(
            f"backbone_kwargs says {backbone_kwargs['num_classes']} classes, "
            f"the model's classifier has {model.classifier.out_features}"
        )
    state_dict = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": PACKED_FORMAT_VERSION if packed else FORMAT_VERSION,
        "backbone": backbone,
        "backbone_kwargs": dict(backbone_kwargs),
        "deployed_bits": int(deployed_bits),
        "info": dict(info or {}),
        "state_dict": state_dict,
    }
    if packed:
        payload["packed_signs"] = _pack_signs(model, state_dict)
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


def _binary_weight_keys(model: nn.Module) -> list[str]:
    from cycl_bench.export.deployed import check_deployable
    from cycl_bench.quant.layers import BinaryConv2d

    check_deployable(model)
    return [
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, BinaryConv2d)
    ]


def _pack_signs(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Moves each binary weight out of `state_dict` into its sign bits (1 for +1: a weight whose
    sign bit is clear, as `binary_sign` maps +0 to +1 and -0 to -1)."""
    packed = {}
    for key in _binary_weight_keys(model):
        weight = state_dict.pop(key)
        positive = (~torch.signbit(weight)).reshape(-1).numpy()
        packed[key] = {
            "shape": list(weight.shape),
            "bits": torch.from_numpy(np.packbits(positive)),
        }
    return packed


def _unpack_signs(packed: dict[str, Any]) -> dict[str, torch.Tensor]:
    weights = {}
    for key, item in packed.items():
        shape = [int(n) for n in item["shape"]]
        count = int(np.prod(shape))
        positive = np.unpackbits(item["bits"].numpy(), count=count).astype(np.float32)
        weights[key] = torch.from_numpy(2.0 * positive - 1.0).reshape(shape)
    return weights


def load_model(path: str | Path) -> tuple[Backbone, SavedModelInfo]:
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
    if payload["format_version"] > PACKED_FORMAT_VERSION:
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
    state_dict = dict(payload["state_dict"])
    try:
        state_dict.update(_unpack_signs(payload.get("packed_signs", {})))
        model.load_state_dict(state_dict)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
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


def pack_saved_model(source: str | Path, target: str | Path) -> str:
    """Write the packed form of the saved model at `source` to `target`; returns its sha256."""
    model, saved = load_model(source)
    return save_model(
        model,
        target,
        backbone=saved.backbone,
        backbone_kwargs=saved.backbone_kwargs,
        deployed_bits=saved.deployed_bits,
        info=saved.info,
        packed=True,
    )
