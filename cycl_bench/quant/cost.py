"""Training cost in BitOPs: multiply-accumulates weighted by the bit widths that compute them.

For every Conv2d/Linear layer l with M_l MACs per sample (from its real shapes, measured with
hooks on one forward pass of the model at the real input shape), one training step on a batch of
B samples costs

    forward          B * M_l * b_w * b_a
    input gradient   B * M_l * b_w * b_g   (only where a gradient flows into the layer's input)
    weight gradient  B * M_l * b_a * b_g   (only where the layer's weight requires grad)

with (b_w, b_a, b_g) the bits the layer really computes with at that step, read from
`cycl_bench.quant.precision.layer_precision`. The FP32 reference is the same model on the same
steps with 32 bits everywhere; `reduction_vs_fp32 = 1 - total_bitops / fp32_bitops`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

FLOAT_BITS = 32
PrecisionLookup = Callable[[nn.Module], Any]


@dataclass(frozen=True)
class LayerProfile:
    """What one compute layer costs per sample, independent of the bit widths."""

    name: str
    macs_per_sample: int
    input_gradient: bool
    weight_gradient: bool


def _layer_macs(layer: nn.Conv2d | nn.Linear, output: torch.Tensor) -> int:
    if isinstance(layer, nn.Conv2d):
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        return output.numel() * (layer.in_channels // layer.groups) * kernel
    return output.numel() * layer.in_features


def profile_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerProfile]:
    """MACs per sample and gradient flow of every Conv2d/Linear, from one real forward pass.

    Runs on a copy in eval mode so the model's BatchNorm and quantizer statistics stay untouched.
    """
    probe = copy.deepcopy(model).eval()
    found: dict[str, LayerProfile] = {}
    hooks = []

    def record(
        name: str,
    ) -> Callable[[nn.Conv2d | nn.Linear, tuple[Any, ...], torch.Tensor], None]:
        def hook(
            layer: nn.Conv2d | nn.Linear, inputs: tuple[Any, ...], output: torch.Tensor
        ) -> None:
            output = getattr(output, "value", output)  # Brevitas QuantTensor
            first_input = getattr(inputs[0], "value", inputs[0])
            earlier_calls = found[name].macs_per_sample if name in found else 0
            found[name] = LayerProfile(
                name=name,
                macs_per_sample=earlier_calls + _layer_macs(layer, output),
                input_gradient=bool(first_input.requires_grad),
                weight_gradient=bool(layer.weight.requires_grad),
            )

        return hook

    for name, layer in probe.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            hooks.append(layer.register_forward_hook(record(name)))
    first_parameter = next(probe.parameters(), None)
    device = first_parameter.device if first_parameter is not None else None
    try:
        with torch.enable_grad():
            probe(torch.zeros(1, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return list(found.values())


def _default_lookup() -> PrecisionLookup:
    from cycl_bench.quant.precision import layer_precision

    return layer_precision


def step_bitops(layer: LayerProfile, weight_bits: int, act_bits: int, grad_bits: int) -> int:
    """BitOPs of one sample through one layer, forward and backward."""
    total = weight_bits * act_bits
    if layer.input_gradient:
        total += weight_bits * grad_bits
    if layer.weight_gradient:
        total += act_bits * grad_bits
    return layer.macs_per_sample * total


class TrainingCost:
    """Running training cost of a model, one `step(batch_size)` per optimizer step.

    Call `step` after setting the precision of the step (it reads the bits the layers compute
    with now). Freezing or unfreezing parameters between steps is picked up automatically (the
    parameters themselves are listed once, here: the model is built before its cost).
    `precision_of` maps a layer to an object with `weight_bits`, `act_bits`, `grad_bits`
    (None for a float gradient); it defaults to `layer_precision`.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        *,
        precision_of: PrecisionLookup | None = None,
    ):
        self.model = model
        self.input_shape = tuple(input_shape)
        self.precision_of = precision_of or _default_lookup()
        self.steps = 0
        self.samples = 0
        self.total_bitops = 0
        self.fp32_bitops = 0
        self._trainable: tuple[bool, ...] | None = None
        self._profile: list[LayerProfile] = []
        self._layers: dict[str, nn.Module] = {}
        # the parameters are listed once (walking the modules' tree costs milliseconds a step);
        # what changes between steps is which of them train
        self._parameters = list(model.parameters())

    @property
    def layers(self) -> list[LayerProfile]:
        self._refresh()
        return list(self._profile)

    @property
    def macs_per_sample(self) -> int:
        """Forward MACs of one sample through every Conv2d/Linear."""
        return sum(layer.macs_per_sample for layer in self.layers)

    @property
    def reduction_vs_fp32(self) -> float:
        """1 - total / FP32 (0.0 before any step)."""
        return 1.0 - self.total_bitops / self.fp32_bitops if self.fp32_bitops else 0.0

    def _refresh(self) -> None:
        trainable = tuple(p.requires_grad for p in self._parameters)
        if trainable != self._trainable:
            self._profile = profile_layers(self.model, self.input_shape)
            self._layers = dict(self.model.named_modules())
            self._trainable = trainable

    def layer_bits(self, layer: LayerProfile) -> tuple[int, int, int]:
        """(weight, activation, gradient) bits a layer of `layers` computes with now (32 for a
        float gradient)."""
        precision = self.precision_of(self._layers[layer.name])
        if precision is None:
            raise ValueError(f"no precision for compute layer '{layer.name}'")
        grad_bits = precision.grad_bits if precision.grad_bits is not None else FLOAT_BITS
        return precision.weight_bits, precision.act_bits, grad_bits

    def step_cost(self, batch_size: int) -> tuple[int, int]:
        """(BitOPs, FP32 BitOPs) of one step at the current precision, without recording it."""
        self._refresh()
        bitops = fp32 = 0
        for layer in self._profile:
            bitops += step_bitops(layer, *self.layer_bits(layer))
            fp32 += step_bitops(layer, FLOAT_BITS, FLOAT_BITS, FLOAT_BITS)
        return bitops * batch_size, fp32 * batch_size

    def step(self, batch_size: int) -> int:
        """Add one training step on `batch_size` samples; returns its BitOPs."""
        bitops, fp32 = self.step_cost(batch_size)
        self.total_bitops += bitops
        self.fp32_bitops += fp32
        self.steps += 1
        self.samples += batch_size
        return bitops
