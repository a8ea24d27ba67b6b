"""Cells on Ray: the same results files as in-process, resume, a killed worker, bad input.

One Ray instance (started by `RayExecutor.connect`, 2 workers) serves the module: a run reuses
a Ray this process already started and leaves it running. The runs give `threads=1` (2 cells at
once on 2 cores); the reference is the local executor given the same config.
"""

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from test_runner import SMALL, interrupt_after, matrices, only_run_dir

from cycl_bench.cli import main
from cycl_bench.executors import RayExecutor

CELLS = ["--strategy", "cwr_star", "hq_cwr_star", "--seeds", "0", "1"]  # 4 cells
ENTRIES = ("cwr_star", "hq_cwr_star")
STARTED = re.compile(r"(\w+) seed (\d+): started in process (\d+)")


def run_cli(*args: str) -> int:
    return main(
        ["run", "core50_nc", "--data", "synthetic", "--fast", *CELLS, *args, *SMALL, "threads=1"]
    )


def started_cells(run_dir: Path) -> list[tuple[str, int, int]]:
    """(entry, seed, worker pid) of each cell start the workers logged in run.log."""
    text = (run_dir / "run.log").read_text()
    return [(e, int(s), int(pid)) for e, s, pid in STARTED.findall(text)]


@pytest.fixture(scope="module")
def ray_instance():
    executor = RayExecutor(workers=2)
    executor.connect()
    yield
    executor.close()


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory, ray_instance):
    out = tmp_path_factory.mktemp("ray")
    assert run_cli("--executor", "ray", "--workers", "2", "--out", str(out)) == 0
    return only_run_dir(out)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    assert run_cli("--wandb", "disabled", "--out", str(out)) == 0
    assert torch.get_num_threads() == threads  # the cells' count is set per cell, then restored
    return only_run_dir(out)


def test_a_ray_run_writes_the_results_of_the_local_executor(ray_run, local_run):
    for entry in ENTRIES:
        assert matrices(ray_run, entry) == matrices(local_run, entry)  # matrices and BitOPs
        assert len(matrices(ray_run, entry)) == 2


def test_the_thread_count_is_recorded_and_each_cell_ran_with_it(ray_run, local_run):
    for run_dir in (ray_run, local_run):
        assert "threads: 1\n" in (run_dir / "config.yaml").read_text()
        for entry in ENTRIES:
            results = json.loads((run_dir / "results" / f"{entry}.json").read_text())
            assert results["config"]["threads"] == 1
            assert all("1 torch threads" in seed["device"] for seed in results["per_seed"])


def test_an_unset_thread_count_resolves_to_torch_default(tmp_path):
    from cycl_bench import config, runner

    raw = config.resolve(
        "core50_nc", data="synthetic", fast=True, overrides=SMALL, strategies=["cwr_star"]
    )
    assert raw.threads is None
    plan = runner.prepare(raw)
    assert plan.config.threads == torch.get_num_threads()


def test_every_cell_ran_in_a_ray_worker_with_its_own_wandb_run(ray_run):
    cells = started_cells(ray_run)
    assert sorted((e, s) for e, s, _ in cells) == [(e, s) for e in ENTRIES for s in (0, 1)]
    assert os.getpid() not in {pid for _, _, pid in cells}
    assert len(list((ray_run / "wandb").glob("offline-run-*"))) == 4  # one per cell
    for entry in ENTRIES:
        for seed in (0, 1):
            assert (ray_run / "models" / f"{entry}-seed{seed}.pt").is_file()


def test_a_stopped_ray_run_resumes_to_the_same_results(
    ray_run, ray_instance, tmp_path, monkeypatch
):
    with monkeypatch.context() as patch:
        interrupt_after(patch, "cwr_star.json")  # the driver stops after its first result
        code = run_cli("--executor", "ray", "--workers", "2", "--out", str(tmp_path))
        assert code == 130
    run_dir = only_run_dir(tmp_path)
    assert len(matrices(run_dir, "cwr_star")) == 1
    assert main(["run", "--resume", str(run_dir), "--executor", "ray", "--workers", "2"]) == 0
    for entry in ENTRIES:
        assert matrices(run_dir, entry) == matrices(ray_run, entry)


def kill_first_start(run_dir_parent: Path, killed: list[tuple[str, int, int]]) -> None:
    """Kill -9 the worker process of the first cell that starts (from the pid it logs), and
    record the cell that process had started last, read just before the kill: the one it was
    running, even if the first cell had already finished there."""
    deadline = time.monotonic() + 600  # a bound on a hang, not a speed: cells log at start
    while time.monotonic() < deadline:
        logs = list(run_dir_parent.glob("core50_nc/*/run.log"))
        cells = started_cells(logs[0].parent) if logs else []
        if cells:
            pid = cells[0][2]
            killed.append([cell for cell in started_cells(logs[0].parent) if cell[2] == pid][-1])
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.02)  # polling the log file, not waiting for time to pass


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_run_finishes(ray_run, ray_instance, tmp_path):
    killed: list[tuple[str, int, int]] = []
    killer = threading.Thread(target=kill_first_start, args=(tmp_path, killed), daemon=True)
    killer.start()
    assert run_cli("--executor", "ray", "--workers", "2", "--out", str(tmp_path)) == 0
    killer.join()
    run_dir = only_run_dir(tmp_path)
    cells = started_cells(run_dir)
    victim_entry, victim_seed, victim_pid = killed[0]
    retries = [
        pid for e, s, pid in cells if (e, s) == (victim_entry, victim_seed) and pid != victim_pid
    ]
    assert len(retries) == 1  # started again in another worker
    for entry in ENTRIES:
        assert matrices(run_dir, entry) == matrices(ray_run, entry)


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "rey"], "unknown executor 'rey' (did you mean 'ray'?)"),
        (
            ["--executor", "ray", "--workers", "0"],
            "--workers: 0 is out of range; give an integer from 1",
        ),
        (["--executor", "ray", "--workers", "two"], "--workers: 'two' is not an integer"),
        (["--workers", "2"], "--workers and --ray-address apply to --executor ray"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "nothing answers there"),
        (["--executor", "ray", "--ray-address", "head-node"], "give auto or HOST:PORT"),
    ],
)
def test_bad_executor_options_are_one_line_and_start_nothing(tmp_path, capsys, args, message):
    assert run_cli("--out", str(tmp_path / "runs"), *args) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()
