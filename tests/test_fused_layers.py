"""The fused layers (`cycl_bench/quant/fused.py`, the default path of `BinaryConv2d` and of the
8-bit `Int8Conv2d` / `Int8Linear`) against the unfused ones: the Brevitas quantizer path
(`layer.fused = False`) and, for the binary layer, a plain re-implementation of the formulas in
quantizers.py's docstring.

Forward values and running input ranges must be equal bit for bit (`torch.equal`), in training
and evaluation, at 1 bit and at cycled widths. Gradients (of inputs, latent weights, output
scales, thresholds) must agree to float rounding: `assert_close` with rtol 1e-5 and atol 1e-6 of
the largest reference gradient; a stochastically rounded gradient must draw the same numbers.
"""

from __future__ import annotations

import copy
import math
import platform

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cycl_bench.quant import fused as fused_module
from cycl_bench.quant.cost import profile_layers
from cycl_bench.quant.fused import (
    integer_convolution_works,
    sign_convolution,
    sign_of,
    takes_integer_convolution,
)
from cycl_bench.quant.gradquant import quantize_gradient
from cycl_bench.quant.layers import (
    BinaryConv2d,
    FusedPath,
    Int8Conv2d,
    Int8Linear,
    fixed_quant_conv2d,
    fixed_quant_linear,
    use_fused,
)
from cycl_bench.quant.precision import set_precision
from cycl_bench.quant.quantizers import binary_sign
from cycl_bench.registry import BACKBONES

MODES = ("cyclebnn", "cpt")
WIDTHS = (1, 2, 4, 6)
GRAD_BITS = (32, 8)
RTOL = 1e-5
ATOL_SHARE = 1e-6  # of the largest reference gradient
Gradients = dict[str, torch.Tensor]


def layer_pair(mode: str, bits: int, grad_bits: int) -> tuple[BinaryConv2d, BinaryConv2d]:
    """(fused, Brevitas) copies of one layer, with weights that reach the edge cases: a -0.0,
    an all-zero output channel (variance 0, held by the clamp), output scales of both signs."""
    torch.manual_seed(0)
    fused = BinaryConv2d(8, 6, 3, padding=1, precision_mode=mode)
    with torch.no_grad():
        fused.weight[0] = 0.0
        fused.weight[1, 0, 0, 0] = -0.0
        fused.output_scale.uniform_(-1.5, 1.5)
    fused.set_bits(bits, bits, grad_bits)
    reference = copy.deepcopy(fused)
    reference.fused = False
    return fused, reference


