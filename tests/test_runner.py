"""The experiment runner end to end, on a small synthetic CORe50 NC stream.

One shared run (two strategies, two seeds, W&B offline) is checked for its files; resume and
interruption get runs of their own. Bad input is refused in one line before anything is built
or written.
"""

import hashlib
import json
import os
import platform
import shutil
import signal
from pathlib import Path

import pytest
import reference_metrics
import torch
import yaml

from cycl_bench import run_folder, runner
from cycl_bench.cli import main
from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import SUMMARY_KEYS, load_results

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
    # the test views, counted by hand: 1 image per object in each of the 3 test sessions,
    # 10 objects in the first experience's view, 5 in each later one
    test_sizes = [10 * 3] + [5 * 3] * 8
    assert results.benchmark.test_sizes == test_sizes
    # the derived numbers, recomputed from the README's formulas by the test
    for seed in results.per_seed:
        by_formula = reference_metrics.per_seed(seed.accuracy_matrix, test_sizes)
        for key, value in by_formula.items():
            assert getattr(seed, key) == pytest.approx(value, abs=1e-9), key
    for key in SUMMARY_KEYS:
        mean, std = reference_metrics.mean_std(getattr(s, key) for s in results.per_seed)
        assert results.summary[key].mean == pytest.approx(mean, rel=1e-9, abs=1e-12), key
        assert results.summary[key].std == pytest.approx(std, rel=1e-9, abs=1e-12), key
    assert [s.seed for s in results.per_seed] == [0, 1]
    assert results.fast is True
    assert results.benchmark.data_source == "synthetic"
    assert results.benchmark.n_experiences == 9
    assert len(results.per_seed[0].accuracy_matrix) == 9
    assert results.method.strategy == "cwr_star"
    assert results.method.params["epochs"] == 1
    # the published algorithm: its paper named, no deviation
    assert "Rehearsal-free continual learning" in results.method.paper
    assert results.method.deviations == [] and results.method.untuned == []
    assert results.method.pretraining.schedule == "cyclic"
    assert results.config["strategy_entry"] == "cwr_star"
    assert results.per_seed[0].train_bitops > 0
    assert 0 < results.per_seed[0].bitops_reduction_vs_fp32 < 1
    # every seed records the device of the process that trained it; the file, every device
    cpu = f"cpu ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    assert [s.device for s in results.per_seed] == [cpu] * 2
    assert results.device == cpu


def test_a_hand_edited_number_in_a_written_results_file_is_refused(shared_run, tmp_path):
    data = json.loads((shared_run / "results" / "cwr_star.json").read_text())
    seed = data["per_seed"][1]
    seed["final_accuracy"] += 0.01 if seed["final_accuracy"] < 0.5 else -0.01  # stays in [0, 1]
    edited = tmp_path / "cwr_star.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"per_seed\[1\]\.final_accuracy: stored"):
        load_results(edited)


def test_results_record_the_precision_that_ran(shared_run):
    """Pretraining quantizes gradients to 8 bits; the continual stage trains with float
    gradients, and the results say so (from the model, not from a parameter)."""
    config = run_folder.load_run(shared_run)
    assert config.pretrain.grad_bits == 8
    for entry in ("naive", "cwr_star"):
        method = load_results(shared_run / "results" / f"{entry}.json").method
        assert (method.weight_bits, method.activation_bits, method.gradient_bits) == (1, 1, 32)


def test_every_cell_saves_the_model_its_numbers_came_from(shared_run):
    """models/<entry>-seed<k>.pt, loadable with weights_only=True, hashed in the results file;
    rebuilt, it scores the results file's last row (for CWR*: the consolidated head)."""
    from cycl_bench.continual.loop import accuracy_row
    from cycl_bench.export import load_model

    stream = runner.build_stream(run_folder.load_run(shared_run))
    for entry in ("naive", "cwr_star"):
        for seed in load_results(shared_run / "results" / f"{entry}.json").per_seed:
            path = shared_run / seed.model_file
            assert path == shared_run / "models" / f"{entry}-seed{seed.seed}.pt"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == seed.model_sha256
            assert "state_dict" in torch.load(path, weights_only=True)
            model, saved = load_model(path)
            assert saved.info["strategy_entry"] == entry and saved.info["seed"] == seed.seed
            assert accuracy_row(model, stream.test_views) == seed.accuracy_matrix[-1]


def test_the_resolved_config_reloads_to_the_same_config(shared_run):
    reloaded = run_folder.load_run(shared_run)
    assert reloaded.seeds == [0, 1]
    assert reloaded.fast and reloaded.data == "synthetic"


