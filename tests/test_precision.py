"""Runtime-switchable precision on Brevitas layers: set/get/context manager/layer_precision."""

import pytest
import torch
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.layers import BinaryConv2d
from cycl_bench.quant.precision import (
    LayerPrecision,
    get_precision,
    layer_precision,
    model_size_bytes,
    precision,
    set_precision,
)
from cycl_bench.registry import BACKBONES

WIDTHS = (1, 2, 4, 6)


def make_layer(mode: str = "cyclebnn") -> BinaryConv2d:
    torch.manual_seed(0)
    return BinaryConv2d(16, 8, 3, padding=1, precision_mode=mode)


def tiny(mode: str = "cyclebnn") -> nn.Module:
    torch.manual_seed(0)
    return BACKBONES.build("tiny_bnn", num_classes=5, precision_mode=mode)


def quantized_weight(layer: BinaryConv2d) -> torch.Tensor:
    return layer.weight_quant(layer.weight).detach()


def quantized_input(layer: BinaryConv2d, x: torch.Tensor) -> torch.Tensor:
    return layer.input_quant(x).detach()


def distinct_per_channel(weight: torch.Tensor) -> list[int]:
    return [row.unique().numel() for row in weight.flatten(1)]


def test_default_precision_is_binary_with_float_gradients():
    assert get_precision(tiny()) == (1, 1, 32)


@pytest.mark.parametrize("bits", WIDTHS)
def test_cpt_weights_take_at_most_two_to_the_bits_values_per_channel(bits):
    layer = make_layer("cpt")
    set_precision(layer, weight_bits=bits, act_bits=bits)
    counts = distinct_per_channel(quantized_weight(layer))
    if bits == 1:
        assert counts == [2] * 8
    else:
        assert max(counts) <= 2**bits
        assert min(counts) > 2 ** (bits - 1) // 2  # the grid is really used, not collapsed


@pytest.mark.parametrize("bits", WIDTHS)
def test_cpt_activations_take_at_most_two_to_the_bits_values(bits):
    layer = make_layer("cpt")
    set_precision(layer, weight_bits=bits, act_bits=bits)
    x = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    count = quantized_input(layer, x).unique().numel()
    if bits == 1:
        assert count == 2
    else:
        assert 2 ** (bits - 1) < count <= 2**bits


def test_more_bits_give_more_distinct_values():
    layer = make_layer("cpt")
    x = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    weight_counts, act_counts = [], []
    for bits in WIDTHS:
        set_precision(layer, weight_bits=bits, act_bits=bits)
        weight_counts.append(quantized_weight(layer).unique().numel())
        act_counts.append(quantized_input(layer, x).unique().numel())
    assert weight_counts == sorted(set(weight_counts))
    assert act_counts == sorted(set(act_counts))


@pytest.mark.parametrize("bits", WIDTHS)
def test_cyclebnn_weights_and_activations_stay_binary_at_every_width(bits):
    layer = make_layer("cyclebnn")
    set_precision(layer, weight_bits=bits, act_bits=bits)
    x = torch.randn(4, 16, 8, 8)
    assert set(quantized_weight(layer).unique().tolist()) == {-1.0, 1.0}
    assert set(quantized_input(layer, x).unique().tolist()) == {-1.0, 1.0}


def test_at_four_bits_cpt_conv_inputs_take_up_to_16_levels_while_cyclebnn_stays_binary():
    captured = {}
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for mode in ("cyclebnn", "cpt"):
        model = tiny(mode)
        layer = model.body[1].conv
        handle = layer.input_quant.register_forward_hook(
            lambda module, args, output, mode=mode: captured.__setitem__(mode, output.detach())
        )
        set_precision(model, weight_bits=4, act_bits=4)
        model(x)
        handle.remove()
    assert captured["cyclebnn"].unique().numel() == 2
    assert 8 < captured["cpt"].unique().numel() <= 16


@pytest.mark.parametrize("mode", ["cyclebnn", "cpt"])
@pytest.mark.parametrize("bits", WIDTHS)
def test_gradients_reach_latent_weights_at_every_width(mode, bits):
    model = tiny(mode)
    set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
    model(torch.randn(4, 3, 32, 32)).square().mean().backward()
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            grad = module.weight.grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_parameters_and_optimizer_state_survive_switches():
    model = tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    params_before = [id(p) for p in model.parameters()]
    state_before = {id(p): optimizer.state[p]["exp_avg"].clone() for p in model.parameters()}
    for bits in (4, 2, 6, 1):
        set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
    assert [id(p) for p in model.parameters()] == params_before
    for p in model.parameters():
        assert torch.equal(optimizer.state[p]["exp_avg"], state_before[id(p)])
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert all(int(optimizer.state[p]["step"]) == 2 for p in model.parameters())


