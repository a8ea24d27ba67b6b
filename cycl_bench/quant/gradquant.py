"""Fixed-point quantization of gradients (backward only), as in CPT and CycleBNN.

The grid: a k-bit signed fixed-point number is `n * scale` with integer
`n` in `[-(2**(k-1) - 1), 2**(k-1) - 1]` (symmetric, narrow range) and `scale` a power of two.
The scale rule: the smallest power of two for which the largest magnitude of the tensor fits,
`scale = 2 ** ceil(log2(max|x| / (2**(k-1) - 1)))`. Stochastic rounding
(`floor(x / scale + u)`, `u ~ U[0, 1)`) is unbiased; nearest rounding is not, but is deterministic.

`quantize_fixed_point` is the public function (also used by the hybrid-quantized CWR* head);
`GradientQuantizer` applies it to the gradient flowing back through a layer's output and leaves
the forward unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.bits import FLOAT_GRAD_BITS, check_grad_bits

Rounding = Literal["stochastic", "nearest"]
ROUNDING_MODES: tuple[Rounding, ...] = get_args(Rounding)


def power_of_two_scale(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Smallest power of two `s` with `max|x| <= (2**(bits-1) - 1) * s` (1.0 for an all-zero x)."""
    largest_level = 2 ** (bits - 1) - 1
    amax = x.detach().abs().amax()
    ratio = torch.where(amax > 0, amax / largest_level, torch.ones_like(amax))
    return torch.exp2(torch.ceil(torch.log2(ratio)))


def quantize_fixed_point(
    x: torch.Tensor,
    bits: int,
    rounding: str = "stochastic",
    scale: torch.Tensor | float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round `x` onto the signed k-bit fixed-point grid `n * scale`, |n| <= 2**(bits-1) - 1.

    `scale` defaults to `power_of_two_scale(x, bits)`; a given scale is used as is and values
    beyond the grid are clamped. `rounding="stochastic"` is unbiased (E[q] = x inside the grid);
    `"nearest"` rounds half to even. Not differentiable: meant for gradients and head updates.
    """
    check_grad_bits(bits)
    if rounding not in ROUNDING_MODES:
        raise UserError(
            f"rounding={rounding!r} is not known: use one of {', '.join(ROUNDING_MODES)}"
        )
    if scale is None:
        scale = power_of_two_scale(x, bits)
    largest_level = 2 ** (bits - 1) - 1
    scaled = x / scale
    if rounding == "stochastic":
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        levels = torch.floor(scaled + noise)
    else:
        levels = torch.round(scaled)
    return levels.clamp_(-largest_level, largest_level) * scale


def quantize_min_max(
    x: torch.Tensor,
    bits: int,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round `x` onto the affine grid of `2**bits - 1` steps spanning its own [min, max]:
    `min + n * (max - min) / (2**bits - 1)`, n = 0 .. 2**bits - 1 (the per-tensor uniform
    quantizer of the hybrid-quantized CWR* authors' code). A constant tensor (an all-zero head
    row set) is returned as it is. Not differentiable."""
    check_grad_bits(bits)
    if rounding not in ROUNDING_MODES:
        raise UserError(
            f"rounding={rounding!r} is not known: use one of {', '.join(ROUNDING_MODES)}"
        )
    low, high = torch.aminmax(x)
    if not high > low:
        return x.clone()
    step = (high - low) / (2**bits - 1)
    scaled = (x - low) / step
    if rounding == "stochastic":
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        levels = torch.floor(scaled + noise)
    else:
        levels = torch.round(scaled)
    return levels.clamp_(0, 2**bits - 1) * step + low


class _QuantizeGradient(torch.autograd.Function):
    """Identity forward; the incoming gradient is quantized to fixed point on the way back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: int, rounding: str) -> torch.Tensor:
        ctx.bits = bits
        ctx.rounding = rounding
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return quantize_fixed_point(grad_output, ctx.bits, ctx.rounding), None, None


def quantize_gradient(x: torch.Tensor, bits: int, rounding: str = "stochastic") -> torch.Tensor:
    """`x` unchanged in the forward; its gradient rounded to `bits`-bit fixed point."""
    if bits >= FLOAT_GRAD_BITS:
        return x
    return _QuantizeGradient.apply(x, bits, rounding)


class GradientQuantizer(nn.Module):
    """Quantizes the gradient of the tensor it wraps; the bit width is a buffer set in place.

    Placed on a layer's output, it makes the layer's backward (weight and input gradients) start
    from a k-bit gradient. 32 bits = off. The bit width is saved in checkpoints.
    """

    bit_width: torch.Tensor

    def __init__(self, bits: int = FLOAT_GRAD_BITS, rounding: str = "stochastic") -> None:
        super().__init__()
        if rounding not in ROUNDING_MODES:
            raise UserError(
                f"rounding={rounding!r} is not known: use one of {', '.join(ROUNDING_MODES)}"
            )
        self.rounding = rounding
        self.register_buffer("bit_width", torch.tensor(float(check_grad_bits(bits))))
        self.bits = bits

    def set_bits(self, bits: int) -> None:
        self.bits = check_grad_bits(bits)
        self.bit_width.fill_(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_gradient(x, self.bits, self.rounding)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.bits = int(self.bit_width.item())

    def extra_repr(self) -> str:
        return f"bits={self.bits}, rounding={self.rounding}"
