"""Strategy registry, parameter validation, the training protocol and the CWR* freezing rules."""

import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.evaluation.loop import build_model, seed_everything
from cycl_bench.registry import BENCHMARKS, STRATEGIES
from cycl_bench.strategies import build_strategy, strategy_defaults

PAPER_STRATEGIES = ["cumulative", "cwr_star", "ewc", "hq_cwr_star", "lwf", "naive", "replay"]
SHORT = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 0}


@pytest.fixture(scope="module")
def stream():
    return BENCHMARKS.build(
        "core50_nc", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


def fresh_model(stream):
    seed_everything(0)
    return build_model(stream, "tiny_bnn", {}, None)


class Recorder(SupervisedPlugin):
    """What the strategy trains with, seen from inside Avalanche's loop."""

    def __init__(self):
        super().__init__()
        self.experiences = []

    def before_training_exp(self, strategy, **kwargs):
        self.experiences.append({"optimizer": type(strategy.optimizer).__name__, "epochs": 0})

    def after_training_epoch(self, strategy, **kwargs):
        self.experiences[-1]["epochs"] += 1

    def before_training_iteration(self, strategy, **kwargs):
        record = self.experiences[-1]
        record["lr"] = strategy.optimizer.param_groups[0]["lr"]
        record["bn_training"] = strategy.model.stem.bn.training
        record["stem_trainable"] = strategy.model.stem.conv.weight.requires_grad
        record["optimizer_state"] = len(strategy.optimizer.state)


def test_every_paper_strategy_is_registered():
    assert STRATEGIES.names() == PAPER_STRATEGIES


@pytest.mark.parametrize("name", PAPER_STRATEGIES)
def test_every_strategy_trains_two_experiences(stream, name):
    model = fresh_model(stream)
    built = build_strategy(name, model=model, params=SHORT)
    before = [p.detach().clone() for p in model.parameters()]
    for experience in stream.train_stream[:2]:
        built.train(experience)
    assert built.name == name
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert built.params == {**strategy_defaults(name), **SHORT}


def test_defaults_follow_the_on_device_cl_protocol():
    cwr = strategy_defaults("cwr_star")
    expected = {"first_lr": 0.0025, "lr": 0.0025, "batch_size": 50, "first_epochs": 10}
    expected |= {"epochs": 5, "min_steps": 50, "momentum": 0.0}
    # CWR* as its authors ran it: one plain SGD for every experience
    assert cwr.items() >= {**expected, "first_optimizer": "sgd", "optimizer": "sgd"}.items()
    assert cwr["equal_row_norms"] is True
    naive = strategy_defaults("naive")
    assert naive.items() >= {**expected, "first_optimizer": "adam", "optimizer": "adam"}.items()
    hybrid = strategy_defaults("hq_cwr_star")
    assert hybrid["grad_bits"] == 16 and hybrid["head_bits"] == 8
    assert hybrid["rounding"] == "stochastic" and hybrid["latent_cache"] is True


def test_unknown_strategy_lists_the_known_ones(stream):
    with pytest.raises(UserError, match="cwr_star.*hq_cwr_star"):
        build_strategy("cwr", model=fresh_model(stream), params={})


def test_unknown_parameter_lists_the_valid_ones(stream):
    with pytest.raises(UserError, match=r"no parameter 'mem_sise'.*mem_size.*valid: batch_size"):
        build_strategy("replay", model=fresh_model(stream), params={"mem_sise": 10})


@pytest.mark.parametrize("grad_bits", [1, 33, 16.0, "16", True])
def test_grad_bits_outside_two_to_thirty_two_is_refused(stream, grad_bits):
    with pytest.raises(UserError, match="grad_bits"):
        build_strategy("hq_cwr_star", model=fresh_model(stream), params={"grad_bits": grad_bits})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rounding": "up"}, "rounding"),
        ({"head_bits": 1}, "head_bits"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1}, "lr"),
        ({"latent_cache": "yes"}, "latent_cache"),
    ],
)
def test_invalid_parameter_values_are_user_errors(stream, params, message):
    with pytest.raises(UserError, match=message):
        build_strategy("hq_cwr_star", model=fresh_model(stream), params=params)


@pytest.mark.parametrize("name", ["cwr_star", "hq_cwr_star"])
def test_cwr_needs_a_bias_free_head_named_classifier(name):
    headless = nn.Sequential(nn.Flatten(), nn.Linear(12, 4, bias=False))
    with pytest.raises(UserError, match="no linear head layer 'classifier'"):
        build_strategy(name, model=headless, params={})
    biased = nn.Module()
    biased.classifier = nn.Linear(12, 4)
    with pytest.raises(UserError, match="has a bias"):
        build_strategy(name, model=biased, params={})


def test_cwr_trains_the_whole_network_first_then_a_fresh_sgd_on_a_frozen_backbone(stream):
    model = fresh_model(stream)
    params = {"first_epochs": 2, "epochs": 3, "batch_size": 16, "min_steps": 0}
    built = build_strategy("cwr_star", model=model, params=params)
    recorder = Recorder()
    built.template.plugins.append(recorder)
    for experience in stream.train_stream[:3]:
        built.train(experience)
    first, *later = recorder.experiences
    assert first["optimizer"] == "SGD" and first["epochs"] == 2
    assert first["bn_training"] and first["stem_trainable"]
    for record in later:
        assert record["optimizer"] == "SGD" and record["epochs"] == 3
        assert record["lr"] == 0.0025 and record["optimizer_state"] == 0
        assert not record["bn_training"] and not record["stem_trainable"]


def test_small_experiences_train_more_epochs_to_reach_min_steps(stream):
    # experience 0 holds 10 objects x 1 image x 8 sessions = 80 images: 5 batches of 16;
    # the later ones 40 images: 3 batches
    model = fresh_model(stream)
    params = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 12}
    built = build_strategy("naive", model=model, params=params)
    recorder = Recorder()
    built.template.plugins.append(recorder)
    for experience in stream.train_stream[:2]:
        built.train(experience)
    assert [r["epochs"] for r in recorder.experiences] == [3, 4]  # ceil(12/5), ceil(12/3)


def test_batchnorm_statistics_are_recomputed_over_the_experience_after_training(stream):
    model = fresh_model(stream)
    built = build_strategy("naive", model=model, params=SHORT)
    experience = stream.train_stream[0]
    built.train(experience)
    inputs = []
    hook = model.stem.bn.register_forward_hook(lambda module, args, out: inputs.append(args[0]))
    model.eval()
    with torch.no_grad():
        model(torch.stack([experience.dataset[i][0] for i in range(len(experience.dataset))]))
    hook.remove()
    # 80 images in 5 full batches: the average of the batch means is the mean of every input
    expected = inputs[0].mean(dim=(0, 2, 3))
    assert torch.allclose(model.stem.bn.running_mean, expected, atol=1e-4)
    assert model.stem.bn.momentum == 0.1  # the pass leaves the layer as it found it


def test_whole_network_strategies_keep_training_the_backbone(stream):
    model = fresh_model(stream)
    built = build_strategy("naive", model=model, params=SHORT)
    recorder = Recorder()
    built.template.plugins.append(recorder)
    for experience in stream.train_stream[:2]:
        built.train(experience)
    assert [r["optimizer"] for r in recorder.experiences] == ["Adam", "Adam"]
    assert all(r["bn_training"] and r["stem_trainable"] for r in recorder.experiences)
