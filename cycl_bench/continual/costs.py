"""Training BitOPs of a continual strategy, counted as it trains.

`cycl_bench.quant.cost.TrainingCost` prices one optimizer step of the whole model at the bits
each layer computes with. This plugin feeds it every step and adds what a plain step count
misses:
- head-only steps on the latent cache: the head's forward and weight gradient only;
- the cache encoding (and the hybrid head's calibration pass): one forward of the backbone;
- LwF's teacher forward on every step after the first experience; EWC's importance pass
  (a forward and backward over the experience) after each experience; the BatchNorm
  recalibration pass (a forward over the experience's batches);
- the hybrid-quantized head after the first experience: its update runs at
  head_bits x head_bits forward and head_bits x grad_bits weight gradient.
The FP32 reference prices the same work at 32 bits everywhere.
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin
from torch import nn

from cycl_bench.quant.cost import FLOAT_BITS, TrainingCost, step_bitops
from cycl_bench.quant.precision import layer_precision
from cycl_bench.strategies.base import ContinualStrategy
from cycl_bench.strategies.protocol import BatchNormRecalibration


class TrainingCostMeter(SupervisedPlugin):
    """Counts the BitOPs of everything a `ContinualStrategy` computes to learn."""

    def __init__(self, strategy: ContinualStrategy, input_shape: tuple[int, ...]):
        super().__init__()
        self.strategy = strategy
        modules = dict(strategy.model.named_modules())
        self.head: nn.Module | None = modules.get(strategy.head_name or "")
        self.cost = TrainingCost(strategy.model, input_shape, precision_of=self._precision_of)
        self._fixed_point_head = False
        self._experience_index = 0

    def _precision_of(self, layer: nn.Module):
        if self._fixed_point_head and layer is self.head:
            return self.strategy.head_precision
        return layer_precision(layer)

    @property
    def total_bitops(self) -> int:
        return self.cost.total_bitops

    @property
    def reduction_vs_fp32(self) -> float:
        return self.cost.reduction_vs_fp32

    def _add(self, bitops: int, fp32_bitops: int) -> None:
        self.cost.total_bitops += bitops
        self.cost.fp32_bitops += fp32_bitops

    def _forward_only(self, samples: int, *, include_head: bool) -> None:
        bitops = fp32 = 0
        for layer in self.cost.layers:
            if not include_head and layer.name == self.strategy.head_name:
                continue
            weight_bits, act_bits, _ = self.cost.layer_bits(layer)
            bitops += layer.macs_per_sample * weight_bits * act_bits
            fp32 += layer.macs_per_sample * FLOAT_BITS * FLOAT_BITS
        self._add(bitops * samples, fp32 * samples)

    def _head_step(self, samples: int) -> None:
        (head,) = [layer for layer in self.cost.layers if layer.name == self.strategy.head_name]
        bitops = step_bitops(head, *self.cost.layer_bits(head))
        fp32 = step_bitops(head, FLOAT_BITS, FLOAT_BITS, FLOAT_BITS)
        self._add(bitops * samples, fp32 * samples)
        self.cost.steps += 1
        self.cost.samples += samples

    # -- plugin hooks ----------------------------------------------------------------------

    def before_training_exp(self, strategy, **kwargs):
        self._experience_index = strategy.clock.train_exp_counter
        later = self._experience_index > 0
        self._fixed_point_head = later and self.strategy.head_precision is not None

    def after_training_iteration(self, strategy, **kwargs):
        samples = len(strategy.mb_y)
        cache = self.strategy.latent_cache
        if cache is not None and cache.active:
            self._head_step(samples)
        else:
            self.cost.step(samples)
        if self.strategy.extra_cost == "teacher_forward" and self._experience_index > 0:
            self._forward_only(samples, include_head=True)

    def after_training_exp(self, strategy, **kwargs):
        for plugin in strategy.plugins:
            if isinstance(plugin, BatchNormRecalibration) and plugin.samples:
                self._forward_only(plugin.samples, include_head=True)
        cache = self.strategy.latent_cache
        if cache is not None and cache.encoded_samples:
            self._forward_only(cache.encoded_samples, include_head=False)
        experience_size = len(strategy.experience.dataset)
        if self.strategy.extra_cost == "importance_pass":
            self.cost.step(experience_size)
        first = self._experience_index == 0
        if self.strategy.extra_cost == "calibration_pass" and first:
            self._forward_only(experience_size, include_head=False)
