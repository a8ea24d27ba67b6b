"""AR1* with latent replay and the hybrid-quantized CWR* with latent replay: what trains when,
the minibatches, CWR*'s counts, 1-bit against float memories, the training BitOPs."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import SynapticIntelligencePlugin
from torch import nn
from torch.utils.data import TensorDataset

from cycl_bench.continual.costs import TrainingCostMeter
from cycl_bench.continual.loop import accuracy_row, build_model, run_strategy, seed_everything
from cycl_bench.models.common import Backbone
from cycl_bench.quant.layers import BinaryConv2d
from cycl_bench.quant.quantizers import binary_sign
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy, strategy_params
from cycl_bench.strategies.ar1 import BatchRenorm2d

# a memory of 60: the first experience (80 images) fills it, as the reference assumes
SHORT = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 0, "lr": 0.01, "rm_sz": 60}


@pytest.fixture(scope="module")
def stream():
    # experience 0: 10 objects x 8 sessions x 1 image = 80 images, later ones 40
    return BENCHMARKS.build(
        "core50_nc", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


def fresh(stream, backbone="tiny_bnn", **options):
    seed_everything(0)
    spec = RunSpec.of(backbone, stream.image_shape, options=options)
    return build_model(spec, stream.num_classes)


class Recorder(SupervisedPlugin):
    """What each training iteration sees, from inside Avalanche's loop (after the strategy's
    own plugins)."""

    def __init__(self, built):
        super().__init__()
        self.built = built
        self.iterations = []
        self.cur_j = []

    def before_training_exp(self, strategy, **kwargs):
        self.cur_j.append(dict(strategy.model.cur_j))

    def after_forward(self, strategy, **kwargs):
        replay = self.built.latent_replay
        split = replay.split
        lower = list(split.lower.parameters())
        upper_bn = [m for m in split.upper.modules() if isinstance(m, nn.BatchNorm2d)]
        self.iterations.append(
            {
                "experience": strategy.clock.train_exp_counter,
                "current": len(strategy.mb_x),
                "labels": strategy.mb_y.clone(),
                "replayed": replay.replayed_in_step,
                "lower_frozen": not any(p.requires_grad for p in lower),
                "lower_eval": not any(m.training for m in split.lower.modules()),
                "upper_trains": all(p.requires_grad for p in split.upper.parameters()),
                "upper_bn_training": [m.training for m in upper_bn],
                "grad_bits": {
                    layer.output_gradient_quant.bits
                    for layer in split.upper.modules()
                    if isinstance(layer, BinaryConv2d)
                },
            }
        )


def trained(stream, name, params, experiences=3, backbone="tiny_bnn", **options):
    model = fresh(stream, backbone, **options)
    built = build_strategy(name, model=model, params={**SHORT, **params})
    recorder = Recorder(built)
    built.template.plugins.append(recorder)
    memories, matrix = [], []
    for experience in stream.train_stream[:experiences]:
        built.train(experience)
        memories.append(built.latent_replay.buffer.labels.clone())
        matrix.append(accuracy_row(model, stream.test_views))
    recorder.matrix = matrix
    return built, recorder, memories


@pytest.fixture(scope="module")
def ar1(stream):
    """AR1* (its defaults, short schedules) over three experiences of tiny_bnn, and the
    backbone's parameters before training."""
    before = [p.detach().clone() for p in fresh(stream).parameters()]
    return (*trained(stream, "ar1_star", {}, experiences=3), before)


@pytest.fixture(scope="module")
def hq_lr(stream):
    return trained(stream, "hq_cwr_star_lr", {"grad_bits": 8}, experiences=2)


def iterations(recorder, experience):
    return [it for it in recorder.iterations if it["experience"] == experience]


def counts(labels) -> dict[int, int]:
    result: dict[int, int] = {}
    for label in labels:
        result[int(label)] = result.get(int(label), 0) + 1
    return result


