"""Where a run's cells execute: the unit (`Cell`, `run_cell`) and the executors.

An executor takes the cells a run still needs and yields each `CellOutcome` as it finishes; the
driver (`runner.run`) alone writes the results files. `LocalExecutor` runs the cells one after
another in this process (the default); `RayExecutor` runs each cell as a Ray task, on this machine
or on a cluster. `make_executor` checks the command line's choice before anything starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cycl_bench.errors import UserError, suggest
from cycl_bench.evaluation.results import SeedResult
from cycl_bench.run_record import device_name
from cycl_bench.strategies import strategy_params

if TYPE_CHECKING:
    from ray import ObjectRef

    from cycl_bench.models.common import Backbone
    from cycl_bench.runner import Plan


@dataclass(frozen=True)
class Cell:
    """One (strategy entry, seed) of a run: the unit an executor runs."""

    entry: str
    seed: int


@dataclass
class CellOutcome:
    cell: Cell
    result: SeedResult
    wall_s: float
    device: str
    """Where the cell ran (`run_record.device_name`, in the cell's own process: a Ray worker's
    threads, not the driver's), as its seed's `device` in the results file says it."""


def run_cell(plan: Plan, run_dir: Path, checkpoint: Path | None, cell: Cell) -> CellOutcome:
    """One (strategy entry, seed) cell: its W&B run, the training, its saved model and the
    cell's seed result next to it. Writes no results file (the driver does, `run`), so an
    executor may run cells anywhere that sees `run_dir` and the checkpoint."""
    from cycl_bench.continual.loop import run_strategy
    from cycl_bench.logging.console import ExperienceProgress
    from cycl_bench.logging.wandb_run import WandbSession, experience_logger, seed_summary

    config, stream = plan.config, plan.stream
    name, params = config.strategy_of(cell.entry)
    device = device_name(plan.spec.device)  # this process: a Ray worker's threads, not the driver's
    declared = strategy_params(name, params)
    fidelity = {"paper": declared.paper, "deviations": declared.deviations()}
    variant = any("(paper:" in item for item in fidelity["deviations"])
    started = time.perf_counter()
    with WandbSession(
        mode=config.wandb,
        out_dir=run_dir,
        group=config.experiment,
        name=f"{cell.entry}-seed{cell.seed}",
        config={
            **config.model_dump(mode="json"),
            "strategy_entry": cell.entry,
            "seed": cell.seed,
            **fidelity,
        },
        tags=[stream.source, name, *(["variant"] if variant else [])],
    ) as session:
        log = experience_logger(session, stream.test_sizes)
        progress = ExperienceProgress(f"{cell.entry} seed {cell.seed}", stream)

        def on_experience(index: int, info: dict) -> None:
            log(index, info)
            progress(index, info)

        result = run_strategy(
            stream,
            plan.spec,
            strategy=name,
            params=params,
            checkpoint=checkpoint,
            seed=cell.seed,
            eval_every=config.eval_every,
            on_experience=on_experience,
            on_finished=_model_saver(plan, run_dir, cell),
        )
        result.device = device
        assert result.model_file is not None  # set by `_model_saver`, run as `on_finished`
        record = Path(run_dir) / result.model_file
        record = record.with_suffix(".json")
        record.write_text(result.model_dump_json(indent=2))
        session.finish(summary=seed_summary(result), files=[record])
    return CellOutcome(
        cell=cell,
        result=result,
        wall_s=time.perf_counter() - started,
        device=device,
    )


def _model_saver(plan: Plan, run_dir: Path, cell: Cell) -> Callable[[Backbone], dict[str, str]]:
    """Saves a cell's final model (before its results file is written, so a run interrupted
    between the two redoes the cell and replaces the model) and returns where, with its sha256."""
    from cycl_bench.export import model_path, save_model

    def save(model: Backbone) -> dict[str, str]:
        config, stream = plan.config, plan.stream
        path = model_path(run_dir, cell.entry, cell.seed)
        sha256 = save_model(
            model,
            path,
            backbone=plan.spec.backbone,
            backbone_kwargs=plan.spec.kwargs_for(stream.num_classes),
            deployed_bits=plan.deployed_bits,
            info={
                "experiment": config.experiment,
                "strategy_entry": cell.entry,
                "strategy": config.strategy_of(cell.entry)[0],
                "seed": cell.seed,
                "benchmark": stream.name,
                "data_source": stream.source,
                "protocol_hash": stream.protocol_hash,
            },
        )
        return {"model_file": path.relative_to(run_dir).as_posix(), "model_sha256": sha256}

    return save


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to `threads` (None: as it is), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Executor(Protocol):
    """Where a run's cells execute: `connect` before the run (a UserError when that cannot be
    done), `run` yields each cell's outcome as it finishes, `close` afterwards."""

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def run(
        self, plan: Plan, run_dir: Path, checkpoint: Path | None, cells: list[Cell]
    ) -> Iterator[CellOutcome]: ...


