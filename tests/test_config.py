"""Shipped configs load and validate; overrides and their errors behave as documented."""

import re
import subprocess
import sys

import pytest

from cycl_bench import config
from cycl_bench.errors import UserError
from cycl_bench.params import check
from cycl_bench.registry import STRATEGIES


@pytest.mark.parametrize("experiment", config.shipped_experiments())
def test_every_shipped_experiment_resolves(experiment):
    resolved = config.resolve(experiment)
    assert resolved.experiment == experiment
    assert resolved.seeds == [0, 1, 2]
    assert resolved.pretrain.schedule == "cyclic"
    assert (resolved.pretrain.min_bits, resolved.pretrain.max_bits) == (2, 6)
    fast = config.resolve(experiment, fast=True)
    assert fast.fast and fast.backbone.name == "tiny_bnn"


def test_the_four_experiments_of_the_suite_are_shipped():
    assert set(config.shipped_experiments()) >= {
        "core50_nc",
        "core50_ni",
        "split_cifar10",
        "split_cifar100",
    }


def test_strategy_variants_name_the_strategy_they_use():
    resolved = config.resolve("core50_nc")
    name, params = resolved.strategy_of("hq_cwr_star_8")
    assert name == "hq_cwr_star" and params["grad_bits"] == 8
    assert resolved.strategy_of("hq_cwr_star")[1]["grad_bits"] == 16
    assert resolved.strategy_of("cwr_star_rn") == (
        "cwr_star",
        resolved.strategy_of("cwr_star")[1] | {"equal_row_norms": True},
    )
    assert resolved.strategy_of("hq_cwr_star_sr")[1]["rounding"] == "stochastic"


def test_every_strategy_of_an_experiment_shares_the_first_experience_protocol():
    # the CWR*/AR1* papers' (ar1-pytorch params.cfg): SGD, momentum 0.9, lr 0.001, l2 0.0005,
    # 4 epochs, minibatch 128
    shared = {"first_optimizer": "sgd", "first_lr": 0.001, "first_epochs": 4, "batch_size": 128}
    shared |= {"momentum": 0.9, "weight_decay": 0.0005}
    for experiment in ("core50_nc", "core50_ni", "split_cifar10", "split_cifar100"):
        resolved = config.resolve(experiment)
        for entry in resolved.strategy:
            params = resolved.strategy_of(entry)[1]
            assert {key: params[key] for key in shared} == shared, (experiment, entry)


def test_settings_come_before_the_fast_preset_and_overrides():
    resolved = config.resolve("core50_nc", fast=True, overrides=["strategy.naive.first_lr=0.01"])
    assert resolved.strategy_of("naive")[1]["min_steps"] == 20  # the preset's
    assert resolved.strategy_of("naive")[1]["first_epochs"] == 4  # the papers', kept by the preset
    assert resolved.strategy_of("naive")[1]["first_lr"] == 0.01  # the override's
    assert resolved.strategy_of("ewc")[1]["first_lr"] == 0.001  # the experiment's setting


def test_overrides_take_yaml_values_and_dotted_keys():
    resolved = config.resolve(
        "core50_nc",
        overrides=["seeds=[4, 5]", "strategy.hq_cwr_star.grad_bits=8", "pretrain.cycles=4"],
    )
    assert resolved.seeds == [4, 5]
    assert resolved.strategy["hq_cwr_star"]["grad_bits"] == 8
    assert resolved.pretrain.cycles == 4


def test_a_star_sets_a_key_in_every_section():
    resolved = config.resolve("core50_nc", overrides=["strategy.*.epochs=1"])
    assert all(params["epochs"] == 1 for params in resolved.strategy.values())


def test_flags_apply_before_overrides():
    resolved = config.resolve("core50_nc", overrides=["seeds=[9]"], seeds=[1], data="synthetic")
    assert resolved.seeds == [9]
    assert resolved.data == "synthetic"


def test_an_unknown_key_is_named_with_the_closest_valid_one():
    with pytest.raises(UserError, match=r"'pretrain.min_bitz' \(did you mean 'min_bits'\?\)"):
        config.resolve("core50_nc", overrides=["pretrain.min_bitz=3"])
    with pytest.raises(UserError, match=r"'sedes' \(did you mean 'seeds'\?\)"):
        config.resolve("core50_nc", overrides=["sedes=[0]"])


@pytest.mark.parametrize("override", ["seeds", "=3", "pretrain..cycles=2", "seeds=[0"])
def test_malformed_overrides_are_user_errors(override):
    with pytest.raises(UserError):
        config.resolve("core50_nc", overrides=[override])


def test_bad_values_are_user_errors():
    with pytest.raises(UserError, match="max_bits"):
        config.resolve("core50_nc", overrides=["pretrain.max_bits=12"])
    with pytest.raises(UserError, match="wandb"):
        config.resolve("core50_nc", overrides=["wandb=sometimes"])


