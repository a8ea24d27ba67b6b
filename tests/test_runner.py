"""The experiment runner end to end, on a small synthetic CORe50 NC stream.

One shared run (two strategies, two seeds, W&B offline) is checked for its files; resume and
interruption get runs of their own.
"""

import json
import os
from pathlib import Path

import pytest

from cycl_bench import config as configs
from cycl_bench import runner
from cycl_bench.cli import main
from cycl_bench.evaluation.results import derived_mismatches, load_results

# small enough for the test machine, large enough to learn something
SMALL = [
    "benchmark.options.synthetic.images_per_object=2",
    "benchmark.options.synthetic.test_images_per_object=1",
    "benchmark.options.synthetic.image_size=16",
    "strategy.*.first_epochs=1",
    "strategy.*.epochs=1",
    "strategy.*.min_steps=0",
    "pretrain.epochs=1",
    "pretrain.synthetic_categories=4",
    "pretrain.synthetic_images_per_class=4",
]


def run_cli(*args: str) -> int:
    return main(["run", "core50_nc", "--data", "synthetic", "--fast", *args, *SMALL])


def only_run_dir(out: Path) -> Path:
    (run_dir,) = (out / "core50_nc").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = run_cli("--strategy", "naive", "cwr_star", "--seeds", "0", "1", "--out", str(out))
    assert code == 0
    return only_run_dir(out)


def test_a_run_writes_config_results_plots_and_offline_wandb_runs(shared_run):
    assert (shared_run / "config.yaml").is_file()
    assert sorted(p.name for p in (shared_run / "results").iterdir()) == [
        "cwr_star.json",
        "naive.json",
    ]
    plots = {p.name for p in (shared_run / "plots").iterdir()}
    assert {"accuracy_curves.png", "accuracy_matrix_naive.png", "accuracy_matrix_cwr_star.png"} <= (
        plots
    )
    for plot in (shared_run / "plots").iterdir():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    offline = sorted((shared_run / "wandb").glob("offline-run-*"))
    assert len(offline) == 4  # 2 strategies x 2 seeds
    assert (shared_run / "pretrain" / "pretrain_schedule.png").is_file()


def test_results_files_are_complete_and_self_consistent(shared_run):
    results = load_results(shared_run / "results" / "cwr_star.json")
    assert derived_mismatches(results) == []
    assert [s.seed for s in results.per_seed] == [0, 1]
    assert results.fast is True
    assert results.benchmark.data_source == "synthetic"
    assert results.benchmark.n_experiences == 9
    assert len(results.per_seed[0].accuracy_matrix) == 9
    assert results.method.strategy == "cwr_star"
    assert results.method.params["epochs"] == 1
    assert results.method.pretraining.schedule == "cyclic"
    assert results.config["strategy_entry"] == "cwr_star"
    assert results.per_seed[0].train_bitops > 0
    assert 0 < results.per_seed[0].bitops_reduction_vs_fp32 < 1


def test_results_record_the_precision_that_ran(shared_run):
    """Pretraining quantizes gradients to 8 bits; the continual stage trains with float
    gradients, and the results say so (from the model, not from a parameter)."""
    config = runner.load_run(shared_run)
    assert config.pretrain.grad_bits == 8
    for entry in ("naive", "cwr_star"):
        method = load_results(shared_run / "results" / f"{entry}.json").method
        assert (method.weight_bits, method.activation_bits, method.gradient_bits) == (1, 1, 32)


def test_the_resolved_config_reloads_to_the_same_config(shared_run):
    reloaded = runner.load_run(shared_run)
    assert reloaded.seeds == [0, 1]
    assert reloaded.fast and reloaded.data == "synthetic"


def test_compare_prints_the_table_and_show_one_file(shared_run, capsys, tmp_path):
    assert main(["compare", str(shared_run), "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "cwr_star" in table and "naive" in table and "synthetic" in table
    assert (tmp_path / "accuracy_curves.png").is_file()
    assert main(["show", str(shared_run / "results" / "naive.json")]) == 0
    assert "accuracy matrix" in capsys.readouterr().out


def test_compare_refuses_results_of_different_protocols_unless_forced(shared_run, tmp_path):
    data = json.loads((shared_run / "results" / "naive.json").read_text())
    data["benchmark"]["protocol_hash"] = "0000000000000000"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    naive = str(shared_run / "results" / "naive.json")
    assert main(["compare", naive, str(other), "--out", str(tmp_path)]) == 2
    assert main(["compare", naive, str(other), "--out", str(tmp_path), "--force"]) == 0


def matrices(run_dir: Path, entry: str) -> list:
    results = load_results(run_dir / "results" / f"{entry}.json")
    return [(s.seed, s.accuracy_matrix, s.final_accuracy, s.train_bitops) for s in results.per_seed]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    common = ["--strategy", "naive", "hq_cwr_star", "--seeds", "0", "--wandb", "disabled"]
    assert run_cli(*common, "--out", str(tmp_path / "whole")) == 0
    whole = only_run_dir(tmp_path / "whole")

    # the same run, stopped after its first strategy, then resumed
    config = configs.resolve(
        "core50_nc",
        overrides=SMALL,
        fast=True,
        data="synthetic",
        seeds=[0],
        wandb="disabled",
    )
    config.strategy = {k: config.strategy[k] for k in ("naive", "hq_cwr_star")}
    interrupted = runner.start(config, tmp_path / "parts")
    runner.run(config, interrupted, strategies=["naive"], echo=lambda line: None)
    assert not (interrupted / "results" / "hq_cwr_star.json").exists()
    assert main(["run", "--resume", str(interrupted)]) == 0

    for entry in ("naive", "hq_cwr_star"):
        assert matrices(interrupted, entry) == matrices(whole, entry)


def test_an_interrupted_run_keeps_its_config_and_finished_results(tmp_path, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt, what SIGINT raises) right after the first strategy's results
    file is written: a point the test controls, whatever the machine's speed."""
    write_results = runner.write_results

    def write_then_interrupt(results, path):
        written = write_results(results, path)
        if path.name == "cwr_star.json":
            raise KeyboardInterrupt
        return written

    monkeypatch.setattr(runner, "write_results", write_then_interrupt)
    code = run_cli(
        "--strategy", "cwr_star", "naive", "--seeds", "0", "--wandb", "disabled",
        "--out", str(tmp_path),
    )  # fmt: skip
    run_dir = only_run_dir(tmp_path)
    assert code == 130
    assert f"--resume {run_dir}" in capsys.readouterr().err
    assert not (run_dir / "results" / "naive.json").exists()
    assert (run_dir / "config.yaml").is_file()
    assert load_results(run_dir / "results" / "cwr_star.json").per_seed[0].seed == 0


def test_an_unwritable_output_folder_is_a_user_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
            target = tmp_path / "a-file"
            target.write_text("")
        else:
            target = locked
        assert run_cli("--out", str(target)) == 2
    finally:
        locked.chmod(0o700)
    assert "choose a writable folder with --out" in capsys.readouterr().err


def test_a_bad_strategy_parameter_stops_before_any_training(tmp_path, capsys):
    code = run_cli("--out", str(tmp_path), "strategy.cwr_star.bogus=1")
    assert code == 2
    assert "strategy 'cwr_star' has no parameter 'bogus'" in capsys.readouterr().err
    assert not list(tmp_path.glob("core50_nc/*/results/*.json"))
    assert list(tmp_path.glob("core50_nc/*/config.yaml"))
