"""One experiment run: resolved config -> spec -> stream -> pretraining -> executor -> files.

`prepare` checks the whole run (names, data source and folder, pretraining source, every strategy
parameter, and when resuming the results already there) and builds the stream before anything is
written, so a run that fails before training leaves nothing behind. `run` pretrains once (or
reuses the cache), hands every (strategy entry, seed) cell not yet finished to an executor
(`executors.py`: in this process, or Ray tasks), and alone writes the results files, as cells
finish. Where things go in the run folder: `run_folder.py`; what the results say about the run:
`run_record.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cycl_bench import run_folder
from cycl_bench.config import ExperimentConfig
from cycl_bench.data.base import Stream, default_data_root
from cycl_bench.errors import UserError, check_writable_folder
from cycl_bench.evaluation.results import Results, load_results, write_results
from cycl_bench.executors import Cell, Executor, LocalExecutor
from cycl_bench.pretrain.data import check_source
from cycl_bench.registry import BACKBONES, BENCHMARKS
from cycl_bench.run_record import entry_results, environment, method_info
from cycl_bench.spec import RunSpec, default_cache_dir


@dataclass
class Plan:
    """A run checked in full, its stream built, nothing written yet (`prepare`)."""

    config: ExperimentConfig
    """The selected strategy entries, each with every parameter resolved (defaults filled in)."""
    stream: Stream
    spec: RunSpec
    bits: dict[str, tuple[int, int, int]]
    """(weight, activation, gradient) bits each entry reports training and evaluating with."""

    @property
    def entries(self) -> list[str]:
        return list(self.config.strategy)

    @property
    def deployed_bits(self) -> int:
        """Weight bits of the evaluated backbone (32 for a float one); every entry shares it."""
        return self.spec.bits[0]


@dataclass
class RunOutcome:
    run_dir: Path
    results: list[Results] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


# -- checks --------------------------------------------------------------------------------


def build_stream(config: ExperimentConfig) -> Stream:
    data_root = Path(config.data_root) if config.data_root else default_data_root()
    return BENCHMARKS.build(
        config.benchmark.name,
        data=config.data,
        data_root=data_root,
        seed=config.benchmark.seed,
        **config.benchmark.options_for(config.data),
    )


def resolve_parameters(config: ExperimentConfig) -> ExperimentConfig:
    """Every strategy entry with all its parameters: the strategy's defaults, then the entry's."""
    from cycl_bench.strategies import strategy_defaults

    entries = {}
    for entry in config.strategy:
        name, params = config.strategy_of(entry)
        entries[entry] = {
            **({"use": name} if name != entry else {}),
            **strategy_defaults(name),
            **params,
        }
    return config.model_copy(update={"strategy": entries})


def check_parameters(
    config: ExperimentConfig, stream: Stream, spec: RunSpec
) -> dict[str, tuple[int, int, int]]:
    """Build every strategy once on a throwaway model, so a bad parameter stops the run before
    any training rather than after the strategies before it. Returns the (weight, activation,
    gradient) bits each entry reports it trains with (`ContinualStrategy.precision`)."""
    from cycl_bench.continual.loop import build_model
    from cycl_bench.strategies import build_strategy

    bits = {}
    for entry in config.strategy:
        name, params = config.strategy_of(entry)
        model = build_model(spec, stream.num_classes)
        try:
            built = build_strategy(name, model=model, params=params, device="cpu")
        except UserError as error:
            raise UserError(f"strategy.{entry}: {error}") from None
        bits[entry] = built.precision()
    return bits


def prepare(
    config: ExperimentConfig, *, resume: Path | None = None, cache_dir: Path | str | None = None
) -> Plan:
    """Check the whole run before anything is written, cheapest checks first: W&B mode, the
    benchmark, its data source, options and folder (its protocol, no image read), the backbone,
    the pretraining source, the strategies; for `resume`, the results already in that folder.
    Then build the stream, the run's spec and every strategy once (their parameters' values)."""
    from cycl_bench.data import protocol_hash, protocol_of
    from cycl_bench.logging.wandb_run import check_wandb_mode

    check_wandb_mode(config.wandb)  # a missing login fails now, not after pretraining
    protocol = protocol_of(
        config.benchmark.name,
        data=config.data,
        seed=config.benchmark.seed,
        **config.benchmark.options_for(config.data),
    )
    BACKBONES.get(config.backbone.name)
    check_source(config.pretrain)
    if config.pretrain.schedule != "none":
        # Lightning installs its console handler when first imported: import it now, so that
        # `logging.library_output` around the run finds the handler and sends it to run.log
        from cycl_bench.pretrain.run import trainer_launch

        trainer_launch(config.pretrain, config.device, rerunnable=False)  # devices, strategy
    if config.pretrain.schedule != "none":
        check_writable_folder(cache_dir or default_cache_dir(), "--cache-dir")
    config = resolve_parameters(config)
    if config.threads is None:
        import torch

        config = config.model_copy(update={"threads": torch.get_num_threads()})
    if resume is not None:
        for entry in config.strategy:
            run_folder.finished_seeds(resume, config, entry, protocol_hash(protocol))
    stream = build_stream(config)
    spec = RunSpec.from_config(config, stream.image_shape, cache_dir=cache_dir)
    return Plan(
        config=config, stream=stream, spec=spec, bits=check_parameters(config, stream, spec)
    )


# -- the run -------------------------------------------------------------------------------


def run(
    plan: Plan,
    run_dir: Path,
    *,
    executor: Executor | None = None,
    echo: Callable[[str], None] = print,
) -> RunOutcome:
    """Run (or continue) every strategy entry x seed of `plan` not yet in `run_dir`: pretrain
    once, then the cells on `executor` (default: one after another in this process); the
    results file of an entry is rewritten as each of its cells finishes."""
    from cycl_bench.evaluation.plots import plot_run
    from cycl_bench.logging.wandb_run import offline_sync_hint

    config, stream = plan.config, plan.stream
    echo(_describe_stream(stream))
    checkpoint, schedule_png = _pretrain(plan, run_dir, echo)
    env = environment()
    methods = {entry: method_info(config, entry, plan.bits[entry]) for entry in plan.entries}
    finished = {
        entry: run_folder.finished_seeds(run_dir, config, entry, stream.protocol_hash)
        for entry in plan.entries
    }
    for entry in plan.entries:
        path = run_folder.results_path(run_dir, entry)
        if path.is_file():  # a seed on file that `finished_seeds` dropped: its model is stale
            recorded = [seed.seed for seed in load_results(path).per_seed]
            for seed in (s for s in recorded if s not in finished[entry]):
                echo(
                    f"{entry} seed {seed}: its saved model is missing or not the one measured "
                    "(sha256); training it again"
                )
    cells = [Cell(entry, seed) for entry in plan.entries for seed in config.seeds]
    total, done = len(cells), 0
    for cell in cells:
        if cell.seed in finished[cell.entry]:
            done += 1
            echo(f"[{done}/{total}] {cell.entry} seed {cell.seed}: already done, kept")
    todo = [cell for cell in cells if cell.seed not in finished[cell.entry]]
    for outcome in (executor or LocalExecutor()).run(plan, run_dir, checkpoint, todo):
        cell, done = outcome.cell, done + 1
        finished[cell.entry][cell.seed] = outcome.result
        results = entry_results(
            config,
            stream,
            cell.entry,
            methods[cell.entry],
            list(finished[cell.entry].values()),
            env,
        )
        write_results(results, run_folder.results_path(run_dir, cell.entry))
        echo(
            f"[{done}/{total}] {cell.entry} seed {cell.seed}: final accuracy "
            f"{100 * outcome.result.final_accuracy:.1f}% ({outcome.wall_s:.1f} s)"
        )
    run_outcome = RunOutcome(run_dir=run_dir)
    run_outcome.results = [
        load_results(run_folder.results_path(run_dir, entry)) for entry in plan.entries
    ]
    plots_dir = Path(run_dir) / run_folder.PLOTS_DIR
    run_outcome.plots = plot_run(run_outcome.results, plots_dir, schedule_png)
    hint = offline_sync_hint(run_dir) if config.wandb == "offline" else None
    if hint:
        echo(hint)
    return run_outcome


def _describe_stream(stream: Stream) -> str:
    s = stream.summary()
    return (
        f"stream {s['benchmark']} ({s['data_source']} data): {s['experiences']} experiences, "
        f"{s['num_classes']} classes, train {sum(s['train_sizes'])} / test {sum(s['test_sizes'])} "
        f"images of {'x'.join(map(str, s['image_shape']))}, protocol {s['protocol_hash']}"
    )


def _pretrain(
    plan: Plan, run_dir: Path, echo: Callable[[str], None]
) -> tuple[Path | None, Path | None]:
    """The pretrained checkpoint (None without pretraining) and its schedule plot."""
    from cycl_bench.logging.console import precision_label
    from cycl_bench.pretrain.run import pretrain

    config, stream = plan.config, plan.stream
    if config.pretrain.schedule == "none":
        return None, None
    result = pretrain(
        config.pretrain,
        plan.spec,
        stream=stream,
        seed=config.benchmark.seed,
        out_dir=Path(run_dir) / "pretrain",
        data_root=Path(config.data_root) if config.data_root else None,
    )
    assert result is not None  # None only in the extra processes of a `rerunnable` pretraining
    origin = "reused from the cache" if result.from_cache else "trained"
    bits = precision_label(plan.deployed_bits)
    convention = ""
    if result.cpt_convention_reduction_vs_fp32 is not None:
        convention = f" (CPT/CycleBNN convention -{result.cpt_convention_reduction_vs_fp32:.1%})"
    echo(
        f"pretraining {origin}: {result.val_accuracy:.1%} at {bits}, "
        f"training BitOPs -{result.reduction_vs_fp32:.1%} vs FP32{convention} "
        f"({result.checkpoint})"
    )
    return result.checkpoint, result.schedule_png