def random_input(seed: int, shape: tuple[int, ...] = (6, 8, 7, 7)) -> torch.Tensor:
    """Shifted normal values, exact zeros of both signs, and one constant sample."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.3
    x.view(-1)[:4] = torch.tensor([0.0, -0.0, 0.0, -0.0])
    x[-1] = 0.25
    return x


def gradients_of(model: nn.Module) -> Gradients:
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def forward_backward(
    layer: nn.Module, x: torch.Tensor, seed: int, owner: nn.Module | None = None
) -> tuple[torch.Tensor, Gradients]:
    """The output, and the gradients of the input and of the parameters of `owner` (default:
    the layer), of one step with a random upstream gradient; the global generator is seeded
    before the backward pass, which draws the stochastic rounding."""
    x = x.clone().requires_grad_(True)
    out = layer(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    torch.manual_seed(seed)
    out.backward(upstream)
    assert x.grad is not None
    return out.detach(), {"input": x.grad, **gradients_of(owner or layer)}


def assert_gradients_close(actual: Gradients, expected: Gradients) -> None:
    assert actual.keys() == expected.keys()
    for name, reference in expected.items():
        atol = ATOL_SHARE * float(reference.abs().max())
        torch.testing.assert_close(actual[name], reference, rtol=RTOL, atol=atol, msg=name)


def assert_buffers_equal(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers(), strict=True):
        assert torch.equal(x, y), name


# -- against the Brevitas path ------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("grad_bits", GRAD_BITS)
@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("mode", MODES)
def test_fused_layer_computes_what_brevitas_does(
    mode: str, bits: int, grad_bits: int, training: bool
) -> None:
    fused, reference = layer_pair(mode, bits, grad_bits)
    for layer in (fused, reference):
        layer(random_input(1))  # a training batch: the running range evaluation reads
        layer.train(training)
    for seed in (2, 3):  # two steps: the running range moves in between
        out, gradients = forward_backward(fused, random_input(seed), seed)
        expected_out, expected_gradients = forward_backward(reference, random_input(seed), seed)
        assert torch.equal(out, expected_out)
        assert_gradients_close(gradients, expected_gradients)
        assert_buffers_equal(fused, reference)


@pytest.mark.parametrize("bits", (2, 4))
@pytest.mark.parametrize("mode", MODES)
def test_evaluation_before_any_training_batch_uses_the_batch_range_as_brevitas_does(
    mode: str, bits: int
) -> None:
    fused, reference = layer_pair(mode, bits, 32)
    fused.eval()
    reference.eval()
    out, gradients = forward_backward(fused, random_input(4), 4)
    expected_out, expected_gradients = forward_backward(reference, random_input(4), 4)
    assert torch.equal(out, expected_out)
    assert_gradients_close(gradients, expected_gradients)


@pytest.mark.parametrize("grad_bits", GRAD_BITS)
@pytest.mark.parametrize("bits", (1, 3))
@pytest.mark.parametrize("mode", MODES)
def test_inputs_on_the_grid_bounds_are_clamped_as_brevitas_clamps_them(
    mode: str, bits: int, grad_bits: int
) -> None:
    """The batch maximum and minimum land on the clamp bounds, where the gradient stops."""
    fused, reference = layer_pair(mode, bits, grad_bits)
    fused.eval()
    reference.eval()
    x = torch.linspace(-2.0, 2.0, 6 * 8 * 5 * 5).reshape(6, 8, 5, 5)
    out, gradients = forward_backward(fused, x, 5)
    expected_out, expected_gradients = forward_backward(reference, x, 5)
    assert torch.equal(out, expected_out)
    assert_gradients_close(gradients, expected_gradients)


def test_nearest_rounding_of_gradients_matches_brevitas() -> None:
    fused, reference = layer_pair("cyclebnn", 4, 4)
    for layer in (fused, reference):
        layer.output_gradient_quant.rounding = "nearest"
    _, gradients = forward_backward(fused, random_input(6), 6)
    _, expected_gradients = forward_backward(reference, random_input(6), 6)
    assert_gradients_close(gradients, expected_gradients)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("mode", MODES)
def test_a_second_backward_through_a_retained_graph_gives_the_same_gradients(
    mode: str, bits: int
) -> None:
    fused, _ = layer_pair(mode, bits, 32)
    x = random_input(7).requires_grad_(True)
    out = fused(x)
    first = torch.autograd.grad(out.sum(), (x, fused.weight, fused.output_scale), retain_graph=True)
    second = torch.autograd.grad(out.sum(), (x, fused.weight, fused.output_scale))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("mode", MODES)
def test_without_autograd_the_fused_layer_computes_the_same_values(mode: str, bits: int) -> None:
    fused, reference = layer_pair(mode, bits, 8)
    x = random_input(8)
    with torch.no_grad():
        assert torch.equal(fused(x), reference(x))
    assert_buffers_equal(fused, reference)


# -- against the formulas -----------------------------------------------------------------------


def straight_through(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`value` forward (bit for bit: adds an exact zero), the identity gradient of x backward."""
    return value.detach() + (x - x.detach())


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) (0 -> +1, -0 -> -1) forward; 2 * max(0, 1 - |x|) backward (Bi-Real's ApproxSign):
    the derivative of clamp(x) * (2 - |clamp(x)|), clamp to [-1, 1]."""
    clamped = x.clamp(-1.0, 1.0)
    smooth = clamped * (2.0 - clamped.abs())
    return torch.ones_like(x).copysign(x) + (smooth - smooth.detach())


def formula_weight(weight: torch.Tensor, bits: int, mode: str) -> torch.Tensor:
    """w' = 2*sqrt(2) * w / sqrt(Var(w) + 1e-5) per output channel; k-bit, then the sign."""
    flat = weight.flatten(1)
    mean = flat.mean(dim=1, keepdim=True)
    variance = (flat * flat).mean(dim=1, keepdim=True) - mean * mean
    scaled = flat * (2.0 * math.sqrt(2.0) * torch.rsqrt(variance.clamp_min(0.0) + 1e-5))
    sign = torch.ones_like(scaled).copysign(scaled)
    if bits == 1:
        return straight_through(sign, scaled).view_as(weight)
    if mode == "cyclebnn":  # (n + 1/2) * step on +-max|w'|, then the sign
        half = 2 ** (bits - 1)
        step = scaled.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / half
        levels = (scaled * step.reciprocal()).clamp(-half, half - 0.5)
        quantized = (straight_through(levels.floor(), levels) + 0.5) * step
        sign = torch.ones_like(quantized).copysign(quantized)
        return straight_through(sign, quantized).view_as(weight)
    low, high = torch.aminmax(scaled.detach(), dim=1, keepdim=True)
    count = 2**bits - 1
    step = (high - low).clamp_min(1e-8) / count
    normalized = ((scaled - low) * step.reciprocal()).clamp(0.0, count)
    return torch.addcmul(low, straight_through(normalized.round(), normalized), step).view_as(
        weight
    )


def formula_input(
    x: torch.Tensor, bits: int, mode: str, training: bool, running: tuple, two_pass: bool
) -> torch.Tensor:
    """cyclebnn: x / std per sample (training), k-bit on +-max|x|, the sign; cpt: k-bit on
    [min, max] or the sign. Batch range in training, `running` (min, max) in evaluation."""
    if mode == "cyclebnn" and training:
        dims = (1, 2, 3)
        if two_pass:
            centered = x - x.mean(dim=dims, keepdim=True)
            variance = (centered * centered).mean(dim=dims, keepdim=True)
        else:
            variance = x.var(dim=dims, keepdim=True, unbiased=False)
        x = x * torch.rsqrt(variance + 1e-5)
    if bits == 1:
        return approx_sign(x)
    low, high = torch.aminmax(x.detach()) if training else running
    if mode == "cyclebnn":
        half = 2 ** (bits - 1)
        step = torch.maximum(-low, high).clamp_min(1e-8) / half
        levels = (x * step.reciprocal()).clamp(-half, half - 0.5)
        return approx_sign((straight_through(levels.floor(), levels) + 0.5) * step)
    count = 2**bits - 1
    step = (high - low).clamp_min(1e-8) / count
    normalized = ((x - low) * step.reciprocal()).clamp(0.0, count)
    return torch.addcmul(low, straight_through(normalized.round(), normalized), step)


def formula_layer(layer: BinaryConv2d, two_pass: bool = True) -> nn.Module:
    """The layer's computation written from the formulas, on the layer's own parameters."""
    weight_bits, act_bits, grad_bits = layer.bits
    act_quant = layer.input_quant.fused_activation_quant_proxy.tensor_quant

    class Formula(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            running = (act_quant.running_min.clone(), act_quant.running_max.clone())
            inputs = formula_input(
                x, act_bits, layer.precision_mode, layer.training, running, two_pass
            )
            weight = formula_weight(layer.weight, weight_bits, layer.precision_mode)
            out = F.conv2d(inputs, weight, None, layer.stride, layer.padding)
            return quantize_gradient(out * layer.output_scale.view(1, -1, 1, 1), grad_bits)

    return Formula()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("mode", MODES)
def test_fused_layer_computes_what_the_formulas_say(mode: str, bits: int, training: bool) -> None:
    fused, _ = layer_pair(mode, bits, 32)
    fused(random_input(1))  # a running range for evaluation
    fused.train(training)
    x = random_input(9)
    with torch.no_grad():  # the per-sample std as torch.var computes it: the same forward values
        assert torch.equal(fused(x), formula_layer(fused, two_pass=False)(x))
    expected_out, expected_gradients = forward_backward(formula_layer(fused), x, 9, fused)
    for parameter in fused.parameters():
        parameter.grad = None
    out, gradients = forward_backward(fused, x, 9)
    assert torch.equal(out, expected_out)
    assert_gradients_close(gradients, expected_gradients)


def test_sign_of_is_binary_sign_bit_for_bit() -> None:
    special = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 3.0, -3.0, float("inf"), float("-inf")])
    x = torch.cat([special, torch.randn(1000)])
    assert torch.equal(sign_of(x), binary_sign(x))
    assert torch.equal(sign_of(x).view(torch.int32), binary_sign(x).view(torch.int32))