# -- what trains when ------------------------------------------------------------------------


def test_ar1_freezes_the_layers_below_the_latent_layer_from_the_first_batch(ar1):
    built, recorder, _, before = ar1
    assert all(it["lower_frozen"] and it["lower_eval"] for it in recorder.iterations)
    assert all(it["upper_trains"] for it in recorder.iterations)
    split = built.latent_replay.split
    lower = {id(p) for p in split.lower.parameters()}
    trained_above = {
        id(p) for p in [*split.upper.parameters(), *built.model.classifier.parameters()]
    }
    changed = set()
    for old, new in zip(before, built.model.parameters(), strict=True):
        if not torch.equal(old, new):
            changed.add(id(new))
    assert changed and not changed & lower and changed <= trained_above


def test_hq_lr_learns_the_first_experience_whole_then_freezes_below_the_latent_layer(hq_lr):
    _, recorder, _ = hq_lr
    assert not any(it["lower_frozen"] for it in iterations(recorder, 0))
    assert all(it["lower_frozen"] and it["lower_eval"] for it in iterations(recorder, 1))


def test_hq_lr_quantizes_the_gradients_above_the_latent_layer_after_the_first_experience(hq_lr):
    _, recorder, _ = hq_lr
    assert all(it["grad_bits"] == {32} for it in iterations(recorder, 0))
    assert all(it["grad_bits"] == {8} for it in iterations(recorder, 1))


def test_upper_batchnorm_keeps_the_first_experience_statistics_by_default(ar1):
    _, recorder, _, _ = ar1
    assert all(all(it["upper_bn_training"]) for it in iterations(recorder, 0))
    assert not any(any(it["upper_bn_training"]) for it in iterations(recorder, 1))


def test_batch_renormalization_keeps_the_state_dict_names(stream):
    keys = list(fresh(stream).state_dict())
    built, _, _ = trained(stream, "ar1_star", {"batchnorm": "renorm"}, experiences=2)
    upper = built.latent_replay.split.upper.modules()
    renormalized = [m for m in upper if isinstance(m, BatchRenorm2d)]
    assert renormalized and all(m.momentum == 5e-5 for m in renormalized)
    assert list(built.model.state_dict()) == keys


# -- minibatches and CWR* counts ---------------------------------------------------------------


def test_later_minibatches_join_the_reference_share_of_replayed_patterns_in_memory_order(ar1):
    # experience 1: 40 current patterns, a memory of 60 patterns of experience 0, minibatch 16:
    # (40 + 60) // 16 = 6 minibatches, 40 // 6 = 6 current and 10 replayed patterns each; 7
    # minibatches per epoch (the last of 4 current patterns, the memory used up)
    _, recorder, memories, _ = ar1
    first, later = iterations(recorder, 0), iterations(recorder, 1)
    assert all(it["replayed"] == 0 and it["current"] == 16 for it in first)
    assert [it["current"] for it in later] == [6] * 6 + [4]
    assert [it["replayed"] for it in later] == [10] * 6 + [0]
    replayed_labels = torch.cat([it["labels"][it["current"] :] for it in later])
    assert torch.equal(replayed_labels, memories[0])


def test_consolidation_counts_the_replayed_patterns(ar1, stream):
    _, recorder, memories, _ = ar1
    for experience in (1, 2):
        current = stream.train_stream[experience].dataset.targets
        expected = counts([*current, *memories[experience - 1].tolist()])
        recorded = {label: n for label, n in recorder.cur_j[experience].items() if n}
        assert recorded == expected, experience


def test_the_memory_holds_the_first_experience_then_shares_it(ar1, stream):
    _, _, memories, _ = ar1
    first = set(stream.train_stream[0].dataset.targets)
    second = set(stream.train_stream[1].dataset.targets)
    assert len(memories[0]) == len(memories[1]) == 60  # min(rm_sz, 80)
    assert set(memories[0].tolist()) <= first
    assert sum(int(label) in second for label in memories[1]) == 30  # min(60 // 2, 40)