class LocalExecutor:
    """Every cell in this process, in order, with the config's torch threads."""

    def connect(self) -> None:
        """Nothing to start (the same interface as `RayExecutor`)."""

    def close(self) -> None:
        """Nothing to stop."""

    def run(
        self, plan: Plan, run_dir: Path, checkpoint: Path | None, cells: list[Cell]
    ) -> Iterator[CellOutcome]:
        for cell in cells:
            with torch_threads(plan.config.threads):
                outcome = run_cell(plan, run_dir, checkpoint, cell)
            yield outcome


# -- Ray -----------------------------------------------------------------------------------

EXECUTORS = ("local", "ray")
CELL_RETRIES = 2
"""How many times Ray reruns a cell whose worker process died (killed, out of memory)."""
RAY_CONNECT_TIMEOUT_S = 5


def make_executor(
    name: str | None, *, workers: str | int | None = None, address: str | None = None
) -> Executor:
    """The executor `--executor NAME [--workers N] [--ray-address ADDR]` asks for; a UserError
    for an unknown name, a worker count below 1, or Ray options without `--executor ray`."""
    name = name or "local"
    if name not in EXECUTORS:
        raise UserError(
            f"unknown executor '{name}'{suggest(name, EXECUTORS)}; use --executor local or ray"
        )
    if name == "local":
        if workers is not None or address is not None:
            raise UserError("--workers and --ray-address apply to --executor ray; add it")
        return LocalExecutor()
    return RayExecutor(workers=_worker_count(workers), address=_ray_address(address))


def _worker_count(workers: str | int | None) -> int | None:
    if workers is None:
        return None
    try:
        count = int(workers)
    except ValueError:
        count = 0
    if count < 1 or str(workers).strip() != str(count):
        raise UserError(f"--workers {workers}: give a whole number of workers, at least 1")
    return count


def _ray_address(address: str | None) -> str | None:
    """None (start Ray here), 'auto' (the cluster `ray start` began on this machine) or
    HOST:PORT, checked to answer now rather than after pretraining."""
    if address is None or address == "auto":
        return address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"--ray-address {address}: give auto or HOST:PORT of the head started with "
            "`ray start --head` (e.g. 10.0.0.1:6379)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UserError(
            f"--ray-address {address}: nothing answers there ({error.strerror or error}); "
            "start the cluster with `ray start --head` or check the address"
        ) from None
    return address


