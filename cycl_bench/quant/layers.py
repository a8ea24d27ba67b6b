"""Quantized layers the backbones are built from.

- `BinaryConv2d`: a Brevitas `QuantConv2d` with the switchable CycleBNN quantizers on its weights
  and input, a learned per-channel output scale, and a gradient quantizer on its output.
- `Int8Conv2d` / `Int8Linear` (`fixed_quant_conv2d` / `fixed_quant_linear`): the 8-bit stem,
  shortcut projections and classifier (Brevitas' Int8 quantizers, learned input scale), which
  stay at 8 bits whatever the switchable layers do.

All of them compute through `fused.py` by default (the same values in fewer passes) and through
their Brevitas quantizers with `use_fused(model, False)`, in export mode, while traced, under
`torch.compile` and while a hook watches a quantizer (`FusedPath`).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Int8WeightPerChannelFloat
from torch import nn
from torch.nn import functional as F

from cycl_bench.quant.bits import FLOAT_GRAD_BITS, check_bits, check_grad_bits
from cycl_bench.quant.fused import fused_forward, int8_input, int8_weight
from cycl_bench.quant.gradquant import GradientQuantizer
from cycl_bench.quant.quantizers import (
    SwitchableBinaryActQuant,
    SwitchableBinaryWeightQuant,
    SwitchableBitWidth,
    check_precision_mode,
)

FIXED_BITS = 8


class Int8ImageQuant(Int8ActPerTensorFloatMinMaxInit):
    """8-bit stem input: a learned scale initialised to cover normalised images (|x| <= 4).

    A learned scale from a fixed initial range (rather than Brevitas' runtime-statistics
    quantizers) keeps the state dict the same before and after training, so any checkpoint,
    even of an untrained model, loads strictly into a fresh one.
    """

    min_val = -4.0
    max_val = 4.0


class Int8FeatureQuant(Int8ActPerTensorFloatMinMaxInit):
    """8-bit classifier input: a learned scale initialised to |x| <= 2 (pooled features)."""

    min_val = -2.0
    max_val = 2.0


class FusedPath:
    """Where a quantized layer computes: through `fused.py` (`fused`, the default) or through its
    Brevitas quantizers, the reference, which it also takes in export mode (the layer's or a
    quantizer's: Brevitas' exporters set either) and while traced, under `torch.compile` (dynamo
    fails on the binary input path at k > 1 bits: the compiler gets the Brevitas graph) and
    while a hook watches one of its quantizer modules (they are called, and so see their inputs
    and outputs, only on the Brevitas path)."""

    fused: bool = True
    export_mode: bool
    input_quant: Any  # Brevitas proxies, untyped
    weight_quant: Any

    def quantizer_modules(self) -> tuple[nn.Module, ...]:
        """The modules whose export mode or hooks send the layer through Brevitas."""
        return (self.input_quant, self.weight_quant)

    def takes_fused_path(self) -> bool:
        return (
            self.fused
            and not self.export_mode
            and not any(getattr(q, "export_mode", False) for q in self.quantizer_modules())
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and not self.quantizers_watched()
        )

    def quantizers_watched(self) -> bool:
        return any(
            q._forward_hooks or q._forward_pre_hooks or q._backward_hooks or q._backward_pre_hooks
            for q in self.quantizer_modules()
        )


class BinaryConv2d(FusedPath, QuantConv2d):
    """Binary convolution whose weight/activation/gradient bit widths are switched in place.

    Default precision: 1-bit weights and activations (the deployed network), float gradients.
    `precision_mode` ("cyclebnn" or "cpt") says what the layer computes with at k > 1 bits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        *,
        precision_mode: str = "cyclebnn",
    ):
        check_precision_mode(precision_mode)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=False,
            weight_quant=SwitchableBinaryWeightQuant.let(precision_mode=precision_mode),
            input_quant=SwitchableBinaryActQuant.let(precision_mode=precision_mode),
            return_quant_tensor=False,
        )
        self.precision_mode = precision_mode
        self.output_scale = torch.nn.Parameter(torch.ones(out_channels))
        self.output_gradient_quant = GradientQuantizer(FLOAT_GRAD_BITS)
        # Plain tensors between quantizer and convolution: no QuantTensor bookkeeping per step.
        self.weight_quant.skip_create_quant_tensor = True
        self.input_quant.skip_create_quant_tensor = True

    @property
    def weight_bit_width(self) -> SwitchableBitWidth:
        return self.weight_quant.tensor_quant.bit_width_impl

    @property
    def act_bit_width(self) -> SwitchableBitWidth:
        return self.input_quant.fused_activation_quant_proxy.tensor_quant.bit_width_impl

    @property
    def bits(self) -> tuple[int, int, int]:
        """Configured (weight, activation, gradient) bit widths."""
        return self.weight_bit_width.bits, self.act_bit_width.bits, self.output_gradient_quant.bits

    def set_bits(
        self,
        weight_bits: int | None = None,
        act_bits: int | None = None,
        grad_bits: int | None = None,
    ) -> None:
        if weight_bits is not None:
            self.weight_bit_width.set_bits(check_bits("weight_bits", weight_bits))
        if act_bits is not None:
            self.act_bit_width.set_bits(check_bits("act_bits", act_bits))
        if grad_bits is not None:
            self.output_gradient_quant.set_bits(check_grad_bits(grad_bits))

    def computed_bits(self) -> tuple[int, int, int]:
        """(weight, activation, gradient) bits the convolution really computes with."""
        weight_bits, act_bits, grad_bits = self.bits
        if self.precision_mode == "cyclebnn":
            return 1, 1, grad_bits
        return weight_bits, act_bits, grad_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.takes_fused_path():
            return fused_forward(self, x)
        out = super().forward(x) * self.output_scale.view(1, -1, 1, 1)
        return self.output_gradient_quant(out)

    def quantizer_modules(self) -> tuple[nn.Module, ...]:
        return (self.input_quant, self.weight_quant, self.output_gradient_quant)

    def extra_repr(self) -> str:
        weight_bits, act_bits, grad_bits = self.bits
        return (
            f"{super().extra_repr()}, precision_mode={self.precision_mode}, "
            f"weight_bits={weight_bits}, act_bits={act_bits}, grad_bits={grad_bits}"
        )


