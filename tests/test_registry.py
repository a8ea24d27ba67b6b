"""One registry mechanism for benchmarks, backbones and strategies, each entry with its
parameters declared once."""

import pytest

from cycl_bench.data import protocol_of
from cycl_bench.errors import UserError
from cycl_bench.params import Options, Params
from cycl_bench.registry import BACKBONES, BENCHMARKS, STRATEGIES, Registry


def test_a_duplicate_name_is_refused():
    registry = Registry("thing", "cycl_bench")

    @registry.register("a")
    def make_a():
        return 1

    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(make_a)


def test_an_unknown_name_suggests_and_lists_the_known_ones():
    with pytest.raises(
        UserError, match=r"unknown backbone 'tiny_bn' \(did you mean 'tiny_bnn'\?\)"
    ):
        BACKBONES.get("tiny_bn")


def test_the_suite_registers_what_it_promises():
    assert set(BENCHMARKS.names()) >= {"core50_ni", "core50_nc", "split_cifar10", "split_cifar100"}
    assert set(BACKBONES.names()) >= {
        f"{arch}_{kind}"
        for arch in ("tiny", "resnet18", "vgg_small", "reactnet")
        for kind in ("bnn", "fp")
    }
    assert set(STRATEGIES.names()) >= {
        "naive",
        "cumulative",
        "cwr_star",
        "hq_cwr_star",
        "ewc",
        "replay",
        "lwf",
    }


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_with_keyword_arguments(name):
    import torch

    model = BACKBONES.build(name, num_classes=7, in_channels=3, image_size=32)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model.classifier.bias is None


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_every_benchmark_builds_from_synthetic_data(name):
    stream = BENCHMARKS.build(name, data="synthetic", seed=0)
    assert stream.source == "synthetic"
    assert stream.n_experiences == len(stream.classes_per_experience)
    assert len(stream.protocol_hash) == 16


@pytest.mark.parametrize("registry", [BACKBONES, STRATEGIES])
def test_every_backbone_and_strategy_declares_its_parameters(registry):
    for name in registry.names():
        declaration = registry.detail(name, "params")
        assert issubclass(declaration, Params) and declaration.model_fields


def test_every_benchmark_declares_its_options_for_each_data_source_it_reads():
    for name in BENCHMARKS.names():
        declared = BENCHMARKS.detail(name, "params")
        assert {"real", "synthetic"} <= set(declared) <= {"real", "synthetic", "folder"}
        assert all(issubclass(options, Options) for options in declared.values())
    assert set(BENCHMARKS.detail("core50_nc", "params")) == {"real", "synthetic", "folder"}


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"num_classes": True}, "num_classes=True must be a positive integer"),
        ({"num_classes": 5, "image_size": 4}, "image_size=4 must be an integer from 8 to 1024"),
        ({"num_classes": 5, "width": 0}, "width=0 must be a positive number"),
        ({"num_classes": 5, "precision_mode": "xnor"}, "must be one of cyclebnn, cpt"),
        ({}, "tiny_bnn needs the backbone argument num_classes (a positive integer)"),
        (
            {"num_classes": 5, "widht": 2.0},
            "unknown backbone argument 'widht' for tiny_bnn (did you mean 'width'?)",
        ),
    ],
)
def test_a_bad_backbone_argument_is_a_one_line_error(arguments, expected):
    assert expected in one_line_error(BACKBONES.build, "tiny_bnn", **arguments)


def test_benchmark_options_given_as_text_are_parsed_to_their_declared_types():
    protocol = protocol_of(
        "core50_nc", data="synthetic", image_size="16", object_level="no", augment="true"
    )
    assert protocol["image_size"] == 16 and protocol["level"] == "category"
    assert protocol == protocol_of("core50_nc", data="synthetic", image_size=16, object_level=False)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"image_size": True}, "image_size=True must be an integer from 8 to 1024"),
        ({"image_size": "4"}, "image_size='4' must be an integer from 8 to 1024"),
        ({"images_per_object": "many"}, "images_per_object='many' must be an integer from 1 to"),
        ({"object_level": "maybe"}, "object_level='maybe' must be true or false"),
        ({"mini": True}, "unknown option 'mini' for core50_nc with synthetic data; valid options"),
    ],
)
def test_a_bad_benchmark_option_is_a_one_line_error(options, expected):
    assert expected in one_line_error(protocol_of, "core50_nc", data="synthetic", **options)
