"""Brevitas quantizers whose bit width changes at runtime, from 1 bit (sign) to 8 bits.

Brevitas has no supported way to change a bit width in place: re-injection rebuilds the quantizer,
and `stateful_const` bit widths give NaN at 1 bit. So the two missing pieces are Brevitas-style
core modules (`SwitchableBitWidth`, a buffer changed in place and saved in checkpoints, and tensor
quantizers that take the sign at 1 bit), injected into `QuantConv2d` through the quantizer classes
`SwitchableBinaryWeightQuant` and `SwitchableBinaryActQuant`, as Brevitas' own quantizers are.

The binarization is CycleBNN's. Weights are scaled per output channel,
`w' = 2*sqrt(2) * w / sqrt(Var(w) + 1e-5)`; at k > 1 bits the scaled weights and the input
activations are fake-quantized to k bits. Then, depending on the precision mode:

- `cyclebnn`: the sign is taken of the k-bit values, so the convolution stays 1-bit x 1-bit.
  In training the input activations are first divided by their per-sample standard deviation
  (CycleBNN; the sign does not change). The k-bit grid is symmetric and has no level at zero
  (`(n + 1/2) * step` on +-max|x|, per output channel for weights), so the sign of the k-bit
  value is the sign of the value: the forward pass at every k is the deployed 1-bit forward,
  and k only shapes the backward pass (the ApproxSign gradient is taken at the k-bit value,
  nothing flows beyond the range). An asymmetric min/max grid would move the sign threshold
  with k and train a different network than the one deployed at 1 bit (measured: 44% instead of
  81% on the pretraining corpus after 600 steps, docs/precision_and_backbones.md).
- `cpt`: the layer computes with the k-bit values (asymmetric grid on the weights' per-channel
  min/max and the activations' batch min/max in training, running min/max in evaluation); only
  at 1 bit does it take the sign.

Straight-through estimators: identity for the weight sign and ApproxSign `max(0, 2 - 2|x|)`
for the activation sign; rounding is Brevitas' `round_ste`. The sign maps 0 to +1 like Brevitas'
`binary_sign`, computed with `copysign` (one pass over the tensor, several times faster on CPU).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import brevitas
import torch
from brevitas.function.ops_ste import floor_ste, round_ste
from brevitas.inject import ExtendedInjector, value
from brevitas.proxy import ActQuantProxyFromInjector, WeightQuantProxyFromInjector

from cycl_bench.errors import UserError

PrecisionMode = Literal["cyclebnn", "cpt"]
PRECISION_MODES: tuple[PrecisionMode, ...] = get_args(PrecisionMode)
WEIGHT_SCALE_GAIN = 2.0 * math.sqrt(2.0)
WEIGHT_SCALE_EPS = 1e-5
ACT_RANGE_MOMENTUM = 0.1
SAMPLE_NORM_EPS = 1e-5


def check_precision_mode(mode: str) -> str:
    if mode not in PRECISION_MODES:
        raise UserError(
            f"precision_mode={mode!r} is not known: use one of {', '.join(PRECISION_MODES)}"
        )
    return mode


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 for x >= 0, -1 for x < 0 (and for -0.0)."""
    return torch.ones_like(x).copysign_(x)


class SignSteFn(torch.autograd.Function):
    """binary_sign with the identity straight-through gradient (weights)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return binary_sign(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    return SignSteFn.apply(x)


class ApproxSignFn(torch.autograd.Function):
    """binary_sign with the ApproxSign gradient `max(0, 2 - 2|x|)` (Bi-Real Net; activations)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (1.0 - x.abs()).clamp_(min=0.0).mul_(2.0).mul_(grad_output)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    return ApproxSignFn.apply(x)


def uniform_fake_quant(
    x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int
) -> torch.Tensor:
    """Asymmetric k-bit fake quantization onto `2**bits` levels spanning [low, high].

    Values outside the range are clamped (zero gradient there); rounding passes the gradient
    straight through. `low` and `high` broadcast against `x` and carry no gradient.
    """
    levels = 2**bits - 1
    step = (high - low).clamp_min(1e-8) / levels
    # Clamping in level units uses scalar bounds: a cheaper backward than tensor bounds.
    normalized = ((x - low) * step.reciprocal()).clamp_(0.0, levels)
    return torch.addcmul(low, round_ste(normalized), step)


