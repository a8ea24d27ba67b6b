"""The one place for valid bit widths (no torch, no Brevitas: configs import it cheaply).

Weights and activations of the switchable layers: 1..8 bits. Gradients: 2..32 bits, 32 meaning
float gradients (no quantization). Every check of a bit width in the suite goes through
`check_bits` / `check_grad_bits`, so the ranges and their messages exist once.
"""

from __future__ import annotations

from cycl_bench.errors import UserError

BITS_RANGE = (1, 8)
"""Valid weight and activation bit widths of the switchable layers."""
GRAD_BITS_RANGE = (2, 32)
"""Valid gradient bit widths; 32 means no gradient quantization."""
FLOAT_GRAD_BITS = 32


def check_bits(name: str, bits: int) -> int:
    """The bit width as an int, or a UserError naming the valid range."""
    low, high = BITS_RANGE
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise UserError(f"{name}={bits!r} is out of range: use an integer from {low} to {high}")
    return bits


def check_grad_bits(bits: int, name: str = "grad_bits") -> int:
    """The gradient bit width as an int, or a UserError naming the valid range."""
    low, high = GRAD_BITS_RANGE
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise UserError(
            f"{name}={bits!r} is out of range: use an integer from {low} to {high} "
            f"({FLOAT_GRAD_BITS} = no gradient quantization)"
        )
    return bits