# -- the 8-bit layers ---------------------------------------------------------------------------


def int8_pair(
    kind: str, scale_sign: float
) -> tuple[Int8Conv2d | Int8Linear, Int8Conv2d | Int8Linear]:
    """(fused, Brevitas) copies of an 8-bit layer whose weights reach the edge cases: an all-zero
    output channel (the scale's 1e-10 floor), a -0.0, a channel whose largest |w| appears twice
    (the gradient goes to the element `torch.max` picks); the learned input scale's parameter of
    either sign (Brevitas takes its absolute value)."""
    torch.manual_seed(4)
    layer: Int8Conv2d | Int8Linear
    if kind == "conv":
        layer = fixed_quant_conv2d(3, 6, 3, stride=2, padding=1)
    else:
        layer = fixed_quant_linear(12, 5)
    with torch.no_grad():
        flat = layer.weight.view(layer.weight.shape[0], -1)
        flat[0] = 0.0
        flat[1, 0] = -0.0
        flat[2, :2] = torch.tensor([0.9, -0.9])
        value = layer.input_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value
        value.mul_(scale_sign)
    reference = copy.deepcopy(layer)
    reference.fused = False
    return layer, reference


def int8_input(kind: str, seed: int) -> torch.Tensor:
    """Values inside the grid, beyond both ends of it (clamped: no gradient), zeros of both signs
    and values half-way between two levels."""
    shape = (4, 3, 9, 9) if kind == "conv" else (4, 12)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 2.0
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, 50.0, -50.0, 4.0, -4.0])
    x.view(-1)[6:10] = torch.tensor([0.5, -0.5, 1.5, 2.5]) * (4.0 / 128)  # level midpoints
    return x