# -- 1-bit against float memories --------------------------------------------------------------


def test_one_bit_and_float_memories_give_the_same_ar1_results_on_a_binary_input_layer(stream):
    # vgg_small_bnn at width 1/8 on 16 x 16 images: the last unit reads 4c = 64 channels of
    # 4 x 4, the sign of each: 60 patterns x 1024 values / 8 = 7 680 bytes, x 32 in float
    runs = {}
    for bits in (1, 32):
        built, recorder, _ = trained(
            stream,
            "ar1_star",
            {"latent_bits": bits},
            experiences=2,
            backbone="vgg_small_bnn",
            width=0.125,
        )
        runs[bits] = (built, recorder)
    (one_bit, one_bit_run), (floating, float_run) = runs[1], runs[32]
    assert one_bit_run.matrix == float_run.matrix
    assert one_bit.latent_replay.buffer.payload_bytes == 60 * 64 * 4 * 4 // 8 == 7_680
    assert floating.latent_replay.buffer.payload_bytes == 60 * 64 * 4 * 4 * 4 == 32 * 7_680
    signs, labels = one_bit.latent_replay.buffer.patterns(0, 60)
    values, same_labels = floating.latent_replay.buffer.patterns(0, 60)
    assert torch.equal(signs, binary_sign(values)) and torch.equal(labels, same_labels)
    assert torch.equal(one_bit.model.classifier.weight, floating.model.classifier.weight)


def test_the_results_carry_the_memory_payload(stream):
    # tiny_bnn on 16 x 16 images: its last unit reads 64 channels of 4 x 4; float32 memory of
    # 60 patterns: 60 x 1024 x 4 bytes
    two = dataclasses.replace(
        stream,
        benchmark=SimpleNamespace(train_stream=stream.train_stream[:2]),
        test_views=stream.test_views[:2],
        classes_per_experience=stream.classes_per_experience[:2],
    )
    spec = RunSpec.of("tiny_bnn", stream.image_shape)
    sizes = []
    result = run_strategy(
        two,
        spec,
        strategy="ar1_star",
        params=SHORT,
        checkpoint=None,
        seed=0,
        on_experience=lambda index, info: sizes.append(info["replay_buffer_bytes"]),
    )
    assert result.replay_buffer_bytes == 60 * 64 * 4 * 4 * 4
    assert sizes == [result.replay_buffer_bytes] * 2


# -- parameters ------------------------------------------------------------------------------


def test_ar1_defaults_are_the_references():
    # ar1-pytorch params.cfg (2020-05-06) and Avalanche's AR1: rm_sz 1500, mb 128, 4 epochs,
    # SGD with momentum 0.9, l2 0.0005, inc_lr 0.001 (ar1-pytorch params.cfg of 2020-04-09),
    # no SI; the memory stores float32
    params = strategy_params("ar1_star")
    assert (params.rm_sz, params.batch_size, params.epochs) == (1500, 128, 4)
    assert (params.optimizer, params.momentum, params.weight_decay) == ("sgd", 0.9, 5e-4)
    assert (params.lr, params.si_lambda, params.latent_bits) == (0.001, 0.0, 32)


def test_published_ar1_declares_only_its_departures_and_names_changed_values():
    departures = list(strategy_params("ar1_star").departures)
    assert strategy_params("ar1_star").deviations() == departures
    assert strategy_params("ar1_star", {"latent_bits": 8}).deviations() == [
        *departures,
        "latent_bits=8 (paper: 32)",
    ]
    assert "Batch Renormalization" in " ".join(departures)


def test_si_regularizes_everything_but_the_head(stream):
    built = build_strategy("ar1_star", model=fresh(stream), params={"si_lambda": 1.0})
    (si,) = [p for p in built.template.plugins if isinstance(p, SynapticIntelligencePlugin)]
    assert si.excluded_parameters == {"classifier"} and si.si_lambda == [1.0]
    plain = build_strategy("ar1_star", model=fresh(stream), params={})
    assert not any(isinstance(p, SynapticIntelligencePlugin) for p in plain.template.plugins)