def use_fused(model: nn.Module, fused: bool = True) -> None:
    """Send every quantized layer of `model` through the fused paths (the default) or through
    the Brevitas quantizers (`fused=False`, the reference the fused paths are tested against)."""
    for module in model.modules():
        if isinstance(module, FusedPath):
            module.fused = fused


class Int8Conv2d(FusedPath, QuantConv2d):
    """8-bit convolution (stem, shortcut projection): int8 per-channel weights scaled by their
    largest magnitude, int8 input on a learned scale initialised to |x| <= 4 (`Int8ImageQuant`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=False,
            weight_quant=Int8WeightPerChannelFloat,
            input_quant=Int8ImageQuant,
            return_quant_tensor=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.takes_fused_path():
            inputs = int8_input(x, input_scale_parameter(self))
            return self._conv_forward(inputs, int8_weight(self.weight), None)
        return super().forward(x)


class Int8Linear(FusedPath, QuantLinear):
    """8-bit bias-free classifier: int8 per-channel weights, int8 input features on a learned
    scale initialised to |x| <= 2 (`Int8FeatureQuant`)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(
            in_features,
            out_features,
            bias=False,
            weight_quant=Int8WeightPerChannelFloat,
            input_quant=Int8FeatureQuant,
            return_quant_tensor=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.takes_fused_path():
            return F.linear(int8_input(x, input_scale_parameter(self)), int8_weight(self.weight))
        return super().forward(x)


def input_scale_parameter(layer: Int8Conv2d | Int8Linear) -> torch.Tensor:
    """The learned parameter v of an 8-bit layer's input scale |v| / 128."""
    proxy: Any = layer.input_quant.fused_activation_quant_proxy  # Brevitas' untyped modules
    return cast(torch.Tensor, proxy.tensor_quant.scaling_impl.value)


def fixed_quant_conv2d(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> Int8Conv2d:
    """8-bit stem or projection convolution: int8 per-channel weights, int8 input."""
    return Int8Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def fixed_quant_linear(in_features: int, out_features: int) -> Int8Linear:
    """8-bit bias-free classifier: int8 per-channel weights, int8 input features."""
    return Int8Linear(in_features, out_features)
