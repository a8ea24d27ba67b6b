"""The deployed network rebuilt from fixed parts that an exporter understands.

Deployed (eval mode, 1-bit), a switchable `BinaryConv2d` computes

    y = conv(sign(x), sign(w')) * s        w' = CycleBNN's per-channel scaled weight, s learned

with sign(0) = +1 and zero padding: a 1-bit x 1-bit convolution whose integer result is scaled
per output channel. Brevitas' exporters cannot read the switchable quantizers (the bit width is
a buffer, not a Brevitas bit-width module), so export works on a copy of the model in which each
`BinaryConv2d` is replaced by a module computing the same thing from fixed parts:

- `QonnxBinaryConv2d` (for QONNX): a Brevitas `QuantConv2d` with Brevitas' own binary
  quantizers (weights stored as +-1 under `SignedBinaryWeightPerTensorConst` at scale 1, inputs
  under `SignedBinaryActPerTensorConst`), then the per-channel scale. Exported as
  `BipolarQuant` (weights) and `BipolarQuant` (inputs) into `Conv`, then `Mul`.
- `OnnxBinaryConv2d` (for plain ONNX, which has no 1-bit type and whose QCDQ form Brevitas
  refuses at 1 bit): weights stored as exact int8 +-1 (`DequantizeLinear` at scale 1), inputs
  binarized by `Less` + `Where` (ONNX's `Sign` maps 0 to 0, the model maps it to +1), `Conv`,
  then `Mul` by the per-channel scale.

In both, the +-1 x +-1 convolution adds integers (exact in float32 in any order) and the scale
is applied once afterwards, as in the PyTorch model and as a popcount kernel would: the copies
compute bit for bit what the model computes. Folding the scale into the weights (a per-channel
`DequantizeLinear` scale) rounds the sums differently; measured on a trained tiny_bnn, 1.3% of
the logits then moved by up to 0.02 (activations near a sign threshold flipping downstream).

The 8-bit stem, projections and classifier are stock Brevitas layers and stay as they are.
Only deployments whose switchable layers compute at 1 x 1 bits can be exported this way:
`cyclebnn` mode at any bit width (the sign of the k-bit value is the sign of the value), `cpt`
mode at 1 bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from brevitas.nn import QuantConv2d
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.layers import BinaryConv2d
from cycl_bench.quant.precision import switchable_layers
from cycl_bench.quant.quantizers import binary_sign


def check_deployable(model: nn.Module) -> None:
    """UserError when a switchable layer does not compute at 1 x 1 bits."""
    for layer in switchable_layers(model):
        weight_bits, act_bits, _ = layer.computed_bits()
        if (weight_bits, act_bits) != (1, 1):
            raise UserError(
                f"the model computes its switchable layers at {weight_bits}x{act_bits} bits "
                f"(precision_mode {layer.precision_mode}): export supports binary deployments "
                "only; deploy at 1 bit (pretrain.eval_bits=1) or train in cyclebnn mode"
            )


def binary_weight(layer: BinaryConv2d) -> torch.Tensor:
    """The deployed +-1 weights of a switchable layer (the sign of its scaled weights)."""
    tensor_quant = layer.weight_quant.tensor_quant
    with torch.no_grad():
        return binary_sign(tensor_quant.scaled_weight(layer.weight)).view_as(layer.weight)


class QonnxBinaryConv2d(nn.Module):
    """A deployed binary convolution on Brevitas' stock binary quantizers, then its scale."""

    def __init__(self, layer: BinaryConv2d):
        super().__init__()
        self.conv = QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            groups=layer.groups,
            bias=False,
            weight_quant=SignedBinaryWeightPerTensorConst.let(scaling_const=1.0),
            input_quant=SignedBinaryActPerTensorConst,
            return_quant_tensor=False,
        )
        with torch.no_grad():
            self.conv.weight.copy_(binary_weight(layer))
        self.register_buffer("output_scale", layer.output_scale.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.output_scale


class DequantizeInt8(torch.autograd.Function):
    """int8 values as float; exported as `DequantizeLinear` (scale 1, zero point 0), the ONNX
    form of an int8 tensor entering float arithmetic."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor) -> torch.Tensor:
        return values.float()

    @staticmethod
    def symbolic(graph: Any, values: Any) -> Any:  # torch.onnx's graph and values
        scale = graph.op("Constant", value_t=torch.tensor(1.0))
        zero_point = graph.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
        return graph.op("DequantizeLinear", values, scale, zero_point)


class OnnxBinaryConv2d(nn.Module):
    """A deployed binary convolution as plain ONNX: `Where(x < 0, -1, 1)` into a `Conv` whose
    weights are int8 +-1, then `Mul` by the per-channel scale."""

    weight_int8: torch.Tensor
    output_scale: torch.Tensor

    def __init__(self, layer: BinaryConv2d) -> None:
        super().__init__()
        self.register_buffer("weight_int8", binary_weight(layer).to(torch.int8))
        self.register_buffer("output_scale", layer.output_scale.detach().clone().view(1, -1, 1, 1))
        self.stride, self.padding, self.groups = layer.stride, layer.padding, layer.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        signs = torch.where(x < 0, -1.0, 1.0)
        weight = DequantizeInt8.apply(self.weight_int8)
        out = nn.functional.conv2d(signs, weight, None, self.stride, self.padding, 1, self.groups)
        return out * self.output_scale


def with_deployed_binary_layers(
    model: nn.Module, deployed_layer: Callable[[BinaryConv2d], nn.Module]
) -> nn.Module:
    """A copy of `model` in eval mode with every `BinaryConv2d` replaced by
    `deployed_layer(layer)`; the model itself is left untouched."""
    check_deployable(model)
    deployed = copy.deepcopy(model).eval()
    for parent in list(deployed.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BinaryConv2d):
                setattr(parent, name, deployed_layer(child).eval())
    return deployed