class RayExecutor:
    """Every cell a Ray task with the config's torch threads (as a local run has them, so the
    executor never changes a number), `workers` at a time (default: as many as the cores hold).

    Without an address it starts Ray on this machine (no dashboard, its logs in Ray's session
    folder) and stops it when closed; with `auto` or HOST:PORT it joins that cluster. The plan
    (stream included) and the pretrained checkpoint travel through Ray's object store, put once;
    the run folder must be on a filesystem every machine sees at the same path, since each cell
    writes its model, its seed record and its W&B run there. A cell whose worker dies is rerun
    by Ray (`CELL_RETRIES`); a cell that fails for good is reported after the others finish.
    """

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.workers = workers
        self.address = address
        self._connected = False

    def connect(self) -> None:
        """Start or join Ray (once); a UserError when the cluster cannot be reached. A Ray this
        process already initialized is used as it is (and left running by `close`)."""
        import ray

        if ray.is_initialized():
            return
        runtime_env = {"worker_process_setup_hook": f"{__name__}.quiet_worker"}
        # Ray installs a SIGTERM handler that exits at once: keep the command's own, which
        # stops the run as Ctrl-C does (finished cells kept, `--resume` to continue)
        handler = signal.getsignal(signal.SIGTERM)
        try:
            if self.address is None:
                ray.init(
                    num_cpus=available_cores(),
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    runtime_env=runtime_env,
                )
            else:
                ray.init(address=self.address, logging_level=logging.ERROR, runtime_env=runtime_env)
            if threading.current_thread() is threading.main_thread() and handler is not None:
                signal.signal(signal.SIGTERM, handler)
        except ConnectionError:
            raise UserError(
                f"--ray-address {self.address}: no Ray cluster found; start one with "
                "`ray start --head` or drop --ray-address to run Ray on this machine"
            ) from None
        self._connected = True

    def close(self) -> None:
        import ray

        if self._connected and ray.is_initialized():
            ray.shutdown()  # stops a Ray started here; leaves a joined cluster running
        self._connected = False

    def worker_count(self, threads: int) -> int:
        """Cells at once: `workers`, or as many as the cluster's cores hold at `threads` each."""
        import ray

        cores = int(ray.cluster_resources().get("CPU", 1))
        return self.workers or max(1, cores // threads)

    def run(
        self, plan: Plan, run_dir: Path, checkpoint: Path | None, cells: list[Cell]
    ) -> Iterator[CellOutcome]:
        import ray

        self.connect()
        threads = plan.config.threads or 1
        task = ray.remote(_cell_task).options(
            num_cpus=threads, max_retries=CELL_RETRIES, retry_exceptions=False
        )
        plan_ref = ray.put(plan)
        checkpoint_ref: ObjectRef[bytes | None] | None = (
            ray.put(Path(checkpoint).read_bytes()) if checkpoint is not None else None
        )
        waiting = list(cells)
        running: dict[ObjectRef[CellOutcome], Cell] = {}
        failures: list[tuple[Cell, Exception]] = []
        limit = self.worker_count(threads)
        try:
            while running or (waiting and not failures):
                while waiting and not failures and len(running) < limit:
                    cell = waiting.pop(0)
                    ref = task.remote(
                        plan_ref, checkpoint_ref, str(Path(run_dir).absolute()), cell, threads
                    )
                    running[ref] = cell
                (ready,), _ = ray.wait(list(running), num_returns=1)
                cell = running.pop(ready)
                try:
                    outcome = ray.get(ready)
                except ray.exceptions.RayTaskError as error:
                    if isinstance(error.cause, UserError):
                        raise error.cause from None
                    failures.append((cell, error))
                except ray.exceptions.RayError as error:  # its worker died on every try
                    failures.append((cell, error))
                else:
                    yield outcome
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
        if failures:
            described = "; ".join(
                f"{cell.entry} seed {cell.seed} ({type(error).__name__})"
                for cell, error in failures
            )
            raise RuntimeError(
                f"{len(failures)} cell(s) failed: {described}; the finished cells are kept, "
                "rerun the rest with --resume"
            ) from failures[0][1]


def quiet_worker() -> None:
    """Run by Ray in every worker process before it unpickles a cell: the same warnings the
    command line keeps off the console stay off it (workers' output reaches the console)."""
    from cycl_bench.logging.library_output import quiet_libraries

    quiet_libraries()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not every core of the machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cell_task(
    plan: Plan, checkpoint: bytes | None, run_dir: str, cell: Cell, threads: int
) -> CellOutcome:
    """A cell in a Ray worker: `threads` torch threads, the checkpoint written once per worker
    machine, library output to the run's log file like the driver's."""
    import torch

    from cycl_bench.continual.resources import keep_freed_memory
    from cycl_bench.logging.library_output import library_output
    from cycl_bench.run_folder import LOG_FILE

    torch.set_num_threads(threads)
    keep_freed_memory()  # as the command line does in the driver
    folder = Path(run_dir)
    path = _local_checkpoint(checkpoint) if checkpoint is not None else None
    with library_output(folder / LOG_FILE):
        _log_line(
            folder / LOG_FILE,
            f"{cell.entry} seed {cell.seed}: started in process {os.getpid()} on "
            f"{socket.gethostname()} with {threads} thread(s)",
        )
        return run_cell(plan, folder, path, cell)


def _log_line(log_file: Path, message: str) -> None:
    """One line in the run's log file, in its format (appended: other workers write there too)."""
    from cycl_bench.logging.library_output import LOG_FORMAT

    record = logging.makeLogRecord({"name": __name__, "levelname": "INFO", "msg": message})
    with open(log_file, "a", encoding="utf-8") as file:
        file.write(logging.Formatter(LOG_FORMAT).format(record) + "\n")


def _local_checkpoint(data: bytes) -> Path:
    """The checkpoint's bytes as a file on this machine, named by their hash (written once)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"cycl_bench-checkpoint-{digest}.pt"
    if not path.is_file():
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(path)  # atomic: another worker never reads half a file
    return path
