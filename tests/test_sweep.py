"""`sweep`: experiments x an override grid, one run folder per point, an index, `compare` of it."""

import json
from pathlib import Path

import pytest
from test_runner import SMALL

from cycl_bench.cli import main
from cycl_bench.evaluation.results import load_results
from cycl_bench.sweep import expand, parse_axis, split_values


def test_values_split_at_top_level_commas_only():
    assert split_values("8,16,32") == ["8", "16", "32"]
    assert split_values("[0,1,2]") == ["[0,1,2]"]
    assert split_values("[0,1],[2]") == ["[0,1]", "[2]"]
    assert split_values("{a: 1, b: 2},'x,y'") == ["{a: 1, b: 2}", "'x,y'"]


def test_the_grid_is_every_experiment_times_every_combination():
    points = expand(
        ["core50_nc", "core50_ni"],
        ["strategy.hq_cwr_star.grad_bits=8,16,32", "seeds=[0,1,2]"],
        ["pretrain.epochs=1"],
    )
    assert len(points) == 2 * 3 * 1
    assert points[0].experiment == "core50_nc" and points[3].experiment == "core50_ni"
    assert [p.grid["strategy.hq_cwr_star.grad_bits"] for p in points] == ["8", "16", "32"] * 2
    assert points[1].grid == {"strategy.hq_cwr_star.grad_bits": "16"}  # one value: no axis
    assert points[1].overrides == [
        "pretrain.epochs=1",
        "seeds=[0,1,2]",
        "strategy.hq_cwr_star.grad_bits=16",
    ]


@pytest.mark.parametrize(
    "axis, message",
    [
        ("strategy.hq_cwr_star.grad_bits=", "no values for strategy.hq_cwr_star.grad_bits"),
        ("seeds=[0],,[1]", "an empty value in the list of seeds"),
        ("grad_bits", "give an axis as KEY=V1,V2"),
    ],
)
def test_a_malformed_axis_is_refused(axis, message):
    from cycl_bench.errors import UserError

    with pytest.raises(UserError, match=message):
        parse_axis(axis)


def sweep_cli(out: Path, *args: str) -> int:
    return main(
        ["sweep", "core50_nc", "core50_ni", "--data", "synthetic", "--fast", "--out", str(out),
         "--strategy", "hq_cwr_star", "--seeds", "0", "--wandb", "disabled", *args, *SMALL]
    )  # fmt: skip


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "grid, message",
    [
        ("strategy.hq_cwr_star.grad_bitz=8,16", "unknown parameter 'grad_bitz'"),
        ("pretrain.max_bitz=4,6", "unknown config key 'pretrain.max_bitz'"),
        ("strategy.hq_cwr_star.grad_bits=", "no values for strategy.hq_cwr_star.grad_bits"),
        ("strategy.hq_cwr_star.grad_bits=8,40", "sweep point 2/4"),  # checked before any starts
    ],
)
def test_a_bad_grid_is_one_line_and_starts_nothing(tmp_path, capsys, grid, message):
    assert sweep_cli(tmp_path / "runs", "--grid", grid) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    assert sweep_cli(out, "--grid", "strategy.hq_cwr_star.grad_bits=8,32") == 0
    (found,) = (out / "sweeps").iterdir()
    return found


def test_a_sweep_writes_one_run_per_point_and_an_index(sweep_dir):
    points = json.loads((sweep_dir / "index.json").read_text())["points"]
    assert [(p["experiment"], p["grid"]) for p in points] == [
        (experiment, {"strategy.hq_cwr_star.grad_bits": bits})
        for experiment in ("core50_nc", "core50_ni")
        for bits in ("8", "32")
    ]
    for point in points:
        run_dir = sweep_dir / point["run_dir"]
        assert run_dir.parent.name == point["experiment"]
        results = load_results(run_dir / "results" / "hq_cwr_star.json")
        assert results.benchmark.name == point["experiment"]
        assert results.method.params["grad_bits"] == int(
            point["grid"]["strategy.hq_cwr_star.grad_bits"]
        )
        assert (
            "strategy.hq_cwr_star.grad_bits=" + point["grid"]["strategy.hq_cwr_star.grad_bits"]
            in (point["overrides"])
        )


def test_compare_of_a_sweep_gives_one_table_per_stream_with_the_points_told_apart(
    sweep_dir, tmp_path, capsys
):
    assert main(["compare", str(sweep_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("core50_nc: synthetic data") == 1 and out.count("core50_ni: synthetic") == 1
    assert out.count("hq_cwr_star W1A1G8 ") == 2 and out.count("hq_cwr_star W1A1G32 ") == 2
    assert len(list(tmp_path.glob("accuracy_curves_core50_n*.png"))) == 2


def test_rows_that_would_look_alike_are_labelled_by_what_differs(sweep_dir):
    from cycl_bench.cli.compare import distinct
    from cycl_bench.evaluation.plots import method_labels

    point = json.loads((sweep_dir / "index.json").read_text())["points"][0]
    results = load_results(sweep_dir / point["run_dir"] / "results" / "hq_cwr_star.json")
    other_lr = results.method.model_copy(update={"params": {**results.method.params, "lr": 0.1}})
    rows = [results, results.model_copy(update={"method": other_lr}), results]
    assert len(set(method_labels(rows))) == 1
    labels = method_labels(distinct(rows))
    assert labels == ["hq_cwr_star lr=0.001 #1", "hq_cwr_star lr=0.1", "hq_cwr_star lr=0.001 #2"]


def test_a_large_grid_says_how_far_its_check_is_and_names_the_bad_point(tmp_path, capsys):
    values = ",".join(["8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "40"])
    assert sweep_cli(tmp_path / "runs", "--grid", f"strategy.hq_cwr_star.grad_bits={values}") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[:2] == ["checking sweep points: 1/24", "checking sweep points: 10/24"]
    assert lines[-1].startswith("error: sweep point 12/24 (core50_nc")
    assert not (tmp_path / "runs").exists()
