"""What a run records about itself: the commit of the suite's own repository (never another
repository's), and where each seed ran."""

import platform
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cycl_bench.config import resolve
from cycl_bench.evaluation.results import SeedResult
from cycl_bench.run_record import (
    PACKAGE_DIR,
    device_name,
    entry_results,
    environment,
    git_sha,
    method_info,
)

GIT_USER = ["-c", "user.name=test", "-c", "user.email=test@example.com"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_USER, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def committed_repository(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    (root / "README").write_text("another project\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "another project")
    return root


def copy_package(to: Path) -> Path:
    shutil.copytree(PACKAGE_DIR, to, ignore=shutil.ignore_patterns("__pycache__"))
    return to


# -- the suite's commit ----------------------------------------------------------------------


def test_a_package_copy_inside_an_unrelated_repository_records_unknown(tmp_path):
    """A virtual environment inside some project's checkout: the project's commit is not the
    suite's. The copy is imported in a fresh process, as an installed package would be."""
    project = committed_repository(tmp_path / "project")
    site = project / "venv" / "site-packages"
    copy_package(site / "cycl_bench")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "with a vendored copy")  # tracked there, even
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import cycl_bench, pathlib; "
        "assert pathlib.Path(cycl_bench.__file__).parent == pathlib.Path(sys.argv[1]) / "
        "'cycl_bench', cycl_bench.__file__; "
        "from cycl_bench.run_record import environment; print(environment()['git_sha'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(site.resolve())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "unknown"
    assert git(project, "rev-parse", "HEAD") != "unknown"


def test_an_untracked_copy_at_a_repositorys_top_level_records_unknown(tmp_path):
    project = committed_repository(tmp_path / "project")
    assert git_sha(copy_package(project / "cycl_bench")) == "unknown"


def test_a_repository_that_tracks_the_package_at_its_top_level_gives_its_commit(tmp_path):
    repo = tmp_path / "suite"
    repo.mkdir()
    git(repo, "init", "-q")
    package = copy_package(repo / "cycl_bench")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the suite")
    assert git_sha(package) == git(repo, "rev-parse", "HEAD")


def test_outside_any_repository_the_commit_is_unknown(tmp_path):
    assert git_sha(copy_package(tmp_path / "cycl_bench")) == "unknown"


def test_this_checkout_records_its_own_commit():
    if not (PACKAGE_DIR.parent / ".git").exists():
        pytest.skip("the suite is not run from a git checkout")
    assert environment()["git_sha"] == git(PACKAGE_DIR.parent, "rev-parse", "HEAD")


# -- where each seed ran ---------------------------------------------------------------------


def test_device_name_says_the_device_and_the_torch_threads():
    threads = torch.get_num_threads()
    assert device_name("cpu") == f"cpu ({platform.machine()}, {threads} torch threads)"


def seed_result(seed: int, device: str | None) -> SeedResult:
    return SeedResult(
        seed=seed,
        accuracy_matrix=[[0.5, 0.0], [0.4, 0.6]],
        final_accuracy=0.5,
        average_forgetting=0.1,
        bwt=-0.1,
        train_time_s=1.0,
        peak_memory_mb=100.0,
        train_bitops=1e9,
        bitops_reduction_vs_fp32=0.9,
        model_size_bytes=1000,
        device=device,
    )


def two_seed_results(devices: list[str | None]):
    config = resolve("core50_nc", strategies=["cwr_star"], seeds=[0, 1])
    stream = SimpleNamespace(
        name="core50_nc",
        scenario="nc",
        source="synthetic",
        protocol_hash="abc",
        protocol={},
        n_experiences=2,
        test_sizes=[10, 10],
    )
    method = method_info(config, "cwr_star", (1, 1, 32))
    # seed 1 finished first: the file lists the seeds in the config's order
    per_seed = [seed_result(1, devices[1]), seed_result(0, devices[0])]
    return entry_results(config, stream, "cwr_star", method, per_seed, environment())


def test_each_seed_keeps_its_device_and_the_file_names_every_device():
    gpu, cpu = "cuda:0 (NVIDIA H100 80GB HBM3)", "cpu (x86_64, 8 torch threads)"
    results = two_seed_results([gpu, cpu])
    assert [(s.seed, s.device) for s in results.per_seed] == [(0, gpu), (1, cpu)]
    assert results.device == f"{gpu}; {cpu}"


def test_seeds_on_one_device_name_it_once():
    cpu = "cpu (x86_64, 2 torch threads)"
    assert two_seed_results([cpu, cpu]).device == cpu


def test_a_seed_without_a_recorded_device_counts_as_unknown():
    cpu = "cpu (x86_64, 2 torch threads)"
    assert two_seed_results([cpu, None]).device == f"{cpu}; unknown"
