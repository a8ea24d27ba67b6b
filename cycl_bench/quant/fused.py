"""A quantized layer's element-wise work in few passes: the path `BinaryConv2d`, `Int8Conv2d` and
`Int8Linear` take by default (the 8-bit layers: their own section below).

The Brevitas quantizers (`quantizers.py`), the layer's output scale and its gradient quantizer
record an autograd graph of many small operations, each allocating a tensor the size of the
activations; on a CPU those allocations and the comparisons and `torch.where` of their backward
passes cost more than the arithmetic. Here each of the layer's three paths is one autograd
Function with a written-out backward, working in place on buffers it owns and saving little
(at 1 bit the input alone; masks as float factors, since boolean tensors and `torch.where` cost
ten times a multiplication on CPU):

- weights: per-channel scaling, k-bit fake quantization, sign with the identity gradient;
- inputs: per-sample scaling (`cyclebnn`, training), k-bit fake quantization, sign with the
  ApproxSign gradient (or, in `cpt` mode at k > 1 bits, the k-bit values themselves);
- output: the learned per-channel scale, then fixed-point rounding of the incoming gradient;
- between them, the convolution: where both operands are +-1, on a CPU, an 8-bit integer one
  forward (exact: the float sums are integers), the float convolution's backward.

Forward values are the Brevitas path's bit for bit. At 1 bit neither scaling is computed: a
product of x with positive factors has the sign of x (IEEE takes a product's sign bit from its
factors', also when it rounds to zero), so the sign of a scaled weight is the sign of the weight
and the sign of a normalized input that of the input. At k > 1 bits the grid comes from the
Brevitas path's own methods and operations (`scaled_weight`, `observed_range`,
`per_sample_statistics`, the same clamps, floors and roundings in the same order), so the
running input ranges match too. Gradients are the same formulas in another order: they agree to
float rounding, and a stochastically rounded gradient draws the same random numbers.
tests/test_fused_layers.py holds the two paths to this.

`layers.use_fused(model, False)` sends a model's quantized layers through Brevitas, the
reference; they take that path by themselves in export mode, while traced, under `torch.compile`
and while a hook watches one of their quantizers (`layers.FusedPath`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.quantizers import (
    WEIGHT_SCALE_EPS,
    WEIGHT_SCALE_GAIN,
    binary_sign,
    per_sample_statistics,
)

if TYPE_CHECKING:
    from cycl_bench.quant.gradquant import GradientQuantizer
    from cycl_bench.quant.layers import BinaryConv2d
    from cycl_bench.quant.quantizers import (
        SwitchableBinaryActTensorQuant,
        SwitchableBinaryWeightTensorQuant,
    )

SIGN_BIT = -(2**31)  # float32 sign bit, as an int32
ONE_BITS = 0x3F800000  # float32 1.0, as an int32
INFINITY = float("inf")


def sign_of(x: torch.Tensor) -> torch.Tensor:
    """`binary_sign(x)` bit for bit (x's sign bit on 1.0): two integer passes for float32."""
    if x.dtype != torch.float32:
        return binary_sign(x)
    return x.view(torch.int32).bitwise_and(SIGN_BIT).bitwise_or_(ONE_BITS).view(torch.float32)


def approx_sign_slope_(values: torch.Tensor) -> torch.Tensor:
    """In place: ApproxSign's derivative `2 * max(0, 1 - |v|)`, bit for bit `ApproxSignFn`'s
    (doubling is exact, so `2 - 2|v|` rounds as `2 * (1 - |v|)` does)."""
    return values.abs_().mul_(-2.0).add_(2.0).relu_()


def outside_to_infinity_(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """In place: values <= low become -inf, values >= high +inf, the others stay.

    The values a scalar clamp moves are those its gradient stops (PyTorch's clamp gradient is
    zero from the bounds on); as +-inf they keep their sign and get a zero ApproxSign slope.
    """
    F.threshold(values, low, -INFINITY, inplace=True)
    F.threshold(values.neg_(), -high, -INFINITY, inplace=True)
    return values.neg_()


def inside_indicator_(values: torch.Tensor, high: float) -> torch.Tensor:
    """In place: 1.0 where 0 < v < high (where `clamp(0, high)` passes the gradient), else 0.0:
    the values outside become +inf, whose reciprocal has sign 0."""
    F.threshold(values, 0.0, INFINITY, inplace=True)
    F.threshold(values.neg_(), -high, -INFINITY, inplace=True)
    return values.neg_().reciprocal_().sign_()


# -- weights ----------------------------------------------------------------------------------


def weight_scaling_backward(flat: torch.Tensor, grad_scaled: torch.Tensor) -> torch.Tensor:
    """Gradient with respect to the latent weights (out_channels, fan_in) of
    `w * 2*sqrt(2) / sqrt(max(E[w^2] - E[w]^2, 0) + eps)` (`scaled_weight`), given the gradient
    with respect to the scaled weights."""
    fan_in = flat.shape[1]
    mean = flat.mean(dim=1, keepdim=True)
    variance = (flat * flat).mean(dim=1, keepdim=True) - mean * mean
    root = torch.rsqrt(variance.clamp_min(0.0) + WEIGHT_SCALE_EPS)
    grad_gain = torch.linalg.vecdot(grad_scaled, flat, dim=1).unsqueeze(1)
    # d gain / d variance = gain' * -1/2 * root^3, zero where the clamp held the variance at 0
    grad_variance = (grad_gain * WEIGHT_SCALE_GAIN) * (-0.5 * root.pow(3)) * (variance > 0)
    grad = grad_scaled * (WEIGHT_SCALE_GAIN * root)
    return grad.add_((flat - mean).mul_(grad_variance * (2.0 / fan_in)))


def binary_weight_forward(
    weight: torch.Tensor, quantizer: SwitchableBinaryWeightTensorQuant, keep: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The weights the convolution uses, and what the backward pass needs (if `keep`): the
    factor `(step * inside) * 1/step` the k-bit grid puts on the gradient (none at 1 bit)."""
    bits = quantizer.bit_width_impl.bits
    if bits == 1:
        return sign_of(weight), ()
    scaled = quantizer.scaled_weight(weight)
    if quantizer.precision_mode == "cyclebnn":
        half = 2 ** (bits - 1)
        step = scaled.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / half
        reciprocal = step.reciprocal()
        levels = scaled.mul_(reciprocal)
        inside = (levels > -half) & (levels < half - 0.5)
        quantized = levels.clamp_(-half, half - 0.5).floor_().add_(0.5).mul_(step)
        out = sign_of(quantized)
    else:
        count = 2**bits - 1
        low, high = torch.aminmax(scaled, dim=1, keepdim=True)
        step = (high - low).clamp_min(1e-8) / count
        reciprocal = step.reciprocal()
        normalized = scaled.sub_(low).mul_(reciprocal)
        inside = (normalized > 0) & (normalized < count)
        out = torch.addcmul(low, normalized.clamp_(0.0, count).round_(), step)
    return out.view_as(weight), ((step, inside, reciprocal) if keep else ())


class BinaryWeightFunction(torch.autograd.Function):
    """The weight path: `binary_weight_forward`, then the gradient through grid and scaling."""

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, quantizer: SwitchableBinaryWeightTensorQuant
    ) -> torch.Tensor:
        out, saved = binary_weight_forward(weight, quantizer, keep=True)
        ctx.save_for_backward(weight, *saved)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight, *grid = ctx.saved_tensors
        flat = weight.reshape(weight.shape[0], -1)
        grad_scaled = grad.reshape(flat.shape)
        if grid:
            step, inside, reciprocal = grid
            grad_scaled = (grad_scaled * step).mul_(inside).mul_(reciprocal)
        return weight_scaling_backward(flat, grad_scaled).view_as(weight), None


def binary_weight(
    weight: torch.Tensor, quantizer: SwitchableBinaryWeightTensorQuant
) -> torch.Tensor:
    """What `quantizer` gives the convolution from `weight`, in one autograd node."""
    if torch.is_grad_enabled() and weight.requires_grad:
        return BinaryWeightFunction.apply(weight, quantizer)
    return binary_weight_forward(weight, quantizer, keep=False)[0]


# -- inputs -----------------------------------------------------------------------------------


def normalization_backward_(
    grad_normalized: torch.Tensor,
    x: torch.Tensor,
    scale: torch.Tensor,
    mean: torch.Tensor,
    scratch: torch.Tensor,
) -> torch.Tensor:
    """In place on `grad_normalized` (and `scratch`, a buffer of x's shape): the gradient with
    respect to x of `x * scale`, `scale = 1 / sqrt(Var(x) + eps)` per sample, `mean` its mean."""
    dims = tuple(range(1, x.dim()))
    count = math.prod(x.shape[1:])
    dot = torch.mul(grad_normalized, x, out=scratch).sum(dim=dims, keepdim=True)
    # d scale / d Var = -1/2 scale^3; d Var / d x = 2 (x - mean) / count
    coefficient = dot * (-0.5 * scale.pow(3)) * (2.0 / count)
    grad = grad_normalized.mul_(scale)
    return grad.add_(torch.sub(x, mean, out=scratch).mul_(coefficient))


def binary_input_forward(
    x: torch.Tensor, quantizer: SwitchableBinaryActTensorQuant, keep: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], str]:
    """What the convolution reads from input x, what the backward pass needs (if `keep`), and
    which backward that is. Updates the quantizer's running range as its forward does."""
    bits = quantizer.bit_width_impl.bits
    cyclebnn = quantizer.precision_mode == "cyclebnn"
    normalize = cyclebnn and quantizer.training
    if bits == 1:  # the sign of x, normalized per sample or not
        return sign_of(x), (x,), "normalized sign" if normalize else "sign"
    if cyclebnn:
        if normalize:
            values = torch.empty_like(x)
            mean, scale = per_sample_statistics(x, values)
            values = torch.mul(x, scale, out=values)
        else:
            values, scale = x, None
        low, high = quantizer.observed_range(values)
        half = 2 ** (bits - 1)
        step = torch.maximum(-low, high).clamp_min(1e-8) / half
        reciprocal = step.reciprocal()
        levels = values.mul_(reciprocal) if scale is not None else x * reciprocal
        quantized = outside_to_infinity_(levels, -half, half - 0.5).floor_().add_(0.5)
        out = sign_of(quantized.mul_(step))
        if not keep:
            return out, (), ""
        slope = approx_sign_slope_(quantized)
        if scale is not None:
            return out, (slope, step, reciprocal, x, mean, scale), "normalized grid sign"
        return out, (slope, step, reciprocal), "grid sign"
    low, high = quantizer.observed_range(x)
    count = 2**bits - 1
    step = (high - low).clamp_min(1e-8) / count
    reciprocal = step.reciprocal()
    normalized = torch.sub(x, low).mul_(reciprocal)
    out = torch.addcmul(low, normalized.clamp(0.0, count).round_(), step)
    if not keep:
        return out, (), ""
    return out, (inside_indicator_(normalized, count), step, reciprocal), "grid"


def binary_input_backward(
    grad: torch.Tensor, saved: tuple[torch.Tensor, ...], kind: str
) -> torch.Tensor:
    """The gradient with respect to the input of `binary_input_forward`."""
    if kind == "sign":
        (x,) = saved
        return approx_sign_slope_(x.abs()).mul_(grad)
    if kind == "normalized sign":
        (x,) = saved
        scratch = torch.empty_like(x)
        mean, scale = per_sample_statistics(x, scratch)
        # the slope at x * scale: 2 - 2 |x| scale, at least 0
        slope = torch.abs(x).mul_(scale * -2.0).add_(2.0).relu_()
        return normalization_backward_(slope.mul_(grad), x, scale, mean, scratch)
    if kind == "grid":
        inside, step, reciprocal = saved
        return (grad * step).mul_(inside).mul_(reciprocal)
    slope, step, reciprocal, *normalization = saved
    grad_levels = torch.mul(slope, grad).mul_(step).mul_(reciprocal)
    if not normalization:
        return grad_levels
    x, mean, scale = normalization
    return normalization_backward_(grad_levels, x, scale, mean, torch.empty_like(x))


class BinaryInputFunction(torch.autograd.Function):
    """The input path: `binary_input_forward`, then `binary_input_backward`."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, quantizer: SwitchableBinaryActTensorQuant
    ) -> torch.Tensor:
        out, saved, ctx.kind = binary_input_forward(x, quantizer, keep=True)
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return binary_input_backward(grad, ctx.saved_tensors, ctx.kind), None


def binary_input(x: torch.Tensor, quantizer: SwitchableBinaryActTensorQuant) -> torch.Tensor:
    """What `quantizer` gives the convolution from input x, in one autograd node."""
    if torch.is_grad_enabled() and x.requires_grad:
        return BinaryInputFunction.apply(x, quantizer)
    return binary_input_forward(x, quantizer, keep=False)[0]


# -- output -----------------------------------------------------------------------------------


def power_of_two_scale(grad: torch.Tensor, bits: int) -> torch.Tensor:
    """`gradquant.power_of_two_scale` without the |x| tensor: max|x| = max(-min x, max x)."""
    low, high = torch.aminmax(grad)
    amax = torch.maximum(-low, high)
    ratio = torch.where(amax > 0, amax / (2 ** (bits - 1) - 1), torch.ones_like(amax))
    return torch.exp2(torch.ceil(torch.log2(ratio)))


def fixed_point_gradient(grad: torch.Tensor, bits: int, rounding: str) -> torch.Tensor:
    """`quantize_fixed_point(grad, bits, rounding)` computed in one buffer (the same random
    numbers: `uniform_` on a new contiguous tensor is what `torch.rand` draws)."""
    scale = power_of_two_scale(grad, bits)
    largest_level = 2 ** (bits - 1) - 1
    if rounding == "stochastic":
        noise = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device).uniform_()
        levels = noise.addcdiv_(grad, scale).floor_()
    else:
        levels = torch.div(grad, scale).round_()
    return levels.clamp_(-largest_level, largest_level).mul_(scale)


class ScaledOutputFunction(torch.autograd.Function):
    """`conv_out * scale` per channel; the gradient is rounded to fixed point first at k bits."""

    @staticmethod
    def forward(
        ctx: Any, conv_out: torch.Tensor, scale: torch.Tensor, bits: int, rounding: str
    ) -> torch.Tensor:
        ctx.save_for_backward(conv_out, scale)
        ctx.bits, ctx.rounding = bits, rounding
        return conv_out * scale.view(1, -1, 1, 1)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, None, None]:
        conv_out, scale = ctx.saved_tensors
        channel_scale = scale.view(1, -1, 1, 1)
        dims = (0, 2, 3)
        if ctx.bits >= FLOAT_GRAD_BITS:
            buffer = torch.mul(grad, conv_out)
            grad_scale = buffer.sum(dims) if ctx.needs_input_grad[1] else None
            return torch.mul(grad, channel_scale, out=buffer), grad_scale, None, None
        quantized = fixed_point_gradient(grad, ctx.bits, ctx.rounding)
        grad_conv = torch.mul(quantized, channel_scale)
        grad_scale = quantized.mul_(conv_out).sum(dims) if ctx.needs_input_grad[1] else None
        return grad_conv, grad_scale, None, None


def scaled_output(
    conv_out: torch.Tensor, scale: torch.Tensor, gradient_quant: GradientQuantizer
) -> torch.Tensor:
    """`gradient_quant(conv_out * scale.view(1, -1, 1, 1))` in one autograd node."""
    if torch.is_grad_enabled() and (conv_out.requires_grad or scale.requires_grad):
        return ScaledOutputFunction.apply(
            conv_out, scale, gradient_quant.bits, gradient_quant.rounding
        )
    return conv_out * scale.view(1, -1, 1, 1)


# -- the 8-bit layers -------------------------------------------------------------------------
#
# Brevitas' Int8WeightPerChannelFloat: scale = max(max|w| per output channel, 1e-10) / 127,
# w_q = clamp(round(w / scale), -127, 127) * scale, straight through round and clamp, the scale's
# gradient flowing back into the largest |w|. Int8ActPerTensorFloatMinMaxInit (`Int8ImageQuant`,
# `Int8FeatureQuant`): scale = |v| / 128 for the learned v, x_q = clamp(round(x / scale), -128,
# 127) * scale, straight through round, no gradient where the clamp holds. The values are
# Brevitas' (the same operations in the same order); the gradients the formulas of Brevitas'
# autograd graph, in one node, summed in the same order.

INT8_WEIGHT_LEVEL = 127.0  # narrow range: -127..127
INT8_WEIGHT_MIN_SCALE = 1e-10  # Brevitas' scaling_min_val for weight statistics
INT8_INPUT_LOW, INT8_INPUT_HIGH = -128.0, 127.0
INT8_INPUT_THRESHOLD = 128.0


def int8_weight_forward(weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(quantized weights, scale, integer levels, index of each channel's largest |w|); the
    scale shaped (out_channels, 1, ...) as Brevitas shapes it, so that the backward sums over
    the same dimensions as Brevitas' autograd graph does."""
    flat = weight.reshape(weight.shape[0], -1)
    largest, index = torch.max(flat.abs(), dim=1, keepdim=True)
    scale_shape = (weight.shape[0],) + (1,) * (weight.dim() - 1)
    scale = largest.clamp_min_(INT8_WEIGHT_MIN_SCALE).div_(INT8_WEIGHT_LEVEL).view(scale_shape)
    levels = torch.div(weight, scale).round_().clamp_(-INT8_WEIGHT_LEVEL, INT8_WEIGHT_LEVEL)
    return levels * scale, scale, levels, index


class Int8WeightFunction(torch.autograd.Function):
    """`int8_weight_forward`, then the gradient straight through the grid and into the scale."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor) -> torch.Tensor:
        out, scale, levels, index = int8_weight_forward(weight)
        ctx.save_for_backward(weight, scale, levels, index)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        weight, scale, levels, index = ctx.saved_tensors
        dims = tuple(range(1, weight.dim()))
        grad_levels = grad * scale
        # levels * scale: d/d scale = levels; (w / scale): d/d scale = -(w / scale) / scale
        grad_scale = torch.mul(grad, levels).sum(dims) - (
            torch.div(weight, scale).div_(scale).mul_(grad_levels).sum(dims)
        )
        grad_weight = grad_levels.div_(scale).contiguous()
        # scale = largest / 127 and largest = max |w|: the gradient of |w| at the largest
        grad_largest = grad_scale.unsqueeze(1).div_(INT8_WEIGHT_LEVEL)
        flat = weight.reshape(weight.shape[0], -1)
        grad_largest.mul_(flat.gather(1, index).sign())
        grad_weight.view(flat.shape).scatter_add_(1, index, grad_largest)
        return grad_weight


def int8_weight(weight: torch.Tensor) -> torch.Tensor:
    """What an `Int8Conv2d`'s or `Int8Linear`'s weight quantizer gives from its weight."""
    if torch.is_grad_enabled() and weight.requires_grad:
        return Int8WeightFunction.apply(weight)
    return int8_weight_forward(weight)[0]


class Int8InputFunction(torch.autograd.Function):
    """x on the learned 8-bit grid; gradients into x (inside the range) and the scale's v."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        scale = value.abs() / INT8_INPUT_THRESHOLD
        rounded = torch.div(x, scale).round_()
        ctx.save_for_backward(x, value, scale, rounded)
        return rounded.clamp(INT8_INPUT_LOW, INT8_INPUT_HIGH).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, value, scale, rounded = ctx.saved_tensors
        levels = rounded.clamp(INT8_INPUT_LOW, INT8_INPUT_HIGH)
        inside = torch.eq(levels, rounded)  # where the clamp passes the gradient
        grad_levels = (grad * scale).mul_(inside)
        grad_value = None
        if ctx.needs_input_grad[1]:
            # levels * scale: d/d scale = levels; (x / scale): d/d scale = -(x / scale) / scale,
            # summed as autograd sums them (a vdot rounds differently, and the two sums cancel)
            grad_scale = (
                levels.mul_(grad).sum() - torch.div(x, scale).div_(scale).mul_(grad_levels).sum()
            )
            grad_value = grad_scale.div_(INT8_INPUT_THRESHOLD).mul_(value.sign()).view_as(value)
        grad_x = grad_levels.div_(scale) if ctx.needs_input_grad[0] else None
        return grad_x, grad_value


def int8_input(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """What an `Int8Conv2d`'s or `Int8Linear`'s input quantizer, whose learned scale is
    |`value`| / 128, gives from x."""
    if torch.is_grad_enabled() and (x.requires_grad or value.requires_grad):
        return Int8InputFunction.apply(x, value)
    scale = value.abs() / INT8_INPUT_THRESHOLD
    return torch.div(x, scale).round_().clamp_(INT8_INPUT_LOW, INT8_INPUT_HIGH).mul_(scale)


# -- the binary convolution -------------------------------------------------------------------
#
# Where the layer computes at 1 bit (1-bit widths, or `cyclebnn` at any width: `computed_bits`),
# both operands are +-1. The float convolution then adds integers of magnitude at most
# fan_in = in_channels / groups * kernel area, which float32 holds exactly below 2**24: every
# order of summation gives the same exact integer, and so does an integer convolution. On a CPU
# the forward pass runs as oneDNN's 8-bit one (unsigned inputs x + 1 in {0, 2} with zero point 1,
# signed weights, 32-bit sums, float32 output; zero padding stays a real zero), which costs 80%
# of the float one at ResNet-18's first stage and under half from 128 channels on; on small
# layers about the same (benchmarks/README.md). The backward pass is the float convolution's own
# (`aten.convolution_backward`, the node autograd records for `F.conv2d`), so gradients are
# unchanged bit for bit. Where oneDNN's operator is missing or fails the check on first use, the
# float convolution runs.

EXACT_FLOAT_SUM = 2**24
_integer_convolution: bool | None = None  # unknown until first used on a CPU


def integer_sign_convolution(
    inputs: torch.Tensor,
    weight: torch.Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> torch.Tensor:
    """`F.conv2d(inputs, weight, ...)` of +-1 operands through oneDNN's 8-bit convolution."""
    out_channels = weight.shape[0]
    ones = torch.ones(out_channels)
    zeros = torch.zeros(out_channels, dtype=torch.int64)
    unsigned = inputs.add(1.0).to(torch.uint8, memory_format=torch.channels_last)
    packed = torch.ops.onednn.qconv_prepack(
        weight.to(torch.int8), ones, 1.0, 1, stride, padding, dilation, groups, list(inputs.shape)
    )
    out = torch.ops.onednn.qconv2d_pointwise(
        unsigned, 1.0, 1, packed, ones, zeros, None, stride, padding, dilation, groups,
        1.0, 0, torch.float32, "none", [], "",
    )  # fmt: skip
    return out.contiguous()


def integer_convolution_works() -> bool:
    """Whether this PyTorch's oneDNN 8-bit convolution runs here and gives the float
    convolution's values (checked once, on a small case with stride, padding and groups)."""
    global _integer_convolution
    if _integer_convolution is None:
        generator = torch.Generator().manual_seed(0)  # the global generator left as it is
        inputs = sign_of(torch.randn(2, 4, 7, 7, generator=generator))
        weight = sign_of(torch.randn(6, 2, 3, 3, generator=generator))
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            try:
                out = integer_sign_convolution(inputs, weight, [2, 1], [1, 1], [1, 1], 2)
            # no such operator (AttributeError), or another PyTorch's schema or kernel
            except (AttributeError, NotImplementedError, RuntimeError, TypeError):
                _integer_convolution = False
            else:
                reference = F.conv2d(inputs, weight, None, (2, 1), (1, 1), (1, 1), 2)
                _integer_convolution = torch.equal(out, reference)
    return _integer_convolution


@contextmanager
def float_convolution() -> Iterator[None]:
    """Within it, binary layers convolve in float where the integer convolution would run:
    the same values, for timing what the integer one saves (benchmarks/bench_backbones.py)."""
    global _integer_convolution
    saved = integer_convolution_works()
    _integer_convolution = False
    try:
        yield
    finally:
        _integer_convolution = saved


class SignConvolutionFunction(torch.autograd.Function):
    """The convolution of +-1 operands: integer forward, the float convolution's backward."""

    @staticmethod
    def forward(
        ctx: Any,
        inputs: torch.Tensor,
        weight: torch.Tensor,
        stride: list[int],
        padding: list[int],
        dilation: list[int],
        groups: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.geometry = stride, padding, dilation, groups
        return integer_sign_convolution(inputs, weight, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, inputs, weight, None, stride, padding, dilation, False, [0] * len(stride),
            groups, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
        )  # fmt: skip
        return grad_input, grad_weight, None, None, None, None


def takes_integer_convolution(layer: BinaryConv2d, inputs: torch.Tensor) -> bool:
    weight_bits, act_bits, _ = layer.computed_bits()
    return (
        weight_bits == act_bits == 1
        and inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
        and layer.weight[0].numel() < EXACT_FLOAT_SUM
        and integer_convolution_works()
    )


def sign_convolution(
    layer: BinaryConv2d, inputs: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """The layer's convolution of its quantized inputs and weights, without bias."""
    if not takes_integer_convolution(layer, inputs):
        return layer._conv_forward(inputs, weight, None)
    geometry = (list(layer.stride), list(layer.padding), list(layer.dilation), layer.groups)
    if torch.is_grad_enabled() and (inputs.requires_grad or weight.requires_grad):
        return SignConvolutionFunction.apply(inputs, weight, *geometry)
    return integer_sign_convolution(inputs, weight, *geometry)


# -- the layer --------------------------------------------------------------------------------


def fused_forward(layer: BinaryConv2d, x: torch.Tensor) -> torch.Tensor:
    """`BinaryConv2d.forward` through the fused paths: the same values as through Brevitas."""
    weight = binary_weight(layer.weight, layer.weight_quant.tensor_quant)
    inputs = binary_input(x, layer.input_quant.fused_activation_quant_proxy.tensor_quant)
    conv_out = sign_convolution(layer, inputs, weight)
    return scaled_output(conv_out, layer.output_scale, layer.output_gradient_quant)
