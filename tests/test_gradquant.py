"""Fixed-point gradient quantization: grid, scale rule, unbiasedness, backward-only effect."""

import pytest
import torch

from cycl_bench.errors import UserError
from cycl_bench.quant.gradquant import (
    GradientQuantizer,
    power_of_two_scale,
    quantize_fixed_point,
)
from cycl_bench.quant.layers import BinaryConv2d
from cycl_bench.quant.precision import set_precision


def assert_on_grid(q: torch.Tensor, scale: torch.Tensor, bits: int) -> None:
    levels = q / scale
    assert torch.equal(levels, levels.round())
    assert levels.abs().max() <= 2 ** (bits - 1) - 1


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_output_lies_on_the_k_bit_power_of_two_grid(bits, rounding):
    x = torch.randn(1000, generator=torch.Generator().manual_seed(bits)) * 3e-3
    scale = power_of_two_scale(x, bits)
    assert torch.equal(torch.log2(scale), torch.log2(scale).round())
    assert x.abs().max() <= (2 ** (bits - 1) - 1) * scale < 2 * x.abs().max()
    assert_on_grid(quantize_fixed_point(x, bits, rounding), scale, bits)


def test_stochastic_rounding_is_unbiased():
    x = torch.linspace(-1.0, 1.0, 37)
    generator = torch.Generator().manual_seed(0)
    samples = torch.stack(
        [quantize_fixed_point(x, 4, "stochastic", generator=generator) for _ in range(4000)]
    )
    scale = power_of_two_scale(x, 4)
    # each sample is within one grid step of x, so the mean's standard error is <= scale / 126
    assert (samples.mean(0) - x).abs().max() < 5 * scale / (2 * 4000**0.5)


def test_nearest_rounding_is_deterministic_and_within_half_a_step():
    x = torch.randn(500, generator=torch.Generator().manual_seed(1))
    first, second = quantize_fixed_point(x, 8, "nearest"), quantize_fixed_point(x, 8, "nearest")
    assert torch.equal(first, second)
    assert (first - x).abs().max() <= power_of_two_scale(x, 8) / 2


def test_given_scale_is_used_and_values_beyond_the_grid_are_clamped():
    q = quantize_fixed_point(torch.tensor([0.3, -5.0, 5.0]), 4, "nearest", scale=0.25)
    assert q.tolist() == [0.25, -1.75, 1.75]


def test_all_zero_tensor_stays_zero():
    assert torch.equal(quantize_fixed_point(torch.zeros(5), 8), torch.zeros(5))


def test_gradient_quantizer_leaves_forward_unchanged_and_quantizes_backward():
    quantizer = GradientQuantizer(8)
    x = torch.randn(64, requires_grad=True)
    y = quantizer(x)
    assert torch.equal(y, x)
    upstream = torch.randn(64)
    y.backward(upstream)
    assert not torch.equal(x.grad, upstream)
    assert_on_grid(x.grad, power_of_two_scale(upstream, 8), 8)


def test_gradient_quantizer_at_32_bits_is_the_identity():
    x = torch.randn(64, requires_grad=True)
    upstream = torch.randn(64)
    GradientQuantizer(32)(x).backward(upstream)
    assert torch.equal(x.grad, upstream)


def test_grad_bits_quantize_the_gradient_entering_each_binary_conv():
    torch.manual_seed(0)
    layer = BinaryConv2d(4, 6, 3, padding=1)
    set_precision(layer, grad_bits=4)
    seen = {}
    layer.output_gradient_quant.register_full_backward_hook(
        lambda module, grad_input, grad_output: seen.update(grad=grad_input[0])
    )
    upstream = torch.randn(2, 6, 5, 5)
    layer(torch.randn(2, 4, 5, 5)).mul(upstream).sum().backward()
    assert_on_grid(seen["grad"], power_of_two_scale(upstream, 4), 4)
    assert layer.weight.grad is not None


@pytest.mark.parametrize("bits", [1, 33, 4.0])
def test_bad_bits_raise_user_error(bits):
    with pytest.raises(UserError, match="grad_bits"):
        quantize_fixed_point(torch.ones(3), bits)
    with pytest.raises(UserError, match="grad_bits"):
        GradientQuantizer(bits)


def test_unknown_rounding_raises_user_error():
    with pytest.raises(UserError, match="rounding"):
        quantize_fixed_point(torch.ones(3), 8, rounding="up")


def test_gradient_bits_survive_a_checkpoint():
    quantizer = GradientQuantizer(32)
    quantizer.set_bits(8)
    fresh = GradientQuantizer(32)
    fresh.load_state_dict(quantizer.state_dict())
    assert fresh.bits == 8