def test_checkpoint_round_trip_restores_precision(tmp_path):
    model = tiny("cpt")
    set_precision(model, weight_bits=3, act_bits=5, grad_bits=8)
    model.train()
    model(torch.randn(8, 3, 32, 32))  # track activation ranges
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = tiny("cpt")
    assert get_precision(fresh) == (1, 1, 32)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert get_precision(fresh) == (3, 5, 8)
    model.eval()
    fresh.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_untrained_model_state_dict_loads_strictly_into_a_fresh_one():
    source = tiny()
    set_precision(source, weight_bits=2, act_bits=3)
    fresh = tiny()
    fresh.load_state_dict(source.state_dict(), strict=True)
    assert get_precision(fresh) == (2, 3, 32)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight_bits": 0},
        {"weight_bits": 9},
        {"act_bits": 2.5},
        {"act_bits": True},
        {"grad_bits": 1},
        {"grad_bits": 33},
    ],
)
def test_bad_bits_raise_user_error_and_change_nothing(kwargs):
    model = tiny()
    with pytest.raises(UserError, match="out of range"):
        set_precision(model, **{"weight_bits": 4, "act_bits": 4, **kwargs})
    assert get_precision(model) == (1, 1, 32)


def test_context_manager_evaluates_at_explicit_precision_and_restores():
    model = tiny()
    set_precision(model, weight_bits=4, act_bits=4, grad_bits=8)
    with precision(model, weight_bits=1, act_bits=1):
        assert get_precision(model) == (1, 1, 8)
    assert get_precision(model) == (4, 4, 8)
    with pytest.raises(RuntimeError), precision(model, weight_bits=2, act_bits=2, grad_bits=16):
        raise RuntimeError("interrupted evaluation")
    assert get_precision(model) == (4, 4, 8)


def test_layer_precision_reports_what_each_layer_computes_with():
    cyclebnn, cpt = tiny("cyclebnn"), tiny("cpt")
    for model in (cyclebnn, cpt):
        set_precision(model, weight_bits=4, act_bits=4, grad_bits=8)
    assert layer_precision(cyclebnn.body[0].conv) == LayerPrecision(1, 1, 8)
    assert layer_precision(cpt.body[0].conv) == LayerPrecision(4, 4, 8)
    assert layer_precision(cpt.stem.conv) == LayerPrecision(8, 8, 32)
    assert layer_precision(cpt.classifier) == LayerPrecision(8, 8, 32)
    assert layer_precision(nn.Conv2d(3, 4, 3)) == LayerPrecision(32, 32, 32)
    assert layer_precision(nn.Linear(3, 4)) == LayerPrecision(32, 32, 32)
    assert layer_precision(cpt.body[0].bn) is None


def test_float_model_reports_float_precision_and_ignores_switching():
    model = BACKBONES.build("tiny_fp", num_classes=5)
    set_precision(model, weight_bits=4, act_bits=4)
    assert get_precision(model) == (32, 32, 32)
    with precision(model, weight_bits=1, act_bits=1):
        assert get_precision(model) == (32, 32, 32)


def test_model_size_counts_binary_weights_at_their_bits_and_their_ranges_above_one_bit():
    """tiny_bnn's binary convolutions 32->32, 32->64, 64->64, 64->128 (3x3): 9 * 15360 =
    138240 weights, 7 more bits each at 8 bits; above 1 bit a cpt layer also stores the
    (min, max) of each output channel's weights, 2 * (32 + 64 + 64 + 128) float32, and the
    running (min, max) of its input, 4 * 2 float32. cyclebnn mode computes 1 x 1 at any k."""
    model = tiny("cpt")
    size_at_1 = model_size_bytes(model)
    set_precision(model, weight_bits=8, act_bits=8)
    size_at_8 = model_size_bytes(model)
    assert size_at_8 - size_at_1 == 138240 * 7 // 8 + 2 * 288 * 4 + 4 * 2 * 4
    cyclebnn = tiny("cyclebnn")
    assert model_size_bytes(cyclebnn) == size_at_1
    set_precision(cyclebnn, weight_bits=8, act_bits=8)
    assert model_size_bytes(cyclebnn) == size_at_1
    assert model_size_bytes(BACKBONES.build("tiny_fp", num_classes=5)) > 8 * size_at_1


def test_evaluation_range_is_the_running_range_after_training():
    layer = make_layer("cpt")
    set_precision(layer, weight_bits=4, act_bits=4)
    layer.train()
    for _ in range(3):
        layer(torch.randn(4, 16, 8, 8))
    layer.eval()
    tensor_quant = layer.input_quant.fused_activation_quant_proxy.tensor_quant
    small = 0.01 * torch.randn(2, 16, 8, 8)
    # a small input quantized on the wide running range collapses to very few levels
    assert quantized_input(layer, small).unique().numel() <= 3
    assert tensor_quant.running_min < 0 < tensor_quant.running_max