@pytest.mark.parametrize("scale_sign", (1.0, -1.0), ids=["positive-v", "negative-v"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", ("conv", "linear"))
def test_fused_8bit_layer_computes_what_brevitas_does(
    kind: str, training: bool, scale_sign: float
) -> None:
    fused, reference = int8_pair(kind, scale_sign)
    assert isinstance(fused, Int8Conv2d if kind == "conv" else Int8Linear)
    for layer in (fused, reference):
        layer.train(training)
    for seed in (5, 6):
        x = int8_input(kind, seed)
        out, gradients = forward_backward(fused, x, seed)
        expected_out, expected_gradients = forward_backward(reference, x, seed)
        assert torch.equal(out, expected_out)
        scale = "input_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value"
        assert set(expected_gradients) == {"input", "weight", scale}
        assert_gradients_close(gradients, expected_gradients)
        assert float(expected_gradients["input"].view(-1)[2].abs()) == 0.0  # clamped at 50


@pytest.mark.parametrize("kind", ("conv", "linear"))
def test_fused_8bit_layer_without_autograd_or_input_gradient_computes_the_same(kind: str) -> None:
    fused, reference = int8_pair(kind, 1.0)
    x = int8_input(kind, 7)
    with torch.no_grad():
        assert torch.equal(fused(x), reference(x))
    # an image: no gradient into x, but one into the learned scale and the weights
    fused_out, reference_out = fused(x), reference(x)
    assert torch.equal(fused_out, reference_out)
    fused_out.sum().backward()
    reference_out.sum().backward()
    assert_gradients_close(gradients_of(fused), gradients_of(reference))


@pytest.mark.parametrize("bits", [(1, 1, 32), (4, 4, 8)], ids=["deployed", "cycled-4"])
def test_with_8bit_layers_fused_a_backbone_trains_to_brevitas_parameters_bit_for_bit(
    bits: tuple[int, int, int],
) -> None:
    """The 8-bit layers' backward sums what Brevitas' autograd graph sums, over the same
    dimensions: ten SGD steps leave every parameter equal (the binary layers fused in both)."""
    torch.manual_seed(0)
    fused = BACKBONES.build("tiny_bnn", num_classes=5, image_size=16)
    set_precision(fused, weight_bits=bits[0], act_bits=bits[1], grad_bits=bits[2])
    reference = copy.deepcopy(fused)
    for module in reference.modules():
        if isinstance(module, (Int8Conv2d, Int8Linear)):
            module.fused = False
    optimizers = [
        torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (fused, reference)
    ]
    for step in range(10):
        x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(step))
        for model, optimizer in zip((fused, reference), optimizers, strict=True):
            torch.manual_seed(step)  # the same stochastic gradient rounding
            optimizer.zero_grad()
            F.cross_entropy(model(x), torch.arange(16) % 5).backward()
            optimizer.step()
    for (name, a), (_, b) in zip(
        fused.named_parameters(), reference.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name


# -- the integer convolution --------------------------------------------------------------------

ON_X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.skipif(not ON_X86, reason="oneDNN's 8-bit convolution is checked on x86 CPUs")
def test_on_an_x86_cpu_the_8bit_convolution_is_available() -> None:
    """Guards the speed: a PyTorch whose oneDNN operator moved would silently run float."""
    assert integer_convolution_works()


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "dilation", "groups", "size"),
    [
        (8, 3, 1, 1, 1, 1, (7, 7)),
        (8, 3, 2, 1, 1, 1, (9, 6)),
        (6, 1, 2, 0, 1, 1, (8, 8)),
        (8, 3, 1, 2, 2, 2, (10, 7)),
        (4, 5, (2, 1), (0, 2), 1, 4, (11, 9)),
        (512, 3, 1, 1, 1, 1, (4, 4)),  # sums up to 4608 in magnitude
    ],
)
def test_the_convolution_of_signs_is_the_float_convolution_bit_for_bit(
    channels: int,
    kernel: int,
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int,
    groups: int,
    size: tuple[int, int],
) -> None:
    """+-1 operands: the float convolution's sums are exact integers, so the integer
    convolution must give them exactly; its backward is the float convolution's."""
    generator = torch.Generator().manual_seed(channels + kernel)
    layer = BinaryConv2d(
        channels, 2 * groups, kernel, stride=stride, padding=padding, groups=groups
    )  # type: ignore[arg-type]
    layer.dilation = (dilation, dilation)  # the layers never dilate; the convolution may
    inputs = sign_of(torch.randn(3, channels, *size, generator=generator)).requires_grad_(True)
    weight = sign_of(torch.randn(layer.weight.shape, generator=generator)).requires_grad_(True)
    geometry = dict(
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=groups
    )
    expected = F.conv2d(inputs, weight, **geometry)
    assert takes_integer_convolution(layer, inputs) == integer_convolution_works()
    out = sign_convolution(layer, inputs, weight)
    assert torch.equal(out, expected)
    upstream = torch.randn(out.shape, generator=generator)
    grads = torch.autograd.grad(out, (inputs, weight), upstream)
    expected_grads = torch.autograd.grad(expected, (inputs, weight), upstream)
    for actual, wanted in zip(grads, expected_grads, strict=True):
        assert torch.equal(actual, wanted)
    with torch.no_grad():
        assert torch.equal(sign_convolution(layer, inputs, weight), expected)