def sign_preserving_fake_quant(x: torch.Tensor, bound: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric k-bit fake quantization on `2**bits` levels `(n + 1/2) * step` over
    [-bound, bound], with no level at zero: `sign(q(x)) == sign(x)` (0 maps to +step/2, as
    `binary_sign(0) = +1`). Values beyond the bound are clamped (zero gradient there); inside,
    the gradient passes straight through. `bound` broadcasts against `x`, no gradient."""
    half = 2 ** (bits - 1)
    step = bound.clamp_min(1e-8) / half
    # the top level is half - 1/2: keep n below half so that x = +bound lands on it
    levels = (x * step.reciprocal()).clamp(-half, half - 0.5)
    return (floor_ste(levels) + 0.5) * step


def per_sample_statistics(
    x: torch.Tensor, scratch: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1 / sqrt(Var + eps)) of each sample, shaped to broadcast against x.

    Two passes, the mean of x then the mean of (x - mean)^2: `torch.var` (Welford) is about 20
    times slower on CPU. With `scratch` (a tensor of x's shape, overwritten) the same numbers
    come without allocating, but not differentiably.
    """
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    if scratch is None:
        centered = x - mean
        squares = centered * centered
    else:
        squares = torch.sub(x, mean, out=scratch)
        squares.mul_(squares)
    return mean, torch.rsqrt(squares.mean(dim=dims, keepdim=True) + SAMPLE_NORM_EPS)


def per_sample_scale(x: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(Var + eps) of each sample, shaped to broadcast against x."""
    return per_sample_statistics(x)[1]


def per_sample_normalized(x: torch.Tensor) -> torch.Tensor:
    """x divided by the standard deviation of each sample (CycleBNN's training-time scaling)."""
    return x * per_sample_scale(x)


class SwitchableBitWidth(brevitas.jit.ScriptModule):
    """A bit width held in a buffer: changed in place, saved in and restored from checkpoints.

    Plays the role of Brevitas' `bit_width_impl` (`forward() -> Tensor`); `bits` mirrors the
    buffer as a Python int so quantizers can branch on it without a device synchronisation.
    """

    bit_width: torch.Tensor

    def __init__(self, bit_width: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.register_buffer("bit_width", torch.tensor(float(bit_width), device=device))
        self.bits = int(bit_width)

    def set_bits(self, bits: int) -> None:
        self.bits = int(bits)
        self.bit_width.fill_(bits)

    def forward(self) -> torch.Tensor:
        return self.bit_width

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.bits = int(self.bit_width.item())


class SwitchableBinaryWeightTensorQuant(brevitas.jit.ScriptModule):
    """CycleBNN weight quantizer: per-channel scaling, k-bit fake quant, sign at 1 bit.

    Returns Brevitas' tensor-quant tuple `(value, scale, zero_point, bit_width)`.
    """

    def __init__(self, bit_width_impl: SwitchableBitWidth, precision_mode: str):
        super().__init__()
        self.bit_width_impl = bit_width_impl
        self.precision_mode = check_precision_mode(precision_mode)
        device = bit_width_impl.bit_width.device
        self.register_buffer("unit", torch.tensor(1.0, device=device), persistent=False)
        self.register_buffer("zero", torch.tensor(0.0, device=device), persistent=False)

    def scaled_weight(self, weight: torch.Tensor) -> torch.Tensor:
        # Var = E[w^2] - E[w]^2 (population variance): one fused pass, much faster than
        # torch.var on CPU; the means are computed once and reused for the gain.
        flat = weight.reshape(weight.shape[0], -1)
        mean = flat.mean(dim=1, keepdim=True)
        variance = (flat * flat).mean(dim=1, keepdim=True) - mean * mean
        gain = WEIGHT_SCALE_GAIN * torch.rsqrt(variance.clamp_min(0.0) + WEIGHT_SCALE_EPS)
        return flat * gain

    def forward(
        self, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bits = self.bit_width_impl.bits
        scaled = self.scaled_weight(weight)
        if bits == 1:
            return sign_ste(scaled).view_as(weight), self.unit, self.zero, self.unit
        if self.precision_mode == "cyclebnn":
            bound = scaled.detach().abs().amax(dim=1, keepdim=True)
            quantized = sign_preserving_fake_quant(scaled, bound, bits)
            return sign_ste(quantized).view_as(weight), self.unit, self.zero, self.unit
        low, high = torch.aminmax(scaled.detach(), dim=1, keepdim=True)
        quantized = uniform_fake_quant(scaled, low, high, bits)
        return quantized.view_as(weight), self.unit, self.zero, self.bit_width_impl()


class SwitchableBinaryActTensorQuant(brevitas.jit.ScriptModule):
    """CycleBNN input-activation quantizer: k-bit fake quant on a tracked range, sign at 1 bit.

    The range is the batch min/max in training (which also updates a running min/max, only at
    k > 1 bits, where it is used) and the running min/max in evaluation. In `cyclebnn` mode the
    training input is normalized per sample first and the grid keeps the sign (module doc).
    """

    def __init__(
        self,
        bit_width_impl: SwitchableBitWidth,
        precision_mode: str,
        device: torch.device | None = None,
    ):
        super().__init__()
        self.bit_width_impl = bit_width_impl
        self.precision_mode = check_precision_mode(precision_mode)
        self.register_buffer("running_min", torch.tensor(0.0, device=device))
        self.register_buffer("running_max", torch.tensor(0.0, device=device))
        self.register_buffer("num_batches_tracked", torch.tensor(0, device=device))
        self.register_buffer("unit", torch.tensor(1.0, device=device), persistent=False)
        self.register_buffer("zero", torch.tensor(0.0, device=device), persistent=False)

    def observed_range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            low, high = torch.aminmax(x.detach())
            first = self.num_batches_tracked == 0
            weight = torch.where(first, 1.0, ACT_RANGE_MOMENTUM).to(self.running_min.dtype)
            self.running_min.lerp_(low.to(self.running_min.dtype), weight)
            self.running_max.lerp_(high.to(self.running_max.dtype), weight)
            self.num_batches_tracked += 1
            return low, high
        # Before any training batch there is no running range: fall back to the batch's own.
        untracked = self.num_batches_tracked == 0
        low, high = torch.aminmax(x.detach())
        return (
            torch.where(untracked, low, self.running_min),
            torch.where(untracked, high, self.running_max),
        )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bits = self.bit_width_impl.bits
        if self.precision_mode == "cyclebnn":
            if self.training:
                x = per_sample_normalized(x)
            if bits > 1:
                low, high = self.observed_range(x)
                x = sign_preserving_fake_quant(x, torch.maximum(-low, high), bits)
            return approx_sign(x), self.unit, self.zero, self.unit
        if bits == 1:
            return approx_sign(x), self.unit, self.zero, self.unit
        low, high = self.observed_range(x)
        quantized = uniform_fake_quant(x, low, high, bits)
        return quantized, self.unit, self.zero, self.bit_width_impl()


class SwitchableBinaryWeightQuant(ExtendedInjector):
    """Weight quantizer class for `QuantConv2d(weight_quant=...)`: switchable 1..8 bits."""

    proxy_class = WeightQuantProxyFromInjector
    tensor_quant = SwitchableBinaryWeightTensorQuant
    bit_width_impl = SwitchableBitWidth
    bit_width = 1
    precision_mode = "cyclebnn"
    signed = True
    narrow_range = False
    scaling_per_output_channel = True

    @value
    def device(tracked_parameter_list: list[torch.nn.Parameter]) -> torch.device:
        return tracked_parameter_list[0].device


class SwitchableBinaryActQuant(ExtendedInjector):
    """Input-activation quantizer class for `QuantConv2d(input_quant=...)`: switchable 1..8 bits."""

    proxy_class = ActQuantProxyFromInjector
    tensor_quant = SwitchableBinaryActTensorQuant
    bit_width_impl = SwitchableBitWidth
    bit_width = 1
    precision_mode = "cyclebnn"
    signed = True
    narrow_range = False

    @value
    def device(module: torch.nn.Conv2d) -> torch.device:
        return module.weight.device