def test_config_yaml_records_the_selected_strategies_with_every_parameter(shared_run):
    written = yaml.safe_load((shared_run / "config.yaml").read_text())
    assert sorted(written["strategy"]) == ["cwr_star", "naive"]  # --strategy naive cwr_star
    naive, cwr_star = written["strategy"]["naive"], written["strategy"]["cwr_star"]
    assert naive["epochs"] == 1  # the override
    assert naive["lr"] == 0.001 and naive["weight_decay"] == 0.0005  # the defaults, filled in
    assert cwr_star["latent_cache"] is True and cwr_star["equal_row_norms"] is False
    assert cwr_star["optimizer"] == "sgd" and cwr_star["first_optimizer"] == "sgd"


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


def interrupt_after(monkeypatch, file_name: str) -> None:
    """Ctrl-C (KeyboardInterrupt, what SIGINT raises) right after `file_name` is written: a point
    the test controls, whatever the machine's speed."""
    write_results = runner.write_results

    def write_then_interrupt(results, path):
        written = write_results(results, path)
        if path.name == file_name:
            raise KeyboardInterrupt
        return written

    monkeypatch.setattr(runner, "write_results", write_then_interrupt)


def test_a_resumed_run_equals_an_uninterrupted_one_and_runs_only_its_strategies(
    tmp_path, monkeypatch
):
    common = ["--strategy", "naive", "hq_cwr_star", "--seeds", "0", "--wandb", "disabled"]
    assert run_cli(*common, "--out", str(tmp_path / "whole")) == 0
    whole = only_run_dir(tmp_path / "whole")

    # the same run, stopped after its first strategy (the experiment's order), then resumed
    with monkeypatch.context() as patch:
        interrupt_after(patch, "hq_cwr_star.json")
        assert run_cli(*common, "--out", str(tmp_path / "parts")) == 130
    interrupted = only_run_dir(tmp_path / "parts")
    assert not (interrupted / "results" / "naive.json").exists()
    kept = (interrupted / "models" / "hq_cwr_star-seed0.pt").read_bytes()
    # resumed on another machine: an empty cache gets the run folder's own backbone back
    monkeypatch.setenv("CYCL_BENCH_CACHE", str(tmp_path / "another machine"))
    assert main(["run", "--resume", str(interrupted)]) == 0
    (restored,) = (tmp_path / "another machine").glob("*/backbone.pt")
    assert restored.read_bytes() == (whole / "pretrain" / "backbone.pt").read_bytes()
    assert (interrupted / "models" / "hq_cwr_star-seed0.pt").read_bytes() == kept
    assert (interrupted / "models" / "naive-seed0.pt").is_file()

    results = sorted(p.name for p in (interrupted / "results").glob("*.json"))
    assert results == ["hq_cwr_star.json", "naive.json"]  # not every strategy of core50_nc
    for entry in ("naive", "hq_cwr_star"):
        assert matrices(interrupted, entry) == matrices(whole, entry)


def test_an_interrupted_run_keeps_its_config_and_finished_results(tmp_path, monkeypatch, capsys):
    interrupt_after(monkeypatch, "cwr_star.json")
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


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    """SIGTERM delivered to this process right after the first results file is written: the
    finished results and the config stay, the message says how to continue, exit 143."""
    write_results = runner.write_results

    def write_then_terminate(results, path):
        written = write_results(results, path)
        if path.name == "cwr_star.json":
            os.kill(os.getpid(), signal.SIGTERM)
        return written

    monkeypatch.setattr(runner, "write_results", write_then_terminate)
    common = ["--strategy", "cwr_star", "naive", "--seeds", "0", "--wandb", "disabled"]
    before = signal.getsignal(signal.SIGTERM)  # Python's, or one a library installed (Ray)
    assert run_cli(*common, "--out", str(tmp_path)) == 143
    run_dir = only_run_dir(tmp_path)
    err = capsys.readouterr().err
    assert f"--resume {run_dir}" in err and "terminated (SIGTERM)" in err
    assert (run_dir / "results" / "cwr_star.json").is_file()
    assert not (run_dir / "results" / "naive.json").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the command
    monkeypatch.undo()
    assert resume(run_dir) == 0
    assert (run_dir / "results" / "naive.json").is_file()


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
    err = capsys.readouterr().err
    assert "--out: " in err and ("is a file; give a folder" in err or "is not writable" in err)


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def nothing_built(monkeypatch):
    """The stream must not be built: the problem is found before any work."""

    def build_stream(config):
        raise AssertionError("the stream was built before the problem was found")

    monkeypatch.setattr(runner, "build_stream", build_stream)


