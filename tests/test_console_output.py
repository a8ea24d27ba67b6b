"""The console shows the suite's own lines; what the libraries say goes to a log file.

Lightning's info lines and the known third-party warnings are written to the run's log file, not
the console (`--verbose` shows them too); every other warning still reaches the console.
"""

import io
import logging
import os
import subprocess
import sys
import warnings

import pytest
from test_runner import SMALL

from cycl_bench.logging.library_output import is_library_warning, library_output, module_of

SITE = "/venv/lib/python3.11/site-packages"
LIGHTNING_PYTREE = f"{SITE}/pytorch_lightning/utilities/_pytree.py"
LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated, use `treespec.is_leaf()` instead."
# what Lightning and its dependencies print on a CPU machine, seen on the console before
LIBRARY_LINES = (
    "GPU available",
    "TPU available",
    "litlogger",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "`Trainer.fit` stopped",
    "LeafSpec",
)


def lightning_info(text: str) -> None:
    logging.getLogger("pytorch_lightning.utilities.rank_zero").info(text)


def lightning_deprecation() -> None:
    warnings.warn_explicit(LEAFSPEC, FutureWarning, LIGHTNING_PYTREE, 21)


@pytest.fixture
def lightning_console():
    """Lightning's logger as pytorch_lightning sets it up (INFO, a console handler), the console
    being a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_the_module_of_a_warning_is_read_from_its_installed_file():
    assert module_of(LIGHTNING_PYTREE) == "pytorch_lightning.utilities._pytree"
    assert module_of("/work/main/cycl_bench/runner.py") == ""  # not an installed package


def test_only_known_library_warnings_are_library_output():
    assert is_library_warning(LEAFSPEC, LIGHTNING_PYTREE)
    assert is_library_warning("`foo` is deprecated", f"{SITE}/avalanche/training/x.py")
    assert not is_library_warning("accuracy is NaN", f"{SITE}/avalanche/training/x.py")
    assert not is_library_warning("`foo` is deprecated", "/work/main/cycl_bench/runner.py")


def test_lightning_info_goes_to_the_log_file_not_the_console(tmp_path, lightning_console):
    with library_output(tmp_path / "run.log"):
        lightning_info("GPU available: False, used: False")
    assert lightning_console.getvalue() == ""
    assert "GPU available: False, used: False" in (tmp_path / "run.log").read_text()


def test_known_library_warnings_go_to_the_log_file_only(tmp_path, recwarn):
    with library_output(tmp_path / "run.log"):
        lightning_deprecation()
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]
    assert LEAFSPEC in (tmp_path / "run.log").read_text()


def test_other_warnings_still_reach_the_console(tmp_path, recwarn):
    with library_output(tmp_path / "run.log"):
        warnings.warn("the head has no rows to consolidate", UserWarning, stacklevel=1)
    assert [str(w.message) for w in recwarn] == ["the head has no rows to consolidate"]
    assert "the head has no rows to consolidate" in (tmp_path / "run.log").read_text()


def test_verbose_shows_library_output_on_the_console_too(tmp_path, lightning_console, recwarn):
    with library_output(tmp_path / "run.log", verbose=True):
        lightning_info("TPU available: False")
        lightning_deprecation()
    assert "TPU available: False" in lightning_console.getvalue()
    assert [str(w.message) for w in recwarn] == [LEAFSPEC]
    assert "TPU available: False" in (tmp_path / "run.log").read_text()


def test_the_console_is_as_before_after_the_block_and_the_log_is_appended(
    tmp_path, lightning_console
):
    with library_output(tmp_path / "run.log"):
        lightning_info("first run")
    lightning_info("outside")
    with library_output(tmp_path / "run.log"):
        lightning_info("resumed run")
    assert lightning_console.getvalue() == "outside\n"
    log = (tmp_path / "run.log").read_text()
    assert "first run" in log and "resumed run" in log and "outside" not in log


# -- end to end: what a user sees --------------------------------------------------------------


def cycl_bench(*args: str) -> subprocess.CompletedProcess:
    """The real program in a fresh process, so Lightning's own console handlers are in place."""
    return subprocess.run(
        [sys.executable, "-m", "cycl_bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_SILENT": "true"},
    )


def test_a_run_prints_only_the_suite_s_lines_and_logs_the_library_output(tmp_path):
    """A float backbone, pretrained afresh (an empty cache): Lightning runs and has its say."""
    out, cache = str(tmp_path / "runs"), str(tmp_path / "cache")
    done = cycl_bench(
        "run", "core50_nc", "--data", "synthetic", "--fast", "--strategy", "naive", "--seeds", "0",
        "--wandb", "disabled", "--out", out, "--cache-dir", cache, "backbone.name=tiny_fp", *SMALL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for text in LIBRARY_LINES:
        assert text not in done.stderr
    suite_lines = ("run folder: ", "stream core50_nc ", "pretraining trained: ", "[1/1] naive ")
    assert [line.startswith(suite_lines) for line in done.stderr.splitlines()] == [True] * 4
    assert "% at 32-bit (float)," in done.stderr
    (run_dir,) = (tmp_path / "runs" / "core50_nc").iterdir()
    log = (run_dir / "run.log").read_text()
    assert "GPU available" in log and "`Trainer.fit` stopped" in log


def test_pretrain_verbose_shows_library_output_and_names_a_float_precision(tmp_path):
    out, cache = str(tmp_path / "out"), str(tmp_path / "cache")
    done = cycl_bench(
        "pretrain", "--backbone", "tiny_fp", "--benchmark", "core50_nc", "--data", "synthetic",
        "--fast", "--epochs", "1", "--out", out, "--cache-dir", cache, "--verbose",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "GPU available" in done.stderr
    assert "32-bit (float) val accuracy" in done.stdout
    assert "GPU available" in (tmp_path / "out" / "pretrain.log").read_text()