def test_without_a_working_8bit_operator_the_float_convolution_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another PyTorch whose oneDNN operator is missing or has another schema: float, no error."""

    def missing(*args: object) -> torch.Tensor:
        raise RuntimeError("no schema matches")

    monkeypatch.setattr(fused_module, "_integer_convolution", None)  # unchecked; restored after
    monkeypatch.setattr(fused_module, "integer_sign_convolution", missing)
    layer = BinaryConv2d(8, 6, 3, padding=1)
    x = sign_of(torch.randn(2, 8, 5, 5))
    assert not integer_convolution_works()
    assert not takes_integer_convolution(layer, x)
    weight = sign_of(layer.weight.detach())
    assert torch.equal(sign_convolution(layer, x, weight), F.conv2d(x, weight, padding=1))


@pytest.mark.parametrize("bits", [1, 4])
@pytest.mark.parametrize("mode", MODES)
def test_only_a_layer_computing_at_1_bit_takes_the_integer_convolution(
    mode: str, bits: int
) -> None:
    """cyclebnn computes with signs at every width; cpt's k-bit grid values are not +-1."""
    layer = BinaryConv2d(8, 6, 3, padding=1, precision_mode=mode)
    layer.set_bits(bits, bits, 8)
    x = torch.randn(2, 8, 5, 5)
    at_one_bit = bits == 1 or mode == "cyclebnn"
    assert takes_integer_convolution(layer, x) == (at_one_bit and integer_convolution_works())
    assert not takes_integer_convolution(layer, x.double())


