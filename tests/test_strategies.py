"""Strategy registry, parameter validation, the training protocol and the CWR* freezing rules."""

import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cycl_bench.continual.loop import build_model, seed_everything
from cycl_bench.errors import UserError
from cycl_bench.registry import BENCHMARKS, STRATEGIES
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy, strategy_defaults, strategy_params
from cycl_bench.strategies.base import ProtocolParams
from cycl_bench.strategies.protocol import TrainingProtocol

PAPER_STRATEGIES = ["ar1_star", "cumulative", "cwr_star", "ewc", "hq_cwr_star"]
PAPER_STRATEGIES += ["hq_cwr_star_lr", "lwf", "naive", "replay"]
SHORT = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 0}

# The defaults written out from the sources, not from the code: the protocol of the CWR* and
# AR1* papers (ar1-pytorch params.cfg: SGD, momentum 0.9, lr 0.001, l2 0.0005, 4 epochs,
# minibatch 128 for every batch), the same for every strategy, with the suite's floor of 50
# steps per experience; CWR* as published (no row rescaling), the hybrid head rounding to
# nearest on each tensor's own range as the authors' code does; each strategy's own parameters
# as README.md's strategy table gives them.
PROTOCOL = {"batch_size": 128, "first_lr": 0.001, "first_epochs": 4, "lr": 0.001, "epochs": 4}
PROTOCOL |= {"min_steps": 50, "momentum": 0.9, "weight_decay": 0.0005, "first_optimizer": "sgd"}
SGD = PROTOCOL | {"optimizer": "sgd"}
CWR = PROTOCOL | {"optimizer": "sgd"}
CWR |= {"latent_cache": True, "equal_row_norms": False}
DEFAULTS = {
    "naive": SGD,
    "cumulative": SGD,
    "ewc": SGD | {"ewc_lambda": 1000.0, "fisher_clip": None},
    "replay": SGD | {"mem_size": 500},
    "lwf": SGD | {"alpha": 1.0, "temperature": 2.0},
    "cwr_star": CWR,
    "hq_cwr_star": CWR
    | {"grad_bits": 16, "head_bits": 8, "rounding": "nearest"}
    | {"storage_grid": "min_max"},
    # AR1*: ar1-pytorch params.cfg (inc_lr 0.001 in its 2020-04-09 version), rm_sz 1500,
    # no SI, float latent activations; the hybrid head with latent replay at 1 bit where the
    # latent layer reads only signs (auto)
    "ar1_star": SGD
    | {"lr": 0.001, "rm_sz": 1500, "latent_layer": -1, "latent_bits": 32}
    | {"batchnorm": "frozen", "si_lambda": 0.0},
    "hq_cwr_star_lr": SGD
    | {"rm_sz": 1500, "latent_layer": -1, "latent_bits": "auto", "batchnorm": "frozen"}
    | {"grad_bits": 16, "head_bits": 8, "rounding": "nearest"},
}


@pytest.fixture(scope="module")
def stream():
    return BENCHMARKS.build(
        "core50_nc", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


def fresh_model(stream):
    seed_everything(0)
    return build_model(RunSpec.of("tiny_bnn", stream.image_shape), stream.num_classes)


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
        # at the experience's first step: a fresh optimizer holds no momentum yet
        record.setdefault("optimizer_state", len(strategy.optimizer.state))


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
    assert built.params == DEFAULTS[name] | SHORT


@pytest.mark.parametrize("name", PAPER_STRATEGIES)
def test_defaults_follow_the_on_device_cl_protocol(name):
    defaults = strategy_defaults(name)
    assert defaults == DEFAULTS[name]
    assert list(defaults)[: len(SGD)] == TrainingProtocol.field_names()  # protocol first


def test_the_declared_protocol_is_the_training_protocol():
    assert list(ProtocolParams.model_fields) == TrainingProtocol.field_names()
    given = {"batch_size": 8, "first_lr": 0.1, "epochs": 2, "optimizer": "sgd", "momentum": 0.9}
    protocol = strategy_params("naive", given).protocol()
    assert protocol == TrainingProtocol(**(SGD | given))


def test_an_integer_is_accepted_for_a_number_and_recorded_as_one():
    params = strategy_params("ewc", {"ewc_lambda": 500, "lr": 1})
    assert params.ewc_lambda == 500.0 and params.lr == 1.0


def bad_value(name: str, params: dict) -> str:
    with pytest.raises(UserError) as error:
        strategy_params(name, params)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("replay", {"mem_size": True}, "mem_size=True must be an integer from 1 to 10000000"),
        ("hq_cwr_star", {"head_bits": True}, "head_bits=True must be an integer from 2 to 16"),
        ("naive", {"epochs": 2.0}, "epochs=2.0 must be an integer from 1 to 10000"),
        ("ewc", {"ewc_lambda": True}, "ewc_lambda=True must be a number >= 0"),
        ("cwr_star", {"latent_cache": 1}, "latent_cache=1 must be true or false"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_one_line_error_saying_what_it_must_be(
    name, params, expected
):
    assert expected in bad_value(name, params)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("hq_cwr_star", {"head_bits": 17}, "head_bits=17 must be an integer from 2 to 16"),
        ("naive", {"momentum": 1.0}, "momentum=1.0 must be a number >= 0 and < 1"),
        ("naive", {"first_lr": 0}, "first_lr=0 must be a positive number"),
        ("naive", {"min_steps": -1}, "min_steps=-1 must be an integer from 0 to 10000000"),
        ("lwf", {"temperature": 0.0}, "temperature=0.0 must be a number >= 1e-06"),
        ("naive", {"optimizer": "rmsprop"}, "optimizer='rmsprop' must be one of adam, sgd"),
        ("hq_cwr_star", {"grad_bits": 33}, "grad_bits=33 is out of range"),
    ],
)
def test_a_value_out_of_range_is_a_one_line_error_saying_the_range(name, params, expected):
    assert expected in bad_value(name, params)


