"""Every registered backbone honours the backbone contract (DESIGN.md)."""

import pytest
import torch
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.models import model_size_bytes
from cycl_bench.quant.layers import BinaryConv2d
from cycl_bench.quant.precision import LayerPrecision, get_precision, layer_precision, precision
from cycl_bench.registry import BACKBONES

NAMES = BACKBONES.names()
BINARY = [name for name in NAMES if name.endswith("_bnn")]
NUM_CLASSES = 7


def build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return BACKBONES.build(name, num_classes=NUM_CLASSES, **kwargs)


def test_every_binary_backbone_has_a_float_reference():
    assert set(BINARY) >= {"resnet18_bnn", "vgg_small_bnn", "reactnet_bnn", "tiny_bnn"}
    for name in BINARY:
        assert name.replace("_bnn", "_fp") in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_backbone_builds_runs_forward_and_backward(name):
    model = build(name)
    x = torch.randn(2, 3, 32, 32)
    features = model.features(x)
    assert features.shape == (2, model.classifier.in_features)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    assert model.classifier.weight.grad is not None
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.isfinite(module.weight.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_classifier_is_a_bias_free_linear_sized_for_every_class(name):
    classifier = build(name).classifier
    assert isinstance(classifier, nn.Linear)
    assert classifier.bias is None
    assert classifier.out_features == NUM_CLASSES


@pytest.mark.parametrize("name", NAMES)
def test_backbone_evaluates_at_one_bit(name):
    model = build(name)
    model.train()
    model(torch.randn(4, 3, 32, 32))
    model.eval()
    with torch.no_grad(), precision(model, weight_bits=1, act_bits=1):
        logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, NUM_CLASSES)
    assert torch.isfinite(logits).all()


def is_shortcut_projection(module: nn.Module) -> bool:
    """A 1x1 convolution on a shortcut that widens the channels."""
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1


@pytest.mark.parametrize("name", BINARY)
def test_stem_projections_and_classifier_are_8_bit_and_every_other_layer_is_switchable(name):
    model = build(name)
    assert get_precision(model) == (1, 1, 32)
    compute_layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    stem, *between, classifier = compute_layers
    assert stem is model.stem.conv and classifier is model.classifier
    assert layer_precision(stem) == LayerPrecision(8, 8, 32)
    assert layer_precision(classifier) == LayerPrecision(8, 8, 32)
    switchable = [m for m in between if isinstance(m, BinaryConv2d)]
    fixed = [m for m in between if not isinstance(m, BinaryConv2d)]
    assert switchable
    for layer in fixed:
        assert is_shortcut_projection(layer)
        assert layer_precision(layer) == LayerPrecision(8, 8, 32)


@pytest.mark.parametrize("name", ["tiny_bnn", "resnet18_bnn"])
def test_bi_real_units_add_an_unclipped_sum_to_a_real_shortcut(name):
    """Nothing between a unit's sum and the next unit clips it (a Hardtanh would stop the
    gradient of every saturated value): a large input comes out large."""
    model = build(name)
    model.eval()
    unit = next(m for m in model.modules() if type(m).__name__ == "ResidualUnit")
    channels = unit.conv.in_channels
    x = torch.full((1, channels, 8, 8), 5.0)
    with torch.no_grad():
        out = unit(x)
    assert out.abs().max() > 2.0


@pytest.mark.parametrize("name", BINARY)
def test_batchnorm_stays_float(name):
    norms = [m for m in build(name).modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)


@pytest.mark.parametrize("name", BINARY)
def test_precision_mode_reaches_every_switchable_layer(name):
    model = build(name, precision_mode="cpt")
    modes = {m.precision_mode for m in model.modules() if isinstance(m, BinaryConv2d)}
    assert modes == {"cpt"}


@pytest.mark.parametrize("name", BINARY)
def test_binary_backbone_is_much_smaller_than_its_float_reference(name):
    binary, floating = build(name), build(name.replace("_bnn", "_fp"))
    assert model_size_bytes(binary) * 8 < model_size_bytes(floating)


def test_width_multiplier_scales_the_embedding():
    assert build("tiny_bnn", width=2.0).classifier.in_features == 256
    assert build("resnet18_bnn", width=0.25).classifier.in_features == 128


def test_large_images_are_reduced_after_the_stem():
    model = build("tiny_bnn", image_size=128, in_channels=1)
    assert model(torch.randn(2, 1, 128, 128)).shape == (2, NUM_CLASSES)
    assert model.stem(torch.randn(1, 1, 128, 128)).shape[-1] == 16
    resnet = build("resnet18_bnn", image_size=128, width=0.25)
    assert resnet.stem(torch.randn(1, 3, 128, 128)).shape[-1] == 32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"precision_mode": "xnor"},
        {"num_classes": 0},
        {"width": -1.0},
        {"image_size": 4},
        {"in_channels": 0},
    ],
)
def test_bad_arguments_raise_user_error(kwargs):
    with pytest.raises(UserError):
        BACKBONES.build("tiny_bnn", **{"num_classes": NUM_CLASSES, **kwargs})


def test_constructors_are_keyword_only():
    with pytest.raises(TypeError):
        BACKBONES.get("tiny_bnn")(NUM_CLASSES)