def test_an_unknown_experiment_lists_the_shipped_ones():
    with pytest.raises(UserError, match="did you mean 'core50_nc'.*shipped: core50_nc"):
        config.resolve("core50nc")


def test_the_resolved_config_round_trips_through_yaml(tmp_path):
    resolved = config.resolve("core50_ni", fast=True, data="synthetic")
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml(resolved))
    assert config.load_resolved(path) == resolved


def test_configs_are_found_from_a_non_editable_install(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            ".",
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import cycl_bench, cycl_bench.config as c; "
        "print(cycl_bench.__file__); print(','.join(c.shipped_experiments())); "
        "print(c.load_part('strategies', 'hq_cwr_star_8'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    installed_at, experiments, part = done.stdout.splitlines()
    assert installed_at.startswith(str(target))
    assert "core50_nc" in experiments.split(",")
    assert "grad_bits" in part


def test_every_registered_benchmark_has_a_shipped_part_with_a_protocol():
    from cycl_bench.registry import BENCHMARKS

    for name in BENCHMARKS.names():
        assert config.load_part("benchmarks", name)["name"] == name
        assert len(config.shipped_protocol_hash(name)) == 16


def test_a_benchmark_can_be_swapped_by_name():
    resolved = config.resolve("split_cifar100", overrides=["benchmark.name=split_cifar100_50_5x10"])
    assert resolved.benchmark.name == "split_cifar100_50_5x10"


def test_selected_strategies_are_all_the_config_keeps():
    resolved = config.resolve("core50_nc", strategies=["naive", "cwr_star"])
    assert sorted(resolved.strategy) == ["cwr_star", "naive"]
    with pytest.raises(UserError, match=r"strategy 'cwr' is neither in this run nor a shipped"):
        config.resolve("core50_nc", strategies=["cwr"])


def test_any_shipped_strategy_joins_an_experiment_under_its_settings():
    resolved = config.resolve("split_cifar10", strategies=["lwf", "cwr_star"], fast=True)
    assert list(resolved.strategy) == ["cwr_star", "lwf"]  # the experiment's, then the added
    shared = ("first_optimizer", "first_lr", "momentum", "weight_decay", "min_steps")
    lwf, cwr = resolved.strategy_of("lwf")[1], resolved.strategy_of("cwr_star")[1]
    assert {key: lwf[key] for key in shared} == {key: cwr[key] for key in shared}
    assert lwf["first_lr"] == 0.001 and lwf["min_steps"] == 20  # the settings, the preset


@pytest.mark.parametrize(
    "text, problem",
    [
        ("experiment: core50_nc\nseeds: [0, 1\nfast: true\n", "is not valid YAML (line 3, column"),
        ("- just\n- a list\n", "is not a run config (no key: value mapping)"),
        ("experiment: core50_nc\n", "config key 'benchmark' is required"),
    ],
)
def test_a_broken_run_config_is_one_line_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        config.load_resolved(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and problem in message and "start a new run" in message


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ("[0, 0]", "seed 0 is given twice"),
        ("[true]", "config key 'seeds.0': Input should be a valid integer"),
        ("[-1]", "greater than or equal to 0"),
        ("[4294967296]", "less than or equal to 4294967295"),  # numpy's seeds end at 2**32 - 1
        ("[1.5]", "valid integer"),
    ],
)
def test_seeds_are_distinct_whole_numbers_a_generator_takes(seeds, message):
    with pytest.raises(UserError, match=re.escape(message)):
        config.resolve("core50_nc", overrides=[f"seeds={seeds}"])
    assert config.resolve("core50_nc", overrides=["seeds=[4294967295, 0]"]).seeds == [2**32 - 1, 0]


def test_an_override_of_an_entry_the_run_does_not_run_is_an_error_not_dropped():
    with pytest.raises(UserError, match=r"strategy\.cwr_stra\.lr .*did you mean 'cwr_star'"):
        config.resolve("core50_nc", overrides=["strategy.cwr_stra.lr=1"], strategies=["cwr_star"])
    with pytest.raises(UserError, match=r"'ewc', which this run does not run"):
        config.resolve("core50_nc", overrides=["strategy.ewc.lr=1"], strategies=["naive"])
    # an entry the overrides add, and select, runs
    added = config.resolve("core50_nc", overrides=["strategy.lwf.use=lwf"], strategies=["lwf"])
    assert list(added.strategy) == ["lwf"]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1.0e+400"])
def test_a_number_that_is_not_finite_is_refused_where_it_is_declared(value):
    with pytest.raises(UserError, match="finite number"):
        config.resolve("core50_nc", overrides=[f"pretrain.lr={value}"])
    strategy = config.resolve("core50_nc", overrides=[f"strategy.cwr_star.lr={value}"])
    params = STRATEGIES.detail("cwr_star", "params")
    with pytest.raises(UserError, match=r"lr=(inf|-inf|nan) must be finite"):
        check(params, strategy.strategy_of("cwr_star")[1], owner="strategy.cwr_star")
