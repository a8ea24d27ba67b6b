"""`CyclicPrecision`: sets the bit widths of every training step from a schedule.

It also evaluates (validation and test) at the deployment precision and restores the training
precision afterwards, records the bits really applied at each step (read back from the model),
and keeps the running training cost, logged as `precision/*` and `cost/*` metrics, in two
conventions over the same steps and the same FP32 reference:
- the suite's (`train_bitops`): each layer at the bits it really multiplies (`layer_precision`):
  in `cyclebnn` mode a binary convolution is 1 x 1 bits whatever the cycled k;
- CPT's and CycleBNN's (`cpt_convention_bitops`): each binary layer at the scheduled k bits,
  forward k x k, input and weight gradients k x b_g (`scheduled_precision`), as CPT's code logs
  `(b^2 + 2 b b_g) / (3 * 32^2)` per iteration and CycleBNN's Table 1 prices cyclic training.

Under DDP every process runs this callback: each sets the bits of the same global step (the
schedule is a function of `trainer.global_step`, which all processes share), and each counts the
samples of every process, so the cost is the whole run's, counted once, on every process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import nn

from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.cost import TrainingCost
from cycl_bench.quant.precision import (
    get_precision,
    scheduled_precision,
    set_precision,
    switchable_layers,
)
from cycl_bench.quant.schedules import ConstantSchedule, CosineCycleSchedule, Schedule


def schedule_for(config: PretrainConfig, total_steps: int) -> Schedule:
    """The weight/activation schedule of a pretraining run of `total_steps` steps."""
    if config.schedule == "cyclic":
        assert config.closing_fraction is not None  # resolved by PretrainConfig's validator
        return CosineCycleSchedule(
            total_steps=total_steps,
            min_bits=config.min_bits,
            max_bits=config.max_bits,
            cycles=config.cycles,
            closing_fraction=config.closing_fraction,
            closing_bits=config.eval_bits,
        )
    return ConstantSchedule(config.eval_bits)


def _backbone(pl_module: pl.LightningModule) -> nn.Module:
    """The module's `backbone` (`BackboneClassifier`'s), the network whose precision is set."""
    backbone = pl_module.backbone
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"{type(pl_module).__name__}.backbone is not a module")
    return backbone


class CyclicPrecision(pl.Callback):
    """Precision schedule, evaluation precision and cost accounting for `pl_module.backbone`.

    `make_schedule(total_steps)` builds the schedule once the Trainer knows the step count.
    `applied` holds (step, weight_bits, act_bits, grad_bits) for every training batch.
    `record_path`: where the first process writes `record()` when training ends, for the
    process that started the Trainer (under ddp_spawn, this object's state stays in the workers).
    """

    def __init__(
        self,
        make_schedule: Callable[[int], Schedule],
        *,
        input_shape: tuple[int, ...],
        grad_bits: int = 8,
        eval_bits: int = 1,
        record_path: Path | None = None,
    ) -> None:
        self.make_schedule = make_schedule
        self.input_shape = tuple(input_shape)
        self.grad_bits = grad_bits
        self.eval_bits = eval_bits
        self.record_path = record_path
        self.schedule: Schedule | None = None
        self.cost: TrainingCost | None = None
        """each layer at the bits it multiplies"""
        self.cpt_cost: TrainingCost | None = None
        """the CPT/CycleBNN convention: binary layers at the scheduled bits"""
        self.applied: list[tuple[int, int, int, int]] = []
        self._training_precision: tuple[int, int, int] | None = None
        self._restored: dict[str, Any] | None = None

    @classmethod
    def from_config(
        cls,
        config: PretrainConfig,
        *,
        input_shape: tuple[int, ...],
        record_path: Path | None = None,
    ) -> CyclicPrecision:
        return cls(
            partial(schedule_for, config),  # a partial pickles (ddp_spawn), a lambda does not
            input_shape=input_shape,
            grad_bits=config.grad_bits,
            eval_bits=config.eval_bits,
            record_path=record_path,
        )

    def record(self) -> dict[str, Any]:
        """The applied bits and the training cost in both conventions (one FP32 reference:
        the same steps at 32 bits everywhere), as the pretraining sidecar stores them."""
        cost, cpt = self.cost, self.cpt_cost
        return {
            "train_bitops": int(cost.total_bitops) if cost else 0,
            "fp32_bitops": int(cost.fp32_bitops) if cost else 0,
            "bitops_reduction_vs_fp32": cost.reduction_vs_fp32 if cost else 0.0,
            "cpt_convention_bitops": int(cpt.total_bitops) if cpt else 0,
            "cpt_convention_reduction_vs_fp32": cpt.reduction_vs_fp32 if cpt else 0.0,
            "samples": cost.samples if cost else 0,
            "steps": len(self.applied),
            "applied_bits": [list(bits) for bits in self.applied],
            "macs_per_sample": cost.macs_per_sample if cost else None,
        }

    # -- state across a resumed fit (Lightning saves it in its checkpoints) -------------------

    COUNTERS = ("total_bitops", "fp32_bitops", "steps", "samples")

    def state_dict(self) -> dict[str, Any]:
        """The applied bits and both cost counters so far: a fit resumed from a checkpoint
        continues the schedule and the cost from where they were (`load_state_dict`)."""
        return {
            "applied": [list(bits) for bits in self.applied],
            "cost": {k: getattr(self.cost, k) for k in self.COUNTERS} if self.cost else None,
            "cpt_cost": (
                {k: getattr(self.cpt_cost, k) for k in self.COUNTERS} if self.cpt_cost else None
            ),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Kept until the fit starts (Lightning restores callbacks before `on_train_start`)."""
        self._restored = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the schedule is a function of the fit's total steps and the global step, both of
        # which a resumed fit has as the uninterrupted one had them
        self.schedule = self.make_schedule(max(int(trainer.estimated_stepping_batches), 1))
        self.cost = TrainingCost(_backbone(pl_module), self.input_shape)
        self.cpt_cost = TrainingCost(
            _backbone(pl_module), self.input_shape, precision_of=scheduled_precision
        )
        self.applied = []
        restored, self._restored = self._restored, None
        if restored:
            self.applied = [tuple(bits) for bits in restored["applied"]]
            for cost, counters in (
                (self.cost, restored["cost"]),
                (self.cpt_cost, restored["cpt_cost"]),
            ):
                for key, value in (counters or {}).items():
                    setattr(cost, key, value)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert self.schedule is not None  # made by `on_train_start`
        bits = self.schedule(trainer.global_step)
        backbone = _backbone(pl_module)
        set_precision(backbone, weight_bits=bits, act_bits=bits, grad_bits=self.grad_bits)
        self.applied.append((trainer.global_step, *get_precision(backbone)))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Sequence[Any],
        batch_idx: int,
    ) -> None:
        # Lightning's DistributedSampler gives every process as many samples (padding with
        # repeats), cut into the same batches: the step trained world_size times this batch
        samples = len(batch[1]) * trainer.world_size
        assert self.cost is not None and self.cpt_cost is not None  # made by `on_train_start`
        self.cost.step(batch_size=samples)
        self.cpt_cost.step(batch_size=samples)
        _, weight_bits, act_bits, _ = self.applied[-1]
        metrics = {
            "precision/weight_bits": float(weight_bits),
            "precision/act_bits": float(act_bits),
            "cost/train_bitops": float(self.cost.total_bitops),
            "cost/reduction_vs_fp32": self.cost.reduction_vs_fp32,
            "cost/cpt_convention_bitops": float(self.cpt_cost.total_bitops),
            "cost/cpt_convention_reduction_vs_fp32": self.cpt_cost.reduction_vs_fp32,
        }
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Leave the model at the deployment precision, the one that gets saved, with float
        gradients: the gradient quantization belongs to this schedule, not to the model."""
        set_precision(
            _backbone(pl_module),
            weight_bits=self.eval_bits,
            act_bits=self.eval_bits,
            grad_bits=FLOAT_GRAD_BITS,
        )
        if self.record_path is not None and trainer.is_global_zero:
            Path(self.record_path).write_text(json.dumps(self.record()))

    def _evaluate_at_deployment_precision(self, pl_module: pl.LightningModule) -> None:
        backbone = _backbone(pl_module)
        self._training_precision = get_precision(backbone)
        set_precision(backbone, weight_bits=self.eval_bits, act_bits=self.eval_bits)

    def _restore(self, pl_module: pl.LightningModule) -> None:
        backbone = _backbone(pl_module)
        if not switchable_layers(backbone):
            return  # a float reference: nothing was changed, (32, 32, 32) is not settable
        assert self._training_precision is not None  # read when the evaluation started
        weight_bits, act_bits, grad_bits = self._training_precision
        set_precision(backbone, weight_bits=weight_bits, act_bits=act_bits, grad_bits=grad_bits)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluate_at_deployment_precision(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluate_at_deployment_precision(pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(pl_module)
