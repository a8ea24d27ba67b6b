"""Pretrained weights into a backbone: the one loader the continual stage, export and tests use."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


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