@pytest.mark.parametrize(
    "args, message",
    [
        (["backbone.name=bogus"], "unknown backbone 'bogus'"),
        (["benchmark.name=core50_nx"], "unknown benchmark 'core50_nx' (did you mean"),
        (["--data", "bogus"], "unknown data source 'bogus'; use real, synthetic or folder:PATH"),
        (["--data", "folder:/no/such/folder"], "image folder /no/such/folder does not exist"),
        (["benchmark.options.synthetic.image_sise=8"], "unknown option 'image_sise'"),
        (["strategy.naive.use=naiv"], "unknown strategy 'naiv' (did you mean 'naive'?)"),
        (["--strategy", "naiv"], "strategy 'naiv' is neither in this run nor a shipped strategy"),
        (["pretrain.data=imagenet"], "unknown pretrain data 'imagenet'"),
        (["pretrain.data=folder:/no/such/corpus"], "pretrain data folder /no/such/corpus does"),
        (["pretrain.devices=2", "pretrain.strategy=ddp"], "only the pretrain command can"),
        (["--device", "cuda:7"], "needs GPU 7"),
    ],
)
def test_bad_input_is_one_line_found_before_any_work_and_leaves_no_run_folder(
    tmp_path, capsys, nothing_built, args, message
):
    assert run_cli("--out", str(tmp_path / "runs"), *args) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("strategy.cwr_star.bogus=1", "unknown parameter 'bogus' for strategy 'cwr_star'"),
        ("strategy.hq_cwr_star.grad_bits=40", "strategy.hq_cwr_star: grad_bits=40 is out of range"),
        ("strategy.ewc.lr=-1", "strategy.ewc: lr=-1 must be a positive number"),
    ],
)
def test_a_bad_strategy_parameter_is_one_line_and_leaves_no_run_folder(
    tmp_path, capsys, override, message
):
    assert run_cli("--out", str(tmp_path / "runs"), override) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


# -- resuming ------------------------------------------------------------------------------


def resume(run_dir: Path) -> int:
    return main(["run", "--resume", str(run_dir)])


def copy_of_run(shared_run: Path, tmp_path: Path, **changes) -> Path:
    """A run folder holding the shared run's config (with `changes`) and its naive results."""
    config = run_folder.load_run(shared_run).model_copy(update=changes)
    run_dir = run_folder.start(config, tmp_path / "runs")
    (run_dir / "results").mkdir()
    shutil.copy(shared_run / "results" / "naive.json", run_dir / "results" / "naive.json")
    return run_dir