# -- whole backbones ----------------------------------------------------------------------------


def backbone_pair(name: str, mode: str = "cyclebnn") -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    fused = BACKBONES.build(name, num_classes=5, image_size=16, precision_mode=mode)
    with torch.no_grad():  # thresholds away from zero, so their gradients matter
        for parameter_name, parameter in fused.named_parameters():
            if parameter_name.endswith("threshold.shift"):
                parameter.uniform_(-0.3, 0.3)
    reference = copy.deepcopy(fused)
    use_fused(reference, False)
    return fused, reference


@pytest.mark.parametrize(
    "bits", [(1, 1, 32), (4, 4, 8), (2, 2, 8)], ids=["deployed", "cycled-4", "cycled-2"]
)
@pytest.mark.parametrize("mode", MODES)
def test_a_fused_backbone_trains_and_evaluates_as_the_brevitas_one(
    mode: str, bits: tuple[int, int, int]
) -> None:
    fused, reference = backbone_pair("tiny_bnn", mode)
    weight_bits, act_bits, grad_bits = bits
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    labels = torch.arange(8) % 5
    for model in (fused, reference):
        set_precision(model, weight_bits=weight_bits, act_bits=act_bits, grad_bits=grad_bits)
    logits = {}
    gradients = {}
    for key, model in (("fused", fused), ("reference", reference)):
        logits[key] = model(x)
        torch.manual_seed(11)
        F.cross_entropy(logits[key], labels).backward()
        gradients[key] = gradients_of(model)
    assert torch.equal(logits["fused"], logits["reference"])
    assert any("threshold" in name for name in gradients["reference"])
    assert_gradients_close(gradients["fused"], gradients["reference"])
    assert_buffers_equal(fused, reference)
    fused.eval()
    reference.eval()
    with torch.no_grad():
        assert torch.equal(fused(x), reference(x))


def test_the_deployed_resnet18_evaluates_as_the_brevitas_one() -> None:
    fused, reference = backbone_pair("resnet18_bnn")
    training_batch, x = torch.randn(2, 4, 3, 16, 16)
    for model in (fused, reference):
        model(training_batch)  # batch statistics into BatchNorm
        model.eval()
    with torch.no_grad():
        assert torch.equal(fused(x), reference(x))


def test_the_fused_path_changes_no_state_dict_key_and_no_cost_count() -> None:
    fused, reference = backbone_pair("tiny_bnn")
    assert list(fused.state_dict()) == list(reference.state_dict())
    fused.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(fused.state_dict(), strict=True)
    for bits in (1, 4):
        for model in (fused, reference):
            set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
        assert profile_layers(fused, (3, 16, 16)) == profile_layers(reference, (3, 16, 16))


