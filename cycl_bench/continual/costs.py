"""Training BitOPs of a continual strategy, counted as it trains.

`cycl_bench.quant.cost.TrainingCost` prices one optimizer step of the whole model at the bits
each layer computes with. This plugin feeds it every step and adds what a plain step count
misses:
- head-only steps on the latent cache: the head's forward and weight gradient only;
- the cache encoding (and the hybrid head's calibration pass): one forward of the backbone;
- LwF's teacher forward on every step after the first experience; EWC's importance pass
  (a forward and backward over the experience) after each experience; the BatchNorm
  recalibration pass (a forward over the experience's batches);
- latent replay (AR1*): a current pattern crosses the frozen lower part forward only and the
  upper part forward and backward (what `TrainingCost` reads from the frozen parameters); a
  replayed activation enters at the latent layer and costs the upper part and the head only;
  filling the memory from a pass through the lower part costs that forward;
- the hybrid-quantized head after the first experience: its update multiplies head_bits x
  head_bits in the forward (quantized features by the quantized weights) and in the weight
  gradient (quantized error by quantized features), `HeadPrecision.computed`; its grad_bits
  is only the grid the stored weights are rounded to, which no product runs at.
The FP32 reference prices the same work at 32 bits everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from avalanche.core import SupervisedPlugin
from torch import nn

from cycl_bench.quant.cost import FLOAT_BITS, TrainingCost, step_bitops
from cycl_bench.quant.precision import LayerPrecision, layer_precision
from cycl_bench.strategies.base import ContinualStrategy
from cycl_bench.strategies.protocol import BatchNormRecalibration

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


class TrainingCostMeter(SupervisedPlugin):
    """Counts the BitOPs of everything a `ContinualStrategy` computes to learn."""

    def __init__(self, strategy: ContinualStrategy, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.strategy = strategy
        modules = dict(strategy.model.named_modules())
        self.head: nn.Module | None = modules.get(strategy.head_name or "")
        self.cost = TrainingCost(strategy.model, input_shape, precision_of=self._precision_of)
        self._fixed_point_head = False
        self._experience_index = 0

    def _precision_of(self, layer: nn.Module) -> LayerPrecision | None:
        head_precision = self.strategy.head_precision  # set when the head is fixed point
        if self._fixed_point_head and head_precision is not None and layer is self.head:
            return head_precision.computed()
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

    def _forward_only(
        self, samples: int, *, include_head: bool, within: set[str] | None = None
    ) -> None:
        bitops = fp32 = 0
        for layer in self.cost.layers:
            if not include_head and layer.name == self.strategy.head_name:
                continue
            if within is not None and layer.name not in within:
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

    def _part_step(self, samples: int, within: set[str]) -> None:
        """Forward and backward of `samples` through the layers named in `within` only (latent
        replay: replayed activations enter at the latent layer), within the same step."""
        bitops = fp32 = 0
        for layer in self.cost.layers:
            if layer.name in within:
                bitops += step_bitops(layer, *self.cost.layer_bits(layer))
                fp32 += step_bitops(layer, FLOAT_BITS, FLOAT_BITS, FLOAT_BITS)
        self._add(bitops * samples, fp32 * samples)
        self.cost.samples += samples

    # -- plugin hooks ----------------------------------------------------------------------

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self._experience_index = strategy.clock.train_exp_counter
        later = self._experience_index > 0
        self._fixed_point_head = later and self.strategy.head_precision is not None

    def after_training_iteration(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        samples = len(strategy.mb_y)
        cache = self.strategy.latent_cache
        replay = self.strategy.latent_replay
        replayed = replay.replayed_in_step if replay is not None else 0
        if cache is not None and cache.active:
            self._head_step(samples)
        else:
            self.cost.step(samples - replayed)  # current patterns: the whole network
        if replay is not None and replayed:
            self._part_step(replayed, replay.upper_layers)
        if self.strategy.extra_cost == "teacher_forward" and self._experience_index > 0:
            self._forward_only(samples, include_head=True)

    def after_training(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        """What the other plugins did after the experience (BatchNorm recalibration, cache and
        latent-memory encoding) is priced here, once every `after_training_exp` hook has run,
        whatever the order of the plugins (`train` is called once per experience)."""
        for plugin in strategy.plugins:
            if isinstance(plugin, BatchNormRecalibration) and plugin.samples:
                self._forward_only(plugin.samples, include_head=True)
        cache = self.strategy.latent_cache
        if cache is not None and cache.encoded_samples:
            self._forward_only(cache.encoded_samples, include_head=False)
        replay = self.strategy.latent_replay
        if replay is not None and replay.encoded_samples:
            lower = replay.lower_layers
            self._forward_only(replay.encoded_samples, include_head=False, within=lower)
        experience_size = len(strategy.experience.dataset)
        if self.strategy.extra_cost == "importance_pass":
            self.cost.step(experience_size)
        first = self._experience_index == 0
        if self.strategy.extra_cost == "calibration_pass" and first:
            self._forward_only(experience_size, include_head=False)
