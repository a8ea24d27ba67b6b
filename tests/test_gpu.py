"""On a CUDA device: pretraining, hq_cwr_star and the latent cache (run with -m gpu)."""

import pytest
import torch
from test_pretrain import prototype_stream

from cycl_bench.continual.loop import (
    accuracy_row,
    build_model,
    encode_views,
    head_accuracy_row,
    run_strategy,
)
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.run import pretrain
from cycl_bench.spec import RunSpec
from cycl_bench.strategies.latent_cache import FeatureCodec, encode_dataset

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def stream():
    return prototype_stream()


@pytest.fixture(scope="module")
def cuda_spec(stream, tmp_path_factory):
    return RunSpec.of(
        "tiny_bnn", stream.image_shape, cache_dir=tmp_path_factory.mktemp("cache"), device="cuda"
    )


@pytest.fixture(scope="module")
def pretrained(stream, cuda_spec, tmp_path_factory):
    config = PretrainConfig(epochs=4, batch_size=32, data="first_experience")
    return pretrain(config, cuda_spec, stream=stream, seed=0, out_dir=tmp_path_factory.mktemp("o"))


def test_pretraining_on_cuda_learns_and_saves_cpu_tensors(pretrained):
    assert pretrained.val_accuracy > 0.8  # chance 1/4
    state = torch.load(pretrained.checkpoint, weights_only=True)
    assert {tensor.device.type for tensor in state.values()} == {"cpu"}
    assert 0 < pretrained.train_bitops < pretrained.fp32_bitops


def test_hq_cwr_star_on_cuda_learns_both_experiences(stream, cuda_spec, pretrained):
    result = run_strategy(
        stream,
        cuda_spec,
        strategy="hq_cwr_star",
        params={"first_epochs": 2, "epochs": 2, "min_steps": 5},
        checkpoint=pretrained.checkpoint,
        seed=0,
    )
    matrix = result.accuracy_matrix
    assert len(matrix) == 2 and matrix[1][1] > 0.5 and matrix[1][0] > 0.5  # chance 1/8
    assert result.peak_memory_mb > 0


def test_latent_cache_features_are_encoded_and_kept_on_cuda(stream, cuda_spec, pretrained):
    model = build_model(cuda_spec, stream.num_classes, pretrained.checkpoint).to("cuda")
    encoded = encode_views(model, stream.test_views, "cuda", cuda_spec.eval_bits)
    assert {features.device.type for features, _ in encoded} == {"cuda"}
    assert {targets.device.type for _, targets in encoded} == {"cuda"}
    # the head on the cached features gives what the whole network gives
    assert head_accuracy_row(model, encoded) == accuracy_row(
        model, stream.test_views, "cuda", cuda_spec.eval_bits
    )
    # the features a cuda backbone encodes are the ones a cpu copy encodes
    on_cuda = encode_dataset(model, stream.test_views[0], FeatureCodec(), "cuda")
    on_cpu = encode_dataset(model.cpu(), stream.test_views[0], FeatureCodec(), "cpu")
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-4)
