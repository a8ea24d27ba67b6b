"""Latent cache: same results as training through the frozen backbone, a quarter of the float
size for the 8-bit head, and the backbone run once per experience instead of once per step."""

import pytest
import torch

from cycl_bench.continual.loop import accuracy_row, build_model, seed_everything
from cycl_bench.quant.gradquant import quantize_fixed_point
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy
from cycl_bench.strategies.latent_cache import FeatureCodec

PROTOCOL = {"first_epochs": 1, "epochs": 2, "batch_size": 16, "lr": 0.05, "min_steps": 0}


@pytest.fixture(scope="module")
def stream():
    return BENCHMARKS.build(
        "core50_nc", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


def train(stream, name, params, experiences=4):
    seed_everything(0)
    model = build_model(RunSpec.of("tiny_bnn", stream.image_shape), stream.num_classes)
    built = build_strategy(name, model=model, params={**PROTOCOL, **params})
    matrix = []
    for experience in stream.train_stream[:experiences]:
        built.train(experience)
        matrix.append(accuracy_row(model, stream.test_views))
    return built, matrix


def test_eight_bit_codes_decode_to_the_fixed_point_features():
    features = torch.randn(64, 32)
    codec = FeatureCodec(bits=8, scale=2.0**-5)
    codes = codec.encode(features)
    assert codes.dtype == torch.int8
    assert torch.equal(codec.decode(codes), quantize_fixed_point(features, 8, "nearest", 2.0**-5))
    assert codes.element_size() * 4 == features.element_size()


def test_float_codec_keeps_features_exactly():
    features = torch.randn(8, 4)
    assert torch.equal(FeatureCodec().decode(FeatureCodec().encode(features)), features)


@pytest.mark.parametrize(
    ("name", "params"),
    [("cwr_star", {}), ("hq_cwr_star", {"grad_bits": 16}), ("hq_cwr_star", {"grad_bits": 8})],
)
def test_cached_training_matches_training_through_the_backbone(stream, name, params):
    cached, cached_matrix = train(stream, name, params)
    direct, direct_matrix = train(stream, name, {**params, "latent_cache": False})
    assert cached.latent_cache is not None and direct.latent_cache is None
    assert cached_matrix == direct_matrix
    assert torch.equal(cached.model.classifier.weight, direct.model.classifier.weight)


def test_hybrid_head_caches_int8_codes(stream):
    quantized, _ = train(stream, "hq_cwr_star", {"grad_bits": 16}, experiences=2)
    floating, _ = train(stream, "hq_cwr_star", {"grad_bits": 32}, experiences=2)
    assert quantized.latent_cache.codec.dtype == torch.int8
    assert floating.latent_cache.codec.dtype == torch.float32
    assert quantized.latent_cache.cache_bytes * 4 == floating.latent_cache.cache_bytes > 0


def test_backbone_runs_once_per_cached_experience(stream):
    seed_everything(0)
    model = build_model(RunSpec.of("tiny_bnn", stream.image_shape), stream.num_classes)
    built = build_strategy("cwr_star", model=model, params={**PROTOCOL, "epochs": 3})
    built.train(stream.train_stream[0])
    stem_calls = []
    model.stem.register_forward_hook(lambda module, inputs, output: stem_calls.append(len(output)))
    built.train(stream.train_stream[1])
    assert sum(stem_calls) == len(stream.train_stream[1].dataset)  # one encoding pass


def test_cache_stays_off_when_the_train_transform_is_random(stream):
    seed_everything(0)
    model = build_model(RunSpec.of("tiny_bnn", stream.image_shape), stream.num_classes)
    built = build_strategy("cwr_star", model=model, params=PROTOCOL, deterministic_inputs=False)
    assert built.latent_cache is None
