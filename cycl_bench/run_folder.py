"""A run folder: where everything one run produces lives, and what `--resume` reads back.

`runs/<experiment>/<UTC timestamp>/` holds config.yaml (the resolved config with the selected
strategy entries and all their parameters, written first), results/<strategy entry>.json
(rewritten as each cell finishes, so an interrupted run keeps what it finished), models/, plots/,
pretrain/, wandb/ and run.log (library output).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from cycl_bench.config import ExperimentConfig, load_resolved, to_yaml
from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import Results, SeedResult, load_results

CONFIG_FILE = "config.yaml"
RESULTS_DIR = "results"
PLOTS_DIR = "plots"
LOG_FILE = "run.log"


def check_out_dir(out: Path) -> None:
    """A UserError before any work when run folders cannot be created under `out`."""
    existing = Path(out).absolute()
    while not existing.exists():
        existing = existing.parent
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise UserError(
            f"cannot write the run folder under {out}: {existing} is not a writable folder; "
            "choose a writable folder with --out"
        )


def check_not_in_a_run(out: Path, option: str = "--out") -> None:
    """A UserError when writing `out` would replace a file of a run folder (its config, a
    results file, a saved model, a plot, the log) or write into its results or models: the
    run could no longer be resumed, compared or exported."""
    from cycl_bench.export.saved import MODELS_DIR

    out = Path(out).absolute()
    for folder in out.parents:
        if (folder / CONFIG_FILE).is_file():
            inside = out.relative_to(folder).parts
            if out.exists() or inside[0] in (CONFIG_FILE, RESULTS_DIR, MODELS_DIR, LOG_FILE):
                raise UserError(
                    f"{option} {out} would overwrite the run folder {folder} (its "
                    f"{inside[0]}); choose a file outside it, e.g. {folder.parent / out.name}"
                )
            return


def new_run_dir(out: Path, experiment: str) -> Path:
    """`out/<experiment>/<UTC timestamp>`, created now; a UserError if it cannot be written."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(out) / experiment
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    try:
        run_dir.mkdir(parents=True)
        (run_dir / ".write-test").touch()
        (run_dir / ".write-test").unlink()
    except OSError as error:
        raise UserError(
            f"cannot write the run folder {run_dir}: {error.strerror or error}; "
            "choose a writable folder with --out"
        ) from None
    return run_dir


LOCK_FILE = ".lock"


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """This process alone trains in `run_dir` while inside: a second `run --resume` of the same
    folder is refused (it would train the same cells). An advisory `flock` on `RUN_DIR/.lock`,
    which the system releases when the process ends, however it ends."""
    import fcntl
    import socket

    handle = open(Path(run_dir) / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"{run_dir} is busy: {owner} is running in it; wait for it to finish (or stop it), "
            "then continue with --resume"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def start(config: ExperimentConfig, out: Path) -> Path:
    """A fresh run folder holding the resolved config (pass `Plan.config`: every parameter)."""
    run_dir = new_run_dir(out, config.experiment)
    (run_dir / CONFIG_FILE).write_text(to_yaml(config))
    return run_dir


def load_run(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); give a folder of runs/")
    from cycl_bench.export.saved import MODELS_DIR

    for name in (RESULTS_DIR, MODELS_DIR, PLOTS_DIR):
        if (Path(run_dir) / name).exists() and not (Path(run_dir) / name).is_dir():
            raise UserError(
                f"{Path(run_dir) / name} is a file where the run keeps its {name}; "
                "move it out of the run folder"
            )
    return load_resolved(path)


def results_path(run_dir: Path, entry: str) -> Path:
    return Path(run_dir) / RESULTS_DIR / f"{entry}.json"


def finished_seeds(
    run_dir: Path, config: ExperimentConfig, entry: str, protocol_hash: str
) -> dict[int, SeedResult]:
    """The seeds of `entry` already in `run_dir`. A results file this run cannot continue (not a
    valid results file, another stream, other parameters, a seed the run does not have) is a
    UserError: continuing would overwrite it."""
    path = results_path(run_dir, entry)
    if not path.is_file():
        return {}
    fix = f"move it out of {Path(run_dir) / RESULTS_DIR} to run {entry} again, or start a new run"
    results = load_results(path, fix)
    name, params = config.strategy_of(entry)
    if results.benchmark.protocol_hash != protocol_hash:
        problem = (
            f"was measured on another stream (protocol {results.benchmark.protocol_hash}, "
            f"this run's is {protocol_hash})"
        )
    elif results.method.strategy != name or results.method.params != params:
        problem = f"holds results of other parameters than entry '{entry}' of {CONFIG_FILE}"
    elif any(seed.seed not in config.seeds for seed in results.per_seed):
        extra = [seed.seed for seed in results.per_seed if seed.seed not in config.seeds]
        problem = f"holds seed {extra[0]}, which is not among the run's seeds {config.seeds}"
    else:
        stale = set(stale_models(run_dir, results))
        return {seed.seed: seed for seed in results.per_seed if seed.seed not in stale}
    raise UserError(f"{path} {problem}; {fix}")


def stale_models(run_dir: Path, results: Results) -> list[int]:
    """Seeds of `results` whose saved model is missing or is not the one measured (its sha256
    differs from the recorded one): their numbers no longer have a model, so a resumed run
    trains those cells again."""
    from cycl_bench.export.saved import file_sha256

    stale = []
    for seed in results.per_seed:
        if seed.model_file is None or seed.model_sha256 is None:
            continue  # written before models were saved
        path = Path(run_dir) / seed.model_file
        if not path.is_file() or file_sha256(path) != seed.model_sha256:
            stale.append(seed.seed)
    return stale
