"""One Weights & Biases run per (experiment, strategy, seed), offline by default.

Talks to the wandb library directly (Avalanche's WandBLogger does not work with wandb 0.31).
W&B is a mirror of the local results, never a dependency of them: when wandb fails (init, log,
finish), the session prints one warning on stderr, turns itself off and the run goes on.

Offline runs land in `<out_dir>/wandb/offline-run-*` and are uploaded later with `wandb sync`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from cycl_bench.errors import UserError, suggest
from cycl_bench.evaluation.results import SUMMARY_KEYS

if TYPE_CHECKING:
    import wandb

    from cycl_bench.evaluation.results import SeedResult

WandbMode = Literal["offline", "online", "disabled"]
WANDB_MODES: tuple[WandbMode, ...] = ("offline", "online", "disabled")
DEFAULT_PROJECT = "cycl_bench"


# Quiet, cheap runs: no console capture, no sampled system stats (which also probe cloud metadata
# endpoints), no requirements.txt, no banner. With these an offline init+log+finish takes ~0.02 s
# once the W&B service is up (~0.5 s, once per process) against ~0.1 s with wandb's defaults.
def _settings() -> wandb.Settings:
    import wandb

    return wandb.Settings(
        console="off",
        silent=True,
        x_disable_stats=True,
        x_save_requirements=False,
        save_code=False,
    )


# Once an online run could not start (no network, server down), later online sessions in the same
# process skip it at once: each attempt otherwise waits for wandb's init timeout (90 s).
_online_start_failure: str | None = None
_credentials_found = False  # checked once per process (wandb prints where it found them)


def check_wandb_mode(mode: str) -> WandbMode:
    """Refuse an unknown mode, or `online` without W&B credentials, before any training starts.

    Credentials are looked up without prompting and without contacting the server
    (WANDB_API_KEY, the W&B settings files, ~/.netrc).
    """
    if mode not in WANDB_MODES:
        raise UserError(
            f"unknown W&B mode '{mode}'{suggest(mode, WANDB_MODES)}; "
            f"choose one of: {', '.join(WANDB_MODES)}"
        )
    # `not in` does not narrow `mode` to the literals: `in` does
    assert mode in WANDB_MODES
    global _credentials_found
    if mode == "online" and not _credentials_found:
        import wandb

        _credentials_found = wandb.login(prompt=False, verify=False)
        if not _credentials_found:
            raise UserError(
                "W&B mode 'online' needs a W&B account: run `wandb login` first, "
                "or use the default offline mode and `wandb sync` later"
            )
    return mode


def _quiet_environment() -> None:
    """No error-report telemetry (the one network access an offline run makes otherwise).

    Read when wandb starts its service, so this runs before the first `wandb.init`; a value the
    user set is kept.
    """
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")


def experience_accuracies(
    index: int, accuracy_row: Sequence[float], test_sizes: Sequence[int]
) -> dict[str, float]:
    """W&B metrics for row `index` of the accuracy matrix: each test view, and the accuracy on the
    views learned so far (all views of a shared test set, views 0..index otherwise), weighted by
    test size as in `metrics.accuracy_so_far`. Fractions in [0, 1], like the results file."""
    if len(accuracy_row) != len(test_sizes):
        raise ValueError("accuracy_row and test_sizes differ in length")
    seen = range(len(accuracy_row)) if len(accuracy_row) == 1 else range(index + 1)
    total = sum(test_sizes[j] for j in seen)
    metrics = {f"accuracy/view_{j}": float(a) for j, a in enumerate(accuracy_row)}
    metrics["accuracy/seen_so_far"] = sum(accuracy_row[j] * test_sizes[j] for j in seen) / total
    return metrics


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""


def _artifact_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"


class WandbSession:
    """A W&B run for one (experiment, strategy, seed); a no-op when disabled or after a failure.

    Use as a context manager (an exception inside marks the W&B run failed) or call `finish`.
    """

    def __init__(
        self,
        *,
        mode: str,
        out_dir: str | Path,
        group: str,
        name: str,
        config: Mapping[str, Any],
        project: str = DEFAULT_PROJECT,
        tags: Sequence[str] = (),
    ) -> None:
        self.mode = check_wandb_mode(mode)
        self.name = name
        self.run_dir: Path | None = None
        self._run: wandb.Run | None = None
        if mode == "disabled":
            return
        try:
            self._run = self._start(Path(out_dir), group, name, dict(config), project, tags)
            self.run_dir = Path(self._run.settings.sync_dir)
        except Exception as error:  # W&B must never stop a run
            self._fail("start", error)

    def _start(
        self,
        out_dir: Path,
        group: str,
        name: str,
        config: dict[str, Any],
        project: str,
        tags: Sequence[str],
    ) -> wandb.Run:
        global _online_start_failure
        if self.mode == "online" and _online_start_failure:
            raise RuntimeError(f"an earlier online run could not start: {_online_start_failure}")
        _quiet_environment()
        import wandb

        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            return wandb.init(
                mode=self.mode,
                dir=str(out_dir),  # wandb adds the "wandb" folder
                project=project,
                group=group,
                name=name,
                job_type="continual",
                tags=list(tags),
                config=config,
                reinit="create_new",
                settings=_settings(),
            )
        except Exception as error:
            if self.mode == "online":
                _online_start_failure = _first_line(error)
            raise

    @property
    def active(self) -> bool:
        """True while a W&B run is open and has not failed."""
        return self._run is not None

    def log_experience(self, index: int, metrics: Mapping[str, float]) -> None:
        """Metrics after training experience `index` (0-based), at W&B step `index`."""
        if self._run is None:
            return
        try:
            self._run.log({"experience": index, **metrics}, step=index)
        except Exception as error:
            self._fail("log", error)

    def finish(
        self,
        *,
        summary: Mapping[str, float] | None = None,
        files: Sequence[str | Path] = (),
        exit_code: int = 0,
    ) -> Path | None:
        """Final per-seed scalars into the run summary, `files` (results file, plots) as one
        artifact, then close the run. Returns the run directory (None when W&B is off)."""
        if self._run is None:
            return None
        run, self._run = self._run, None
        try:
            if summary:
                run.summary.update(dict(summary))
            existing = [Path(f) for f in files if Path(f).is_file()]
            if existing:
                run.log_artifact(self._artifact(run, existing))
            run.finish(exit_code=exit_code)
        except Exception as error:
            self._run = run
            self._fail("finish", error)
            return None
        return self.run_dir

    def _artifact(self, run: wandb.Run, files: list[Path]) -> wandb.Artifact:
        """Copies inside the run directory (added as immutable: wandb then stages nothing in the
        user's home), so an offline run stays complete even if the originals are rewritten."""
        import wandb

        folder = Path(run.settings.sync_dir) / "artifact-files"
        folder.mkdir(parents=True, exist_ok=True)
        artifact = wandb.Artifact(_artifact_name(f"{self.name}-results"), type="results")
        for path in files:
            copy = folder / path.name
            shutil.copy2(path, copy)
            artifact.add_file(str(copy), name=path.name, policy="immutable")
        return artifact

    def _fail(self, action: str, error: Exception) -> None:
        """One warning, then the session is off; the wandb run is closed if it still can be."""
        print(
            f"warning: W&B {action} failed for run '{self.name}' ({type(error).__name__}: "
            f"{_first_line(error)}); W&B logging is off for this run, local results are unaffected",
            file=sys.stderr,
        )
        run, self._run = self._run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # already warned; the wandb service may be gone
                pass

    def __enter__(self) -> WandbSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish(exit_code=1 if exc_type is not None else 0)


def offline_runs(out_dir: str | Path) -> list[Path]:
    return sorted((Path(out_dir) / "wandb").glob("offline-run-*"))


def offline_sync_hint(out_dir: str | Path) -> str | None:
    """Where the offline runs are and the command that uploads them (None when there are none)."""
    runs = offline_runs(out_dir)
    if not runs:
        return None
    folder = Path(out_dir) / "wandb"
    plural = "s" if len(runs) != 1 else ""
    return (
        f"W&B: {len(runs)} offline run{plural} in {folder}; "
        f"upload with: wandb sync {folder}/offline-run-*"
    )


def experience_logger(
    session: WandbSession, test_sizes: list[int]
) -> Callable[[int, dict[str, Any]], None]:
    """`run_strategy`'s `on_experience` hook: an experience's accuracies (when it was evaluated)
    and costs to W&B."""

    def log(index: int, info: dict[str, Any]) -> None:
        row = info.get("accuracy_row")
        metrics = {} if row is None else experience_accuracies(index, row, test_sizes)
        metrics.update(
            {
                f"experience/{key}": float(value)
                for key, value in info.items()
                if key != "accuracy_row" and isinstance(value, (int, float))
            }
        )
        session.log_experience(index, metrics)

    return log


def seed_summary(seed_result: SeedResult) -> dict[str, float]:
    """A cell's final per-seed scalars for the W&B run summary."""
    return {key: getattr(seed_result, key) for key in SUMMARY_KEYS}
