"""One registry mechanism for benchmarks, backbones and strategies."""

import pytest

from cycl_bench.errors import UserError
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
