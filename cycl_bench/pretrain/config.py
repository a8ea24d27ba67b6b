"""`PretrainConfig`: how the backbone is pretrained before the continual stage.

Defaults follow CycleBNN (cosine cycle 2..6 bits, 8 cycles, 8-bit gradients, AdamW lr 1e-3,
weight decay 1e-5) with the first-experience budget of on-device CL with BNNs (10 epochs,
batch 50). Experiment configs embed this model as their `pretrain` section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from cycl_bench.errors import UserError

BITS_RANGE = (1, 8)
GRAD_BITS_RANGE = (2, 32)  # 32 = float gradients
CPT_CLOSING_FRACTION = 0.1
# fields that change how fast pretraining runs, never what it produces
NOT_IN_CACHE_KEY = frozenset({"num_workers"})


class PretrainConfig(BaseModel):
    """Pretraining schedule, optimizer and data; validated, with the paper defaults."""

    model_config = ConfigDict(extra="forbid")

    schedule: Literal["cyclic", "constant", "none"] = "cyclic"
    """cyclic: cosine cycle min..max bits; constant: eval_bits throughout; none: no training."""
    mode: Literal["cyclebnn", "cpt"] = "cyclebnn"
    """cyclebnn: k-bit quantization before the sign, 1x1-bit convolutions; cpt: k x k bits."""
    min_bits: int = 2
    max_bits: int = 6
    cycles: int = 8
    eval_bits: int = 1
    """The deployment precision: validation, test and the saved checkpoint use it."""
    grad_bits: int = 8
    closing_fraction: float | None = None
    """Last fraction of the steps trained at eval_bits; None: 0.1 in cpt mode, 0 in cyclebnn."""
    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-5
    data: str = "synthetic"
    """The pretraining source, separate from the stream: 'synthetic' (a procedural corpus of
    object classes of its own), 'folder:PATH' (e.g. ImageNet), a benchmark name, or
    'first_experience' (the stream's own first experience; pretrain/data.py)."""
    synthetic_categories: int = 20
    synthetic_objects_per_category: int = 5
    synthetic_images_per_class: int = 40
    num_workers: int = 0

    @field_validator("min_bits", "max_bits", "eval_bits")
    @classmethod
    def _bits_in_range(cls, bits: int, info) -> int:
        low, high = BITS_RANGE
        if not low <= bits <= high:
            raise UserError(
                f"pretrain {info.field_name}={bits} is outside {low}..{high}; "
                f"use a bit width from {low} to {high}"
            )
        return bits

    @field_validator("grad_bits")
    @classmethod
    def _grad_bits_in_range(cls, bits: int) -> int:
        low, high = GRAD_BITS_RANGE
        if not low <= bits <= high:
            raise UserError(
                f"pretrain grad_bits={bits} is outside {low}..{high}; "
                f"use {low}..{high} ({high} = float gradients)"
            )
        return bits

    @field_validator(
        "cycles",
        "epochs",
        "batch_size",
        "synthetic_categories",
        "synthetic_objects_per_category",
        "synthetic_images_per_class",
    )
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value < 1:
            raise UserError(f"pretrain {info.field_name}={value} must be at least 1")
        return value

    @field_validator("lr", "weight_decay")
    @classmethod
    def _not_negative(cls, value: float, info) -> float:
        if value < 0 or (info.field_name == "lr" and value == 0):
            raise UserError(f"pretrain {info.field_name}={value} must be positive")
        return value

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, value: int) -> int:
        if value < 0:
            raise UserError(f"pretrain num_workers={value} must be 0 or more")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PretrainConfig:
        if self.min_bits > self.max_bits:
            raise UserError(
                f"pretrain min_bits={self.min_bits} > max_bits={self.max_bits}; "
                "set min_bits <= max_bits"
            )
        if self.closing_fraction is None:
            self.closing_fraction = CPT_CLOSING_FRACTION if self.mode == "cpt" else 0.0
        if not 0.0 <= self.closing_fraction < 1.0:
            raise UserError(f"pretrain closing_fraction={self.closing_fraction} must be in [0, 1)")
        return self

    def cache_fields(self) -> dict:
        """The resolved fields that determine the pretrained weights."""
        return self.model_dump(mode="json", exclude=set(NOT_IN_CACHE_KEY))
