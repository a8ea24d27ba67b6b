"""`PretrainConfig`: how the backbone is pretrained before the continual stage.

Defaults follow CycleBNN (cosine cycle 2..6 bits, 8 cycles, 8-bit gradients, AdamW lr 1e-3,
weight decay 1e-5) with the first-experience budget of on-device CL with BNNs (10 epochs,
batch 50). Experiment configs embed this model as their `pretrain` section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from cycl_bench.errors import UserError
from cycl_bench.params import MAX_BATCH, MAX_EPOCHS, MAX_IMAGES, MAX_PROCESSES
from cycl_bench.quant.bits import check_bits, check_grad_bits

CPT_CLOSING_FRACTION = 0.1
# fields that change how fast pretraining runs, never what it produces
NOT_IN_CACHE_KEY = frozenset({"num_workers"})
# Lightning strategies pretraining is run and tested with: one process, or DDP started by
# spawning (ddp_spawn), forking (ddp_fork) or re-running the command (ddp)
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork")


class PretrainConfig(BaseModel):
    """Pretraining schedule, optimizer and data; validated, with the paper defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    devices: int = 1
    """Processes training together (DDP), one per device: CPU processes or GPUs."""
    strategy: str = "auto"
    """Lightning strategy: auto (one process; ddp_spawn for several devices), ddp (Lightning
    re-runs the command for every other process: the `pretrain` command only), ddp_spawn or
    ddp_fork."""

    @field_validator("*", mode="before")
    @classmethod
    def _a_bool_is_no_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`epochs: true` would train 1 epoch (pydantic reads True as 1): refused, as in Params."""
        if isinstance(value, bool):
            raise ValueError("a bool where a number or a name is expected")
        return value

    @field_validator("min_bits", "max_bits", "eval_bits")
    @classmethod
    def _bits_in_range(cls, bits: int, info: ValidationInfo) -> int:
        return check_bits(f"pretrain {info.field_name}", bits)

    @field_validator("grad_bits")
    @classmethod
    def _grad_bits_in_range(cls, bits: int) -> int:
        return check_grad_bits(bits, "pretrain grad_bits")

    @field_validator(
        "cycles",
        "epochs",
        "batch_size",
        "synthetic_categories",
        "synthetic_objects_per_category",
        "synthetic_images_per_class",
    )
    @classmethod
    def _positive(cls, value: int, info: ValidationInfo) -> int:
        assert info.field_name is not None  # a field validator always validates a field
        if value < 1:
            raise UserError(f"pretrain {info.field_name}={value} must be at least 1")
        top = {"batch_size": MAX_BATCH}.get(info.field_name, MAX_EPOCHS)
        if info.field_name.startswith("synthetic_"):
            top = MAX_IMAGES
        if value > top:
            raise UserError(f"pretrain {info.field_name}={value} must be at most {top}")
        return value

    @field_validator("lr", "weight_decay")
    @classmethod
    def _not_negative(cls, value: float, info: ValidationInfo) -> float:
        if value < 0 or (info.field_name == "lr" and value == 0):
            raise UserError(f"pretrain {info.field_name}={value} must be positive")
        return value

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, value: int) -> int:
        if not 0 <= value <= MAX_PROCESSES:
            raise UserError(f"pretrain num_workers={value} must be from 0 to {MAX_PROCESSES}")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int) -> int:
        if not 1 <= value <= MAX_PROCESSES:
            raise UserError(f"pretrain devices={value} must be from 1 to {MAX_PROCESSES}")
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise UserError(
                f"pretrain strategy={value!r} is not one of {', '.join(STRATEGIES)}; choose one"
            )
        return value

    @property
    def distributed(self) -> bool:
        """Trained by DDP (even with one process: DDP's sampler orders the data its own way)."""
        return self.devices > 1 or self.strategy != "auto"

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
        """The resolved fields that determine the pretrained weights.

        Under DDP the number of processes sets the effective batch (devices x batch_size), the
        step count (so the precision and learning-rate schedules) and the data order: it is part
        of the key. How the processes are started (ddp, ddp_spawn, ddp_fork) is not: they compute
        the same thing. One process without DDP keeps the key it had before these fields existed.
        """
        fields = self.model_dump(mode="json", exclude={*NOT_IN_CACHE_KEY, "devices", "strategy"})
        if self.distributed:
            fields["ddp_devices"] = self.devices
        return fields