def test_unknown_strategy_lists_the_known_ones(stream):
    with pytest.raises(UserError, match="cwr_star.*hq_cwr_star"):
        build_strategy("cwr", model=fresh_model(stream), params={})


def test_unknown_parameter_lists_the_valid_ones(stream):
    message = r"unknown parameter 'mem_sise' for strategy 'replay' \(did you mean 'mem_size'\?\)"
    with pytest.raises(UserError, match=message + r"; valid parameters: batch_size, epochs, "):
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


def test_cwr_trains_the_whole_network_first_like_every_strategy_then_the_head_alone(
    stream,
):
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
        assert record["lr"] == 0.001 and record["optimizer_state"] == 0
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
    assert [r["optimizer"] for r in recorder.experiences] == ["SGD", "SGD"]
    assert all(r["bn_training"] and r["stem_trainable"] for r in recorder.experiences)


def test_published_configurations_declare_no_deviation_and_variants_name_theirs():
    def changed(name, given=None):
        return [d for d in strategy_params(name, given).deviations() if "(paper:" in d]

    assert strategy_params("cwr_star").deviations() == []
    assert changed("hq_cwr_star") == changed("hq_cwr_star", {"grad_bits": 8}) == []
    assert changed("cwr_star", {"equal_row_norms": True}) == ["equal_row_norms=true (paper: false)"]
    assert changed("hq_cwr_star", {"rounding": "stochastic", "storage_grid": "power_of_two"}) == [
        "rounding=stochastic (paper: nearest)",
        "storage_grid=power_of_two (paper: min_max)",
    ]


def test_every_published_strategy_names_its_paper_and_the_bounds_none():
    for name in STRATEGIES.names():
        paper = strategy_params(name).paper
        assert bool(paper) == (name not in ("naive", "cumulative")), name
    # the Avalanche implementations that differ from their papers say how, whatever the values
    assert "Fisher" in strategy_params("ewc").deviations()[0]


def test_the_core50_authors_ewc_sums_the_importances_and_clips_them():
    from avalanche.training.utils import ParamData

    from cycl_bench.strategies.catalog import ClippedFisherEWC

    plugin = ClippedFisherEWC(ewc_lambda=1.0, clip=0.5)
    first = {"w": ParamData("w", init_tensor=torch.tensor([0.1, 0.4, 0.9]))}
    second = {"w": ParamData("w", init_tensor=torch.tensor([0.3, 0.3, 0.0]))}
    plugin.update_importances(first, 0)
    plugin.update_importances(second, 1)
    # hand count: 0.1 + 0.3, min(0.4 + 0.3, 0.5), min(0.9 + 0.0, 0.5)
    assert plugin.importances[1]["w"].data.tolist() == pytest.approx([0.4, 0.5, 0.5])


def test_ewc_with_a_fisher_clip_is_the_core50_authors_form_and_says_so(stream):
    params = {**SHORT, "ewc_lambda": 1e6, "fisher_clip": 0.001}
    built = build_strategy("ewc", model=fresh_model(stream), params=params)
    from cycl_bench.strategies.catalog import ClippedFisherEWC

    assert any(isinstance(p, ClippedFisherEWC) for p in built.template.plugins)
    assert "fisher_clip=0.001 (paper: none)" in strategy_params("ewc", params).deviations()