def test_resuming_trains_again_a_cell_whose_model_changed(shared_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(shared_run, run_dir)
    model = run_dir / "models" / "cwr_star-seed1.pt"
    model.write_bytes(model.read_bytes() + b"edited")
    (run_dir / "models" / "naive-seed0.pt").unlink()
    assert resume(run_dir) == 0
    out = capsys.readouterr().err
    assert "cwr_star seed 1: its saved model is missing or not the one measured" in out
    assert "naive seed 0: its saved model is missing or not the one measured" in out
    assert "cwr_star seed 0: already done, kept" in out
    for entry in ("naive", "cwr_star"):
        assert matrices(run_dir, entry) == matrices(shared_run, entry)
        for seed in load_results(run_dir / "results" / f"{entry}.json").per_seed:
            model_bytes = (run_dir / seed.model_file).read_bytes()
            assert hashlib.sha256(model_bytes).hexdigest() == seed.model_sha256


def test_a_second_run_in_a_busy_folder_is_refused(shared_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(shared_run, run_dir)
    before = sorted(p.name for p in (run_dir / "results").iterdir())
    with run_folder.locked(run_dir):  # as a run working in the folder holds it
        assert resume(run_dir) == 2
        assert f"error: {run_dir} is busy: process {os.getpid()} on" in capsys.readouterr().err
    assert sorted(p.name for p in (run_dir / "results").iterdir()) == before
    assert resume(run_dir) == 0  # released: the folder is free again


def test_resuming_a_corrupt_config_is_one_line(tmp_path, capsys, nothing_built):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("experiment: core50_nc\nseeds: [0, 1\nfast: true\n")
    assert resume(run_dir) == 2
    line = one_error_line(capsys)
    assert f"{run_dir / 'config.yaml'} is not valid YAML (line " in line
    assert "start a new run" in line


@pytest.mark.parametrize("name", ["results", "models", "plots"])
def test_resuming_a_folder_whose_results_are_a_file_is_one_line(
    shared_run, tmp_path, capsys, nothing_built, name
):
    run_dir = copy_of_run(shared_run, tmp_path)
    shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / name).write_text("mine\n")
    assert resume(run_dir) == 2
    assert f"{run_dir / name} is a file where the run keeps its {name}" in one_error_line(capsys)
    assert (run_dir / name).read_text() == "mine\n"


def test_resuming_refuses_options_it_would_ignore(tmp_path, capsys, shared_run):
    assert main(["run", "--resume", str(shared_run), "--seeds", "5"]) == 2
    assert "drop --seeds" in one_error_line(capsys)


def test_resuming_over_a_truncated_results_file_is_one_line_and_keeps_the_file(
    shared_run, tmp_path, capsys, nothing_built
):
    run_dir = copy_of_run(shared_run, tmp_path)
    path = run_dir / "results" / "naive.json"
    cut = path.read_bytes()[:1000]
    path.write_bytes(cut)
    assert resume(run_dir) == 2
    line = one_error_line(capsys)
    assert f"{path} is not a valid results file (not JSON" in line
    assert "to run naive again, or start a new run" in line
    assert path.read_bytes() == cut
    assert not (run_dir / "results" / "cwr_star.json").exists()


def test_resuming_keeps_results_of_seeds_the_config_does_not_have(
    shared_run, tmp_path, capsys, nothing_built
):
    run_dir = copy_of_run(shared_run, tmp_path, seeds=[0])
    before = (run_dir / "results" / "naive.json").read_bytes()
    assert resume(run_dir) == 2
    assert "holds seed 1, which is not among the run's seeds [0]" in one_error_line(capsys)
    assert (run_dir / "results" / "naive.json").read_bytes() == before


def test_resuming_keeps_results_of_another_stream(shared_run, tmp_path, capsys, nothing_built):
    config = run_folder.load_run(shared_run)
    other_stream = config.benchmark.model_copy(update={"seed": 1})
    run_dir = copy_of_run(shared_run, tmp_path, benchmark=other_stream)
    before = (run_dir / "results" / "naive.json").read_bytes()
    assert resume(run_dir) == 2
    assert "was measured on another stream" in one_error_line(capsys)
    assert (run_dir / "results" / "naive.json").read_bytes() == before


def test_resuming_keeps_results_of_other_parameters(shared_run, tmp_path, capsys, nothing_built):
    config = run_folder.load_run(shared_run)
    strategy = {**config.strategy, "naive": {**config.strategy["naive"], "lr": 0.1}}
    run_dir = copy_of_run(shared_run, tmp_path, strategy=strategy)
    before = (run_dir / "results" / "naive.json").read_bytes()
    assert resume(run_dir) == 2
    assert "holds results of other parameters than entry 'naive'" in one_error_line(capsys)
    assert (run_dir / "results" / "naive.json").read_bytes() == before


def test_a_backbone_made_by_pretrain_is_reused_by_run(tmp_path, monkeypatch, capsys):
    """`pretrain` and `run` share one cache ($CYCL_BENCH_CACHE) and one spec: the same
    settings given to both find one entry, whatever options are left at their defaults."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CYCL_BENCH_CACHE", str(cache))
    settings = {"epochs": "1", "batch-size": "64", "lr": "0.003"}
    pretrain_args = [f"--{key}={value}" for key, value in settings.items()]
    code = main(
        ["pretrain", "--backbone", "tiny_bnn", "--benchmark", "core50_nc", "--data", "synthetic"]
        + pretrain_args
        + ["--out", str(tmp_path / "pretrain")]
    )
    assert code == 0
    (entry,) = cache.iterdir()
    capsys.readouterr()
    overrides = [f"pretrain.{key.replace('-', '_')}={value}" for key, value in settings.items()]
    code = main(
        ["run", "core50_nc", "--data", "synthetic", "--fast", "--strategy", "naive"]
        + ["--seeds", "0", "--wandb", "disabled", "--out", str(tmp_path / "runs")]
        + [*SMALL[:2], *SMALL[3:6], *overrides]  # the stream at its default image size
    )
    assert code == 0
    assert "pretraining reused from the cache" in capsys.readouterr().err
    assert [path.name for path in cache.iterdir()] == [entry.name]