def test_layers_take_the_fused_path_unless_told_otherwise() -> None:
    model = BACKBONES.build("tiny_bnn", num_classes=5)
    layers = [m for m in model.modules() if isinstance(m, FusedPath)]
    kinds = {type(layer) for layer in layers}
    assert kinds == {BinaryConv2d, Int8Conv2d, Int8Linear}
    assert all(layer.fused for layer in layers)
    use_fused(model, False)
    assert not any(layer.fused for layer in layers)


def test_a_hook_on_a_quantizer_sends_the_layer_through_brevitas() -> None:
    fused, reference = layer_pair("cpt", 4, 32)
    seen = []
    fused.input_quant.register_forward_hook(lambda module, args, output: seen.append(output))
    x = random_input(12)
    assert torch.equal(fused(x), reference(x))
    assert len(seen) == 1 and torch.equal(seen[0], reference.input_quant(x))


@pytest.mark.parametrize("kind", ("conv", "linear"))
def test_fused_8bit_layer_with_a_frozen_input_scale_gives_the_input_gradient(kind: str) -> None:
    fused, reference = int8_pair(kind, 1.0)
    for layer in (fused, reference):
        for name, parameter in layer.named_parameters():
            parameter.requires_grad_(name == "weight")
    x = int8_input(kind, 9)
    out, gradients = forward_backward(fused, x, 9)
    expected_out, expected_gradients = forward_backward(reference, x, 9)
    assert torch.equal(out, expected_out)
    assert set(expected_gradients) == {"input", "weight"}
    assert_gradients_close(gradients, expected_gradients)


@pytest.mark.filterwarnings("ignore:Skipping .* export handler")  # a flag, not an export
def test_export_mode_or_tracing_sends_the_8bit_layer_through_brevitas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Brevitas' QONNX export marks the quantizer proxies, not the layer: either is enough."""
    fused, _ = int8_pair("linear", 1.0)
    fused.eval()  # Brevitas refuses export mode in training
    assert fused.takes_fused_path()
    fused.input_quant.export_mode = True
    assert not fused.takes_fused_path()
    fused.input_quant.export_mode = False
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert not fused.takes_fused_path()


def test_a_hook_on_an_8bit_quantizer_sends_the_layer_through_brevitas() -> None:
    fused, reference = int8_pair("conv", 1.0)
    seen = []
    fused.weight_quant.register_forward_hook(lambda module, args, output: seen.append(output))
    x = int8_input("conv", 8)
    assert torch.equal(fused(x), reference(x))
    assert len(seen) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("grad_bits", GRAD_BITS)
@pytest.mark.parametrize("bits", (1, 4))
@pytest.mark.parametrize("mode", MODES)
def test_on_cuda_the_fused_layer_computes_what_brevitas_does(
    mode: str, bits: int, grad_bits: int
) -> None:
    fused, reference = (layer.cuda() for layer in layer_pair(mode, bits, grad_bits))
    for seed in (2, 3):
        x = random_input(seed).cuda()
        out, gradients = forward_backward(fused, x, seed)
        expected_out, expected_gradients = forward_backward(reference, x, seed)
        assert torch.equal(out, expected_out)
        assert_gradients_close(gradients, expected_gradients)
        assert_buffers_equal(fused, reference)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ("conv", "linear"))
def test_on_cuda_the_fused_8bit_layer_computes_what_brevitas_does(kind: str) -> None:
    fused, reference = (layer.cuda() for layer in int8_pair(kind, -1.0))
    for seed in (5, 6):
        x = int8_input(kind, seed).cuda()
        out, gradients = forward_backward(fused, x, seed)
        expected_out, expected_gradients = forward_backward(reference, x, seed)
        assert torch.equal(out, expected_out)
        assert_gradients_close(gradients, expected_gradients)


def test_under_torch_compile_the_layer_hands_the_compiler_the_brevitas_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fused, _ = layer_pair("cyclebnn", 1, 32)
    assert fused.takes_fused_path()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not fused.takes_fused_path()