def test_ar1_refuses_a_model_it_cannot_cut(stream):
    from cycl_bench.errors import UserError

    headless = nn.Sequential(nn.Flatten(), nn.Linear(12, 4, bias=False))
    with pytest.raises(UserError, match="needs a cycl_bench backbone"):
        build_strategy("ar1_star", model=headless, params={})
    with pytest.raises(UserError, match="latent_bits=1 needs a latent layer"):
        build_strategy("ar1_star", model=fresh(stream), params={"latent_bits": 1})


# -- training BitOPs -------------------------------------------------------------------------


class HandCounted(Backbone):
    """A float backbone whose MACs are counted by hand on 1 x 4 x 4 inputs: a 3x3 stem (1 -> 2
    channels, 2 x 4 x 4 outputs x 9 = 288 MACs), a 1x1 unit (2 -> 2: 32 outputs x 2 = 64), a
    2 -> 4 head (8)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.unit = nn.Conv2d(2, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2, 4, bias=False)

    def feature_stages(self):
        return [self.stem, self.unit]

    def features(self, x):
        return self.pooled(self.unit(self.stem(x)))


def test_training_bitops_price_current_patterns_whole_and_replayed_ones_above_the_latent_layer():
    torch.manual_seed(0)
    x = torch.randn(40, 1, 4, 4)
    y = torch.arange(40) % 2 + 2 * (torch.arange(40) >= 20)  # classes 0, 1 then 2, 3
    benchmark = nc_benchmark(
        TensorDataset(x, y),
        TensorDataset(x, y),
        n_experiences=2,
        task_labels=False,
        seed=0,
        fixed_class_order=[0, 1, 2, 3],
    )
    model = HandCounted()
    params = {**SHORT, "batch_size": 8, "rm_sz": 20, "latent_layer": 1, "batchnorm": "recalibrate"}
    built = build_strategy("ar1_star", model=model, params=params)
    meter = TrainingCostMeter(built, (1, 4, 4))
    built.template.plugins.append(meter)
    f = 32 * 32  # float: every product 32 x 32 bits
    # a current pattern: stem forward only (frozen, nothing flows back into the image), unit
    # forward + weight gradient (its input comes from the frozen stem), head forward + input
    # gradient + weight gradient
    current = 288 * f + 2 * 64 * f + 3 * 8 * f
    replayed = 2 * 64 * f + 3 * 8 * f  # from the latent layer on
    built.train(benchmark.train_stream[0])  # 20 patterns, one epoch, nothing to replay
    assert meter.total_bitops == 20 * current
    # experience 1: 20 current patterns and the memory's 20: (20 + 20) // 8 = 5 minibatches of
    # 4 + 4
    built.train(benchmark.train_stream[1])
    assert meter.total_bitops == 20 * current + 20 * current + 20 * replayed
    assert meter.cost.fp32_bitops == meter.total_bitops  # float model: no reduction


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"latent_bits": True}, "latent_bits=True must be one of 1, 8, 32, auto"),
        ({"latent_bits": 4}, "latent_bits=4 must be one of 1, 8, 32, auto"),
        ({"batchnorm": "bn"}, "batchnorm='bn' must be one of frozen, recalibrate, renorm"),
        ({"rm_sz": 0}, "rm_sz=0 must be"),
        ({"si_lambda": -1.0}, "si_lambda=-1.0 must be a number >= 0"),
    ],
)
def test_a_bad_latent_replay_parameter_is_a_one_line_error(params, expected):
    from cycl_bench.errors import UserError

    with pytest.raises(UserError) as error:
        strategy_params("ar1_star", params)
    assert expected in str(error.value) and "\n" not in str(error.value)
