"""Plain-text tables for the terminal and log files: the strategy comparison and one results file.

No colour codes and ASCII only (`+-`, `|`, `-`), so a table pasted from a log reads the same.
Accuracies, forgetting and BWT are shown in percent (the results file stores fractions).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from cycl_bench.evaluation import metrics
from cycl_bench.evaluation.plots import (
    UNTUNED_MARK,
    VARIANT_MARK,
    method_labels,
    parameter_deviations,
)
from cycl_bench.evaluation.results import Results, SeedResult, Stat

if TYPE_CHECKING:
    from cycl_bench.data.base import Stream

# (header, summary key, scale, decimals)
COLUMNS = (
    ("final acc %", "final_accuracy", 100.0, 1),
    ("forgetting %", "average_forgetting", 100.0, 1),
    ("BWT %", "bwt", 100.0, 1),
    ("BitOPs saved %", "bitops_reduction_vs_fp32", 100.0, 1),
    ("train time s", "train_time_s", 1.0, 1),
    ("peak mem MB", "peak_memory_mb", 1.0, 0),
)
MEMORY_HEADER = "latent mem KB"
MEMORY_NOTE = (
    "latent mem KB = payload of the latent replay memory (stored activations, bit-packed at "
    "latent_bits; labels not counted)"
)
FAST_NOTE = "--fast run: shortened settings for a quick check, not comparable with full runs"
SYNTHETIC_NOTE = (
    "synthetic data: a procedurally generated stand-in for the real dataset; it ranks the "
    "methods on its own stream, not on the real one (the leaderboard shows such runs apart, "
    "as its synthetic reference track)"
)


def precision_label(bits: int) -> str:
    """'1-bit', or '32-bit (float)': a model without quantized layers computes at 32 bits."""
    return f"{bits}-bit (float)" if bits == 32 else f"{bits}-bit"


def format_stat(stat: Stat | None, *, scale: float = 1.0, decimals: int = 1, seeds: int = 2) -> str:
    """'63.2 +- 1.4'; the mean alone for a single seed (no spread to show); 'n/a' if missing."""
    if stat is None:
        return "n/a"
    mean = f"{stat.mean * scale:.{decimals}f}"
    if seeds < 2:
        return mean
    return f"{mean} +- {stat.std * scale:.{decimals}f}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Columns padded to their widest cell; the first `left` columns left-aligned (text), the
    rest right-aligned (numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if index < left else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return " | ".join(padded).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])


def _title(results_list: Sequence[Results]) -> str:
    names = ", ".join(dict.fromkeys(r.benchmark.name for r in results_list))
    hashes = ", ".join(dict.fromkeys(r.benchmark.protocol_hash for r in results_list))
    sources = ", ".join(dict.fromkeys(r.benchmark.data_source for r in results_list))
    title = f"{names}: {sources} data, protocol {hashes}"
    return title + (", --fast" if any(r.fast for r in results_list) else "")


def _notes(results_list: Sequence[Results]) -> list[str]:
    notes = [
        "mean +- sample std over seeds; BitOPs saved = training BitOPs reduction vs FP32",
    ]
    if any(r.benchmark.data_source == "synthetic" for r in results_list):
        notes.append(SYNTHETIC_NOTE)
    if any(r.fast for r in results_list):
        notes.append(FAST_NOTE)
    if len({r.benchmark.protocol_hash for r in results_list}) > 1:
        notes.append("protocols differ: these results were not measured on the same stream")
    labels = method_labels(results_list)
    for results, label in zip(results_list, labels, strict=True):
        if changed := parameter_deviations(results):
            name = label.rstrip(f" {VARIANT_MARK}{UNTUNED_MARK}")
            paper = results.method.strategy
            notes.append(f"{VARIANT_MARK} {name}: a variant of {paper}: {', '.join(changed)}")
    for results, label in zip(results_list, labels, strict=True):
        if results.method.untuned:
            name = label.rstrip(f" {VARIANT_MARK}{UNTUNED_MARK}")
            untuned = ", ".join(results.method.untuned)
            notes.append(f"{UNTUNED_MARK} {name}: {untuned} untuned (no published value here)")
    return notes


def comparison_table(results_list: Sequence[Results]) -> str:
    """The final table of an experiment: one row per results file, in the given order."""
    if not results_list:
        raise ValueError("comparison_table needs at least one results file")
    # the latent replay memory (AR1*, hq_cwr_star_lr): its payload, the same for every seed
    memories = [results.per_seed[0].replay_buffer_bytes for results in results_list]
    memory_column = [MEMORY_HEADER] if any(m is not None for m in memories) else []
    headers = ["method", *(header for header, *_ in COLUMNS), *memory_column, "seeds"]
    rows = []
    for results, label, memory in zip(
        results_list, method_labels(results_list), memories, strict=True
    ):
        seeds = len(results.per_seed)
        cells = [
            format_stat(results.summary.get(key), scale=scale, decimals=decimals, seeds=seeds)
            for _, key, scale, decimals in COLUMNS
        ]
        if memory_column:
            cells.append("-" if memory is None else f"{memory / 1024:.1f}")
        rows.append([label, *cells, str(seeds)])
    lines = [_title(results_list), "", render_table(headers, rows), ""]
    lines += [f"note: {note}" for note in _notes(results_list)]
    if memory_column:
        lines.append(f"note: {MEMORY_NOTE}")
    return "\n".join(lines)


def _seed_row(seed: SeedResult) -> list[str]:
    cells = [str(seed.seed)]
    for _, key, scale, decimals in COLUMNS:
        cells.append(f"{getattr(seed, key) * scale:.{decimals}f}")
    return cells


def _percent_matrix(matrix: Sequence[Sequence[float]], after: Sequence[int]) -> str:
    headers = ["after exp", *(f"view {j}" for j in range(len(matrix[0])))]
    rows = [
        [str(i), *(f"{100 * a:.1f}" for a in row)] for i, row in zip(after, matrix, strict=True)
    ]
    return render_table(headers, rows)


def _field_lines(fields: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in fields)
    return [f"{name.ljust(width)}  {value}" for name, value in fields]


def _pretraining(results: Results) -> str:
    pre = results.method.pretraining
    if pre.schedule == "none":
        return "none"
    parts = [pre.schedule + (f" ({pre.mode})" if pre.mode else "")]
    if pre.min_bits is not None and pre.max_bits is not None:
        parts.append(f"{pre.min_bits}..{pre.max_bits} bits")
    if pre.cycles is not None:
        parts.append(f"{pre.cycles} cycles")
    parts.append(f"{pre.epochs} epochs")
    if pre.eval_bits is not None:
        parts.append(f"evaluated at {pre.eval_bits} bits")
    return ", ".join(parts)


def describe_results(
    results: Results, *, max_matrix_views: int = 12, max_matrix_rows: int = 60
) -> str:
    """One results file, readably (the `show` command)."""
    bench, method = results.benchmark, results.method
    seeds = len(results.per_seed)
    params = ", ".join(f"{k}={v}" for k, v in sorted(method.params.items())) or "defaults"
    sizes = ", ".join(str(n) for n in bench.test_sizes)
    bits = f"W{method.weight_bits} A{method.activation_bits} G{method.gradient_bits}"
    created = f"{results.created_at}, cycl_bench {results.cycl_bench_version}"
    if results.git_sha:
        created += f" (git {results.git_sha[:10]})"
    fields = [
        (
            "benchmark",
            f"{bench.name} ({bench.scenario.upper()}), {bench.n_experiences} experiences",
        ),
        ("data", bench.data_source + (" (procedurally generated)" if _synthetic(results) else "")),
        ("protocol", bench.protocol_hash),
        ("test views", f"{len(bench.test_sizes)} (sizes {sizes})"),
        ("strategy", f"{method.strategy} ({params})"),
        ("backbone", f"{method.backbone}, bits {bits}"),
        ("pretraining", _pretraining(results)),
        ("run", f"{created} on {results.device}" + (", --fast" if results.fast else "")),
    ]
    headers = ["seed", *(header for header, *_ in COLUMNS)]
    summary_row = [
        "mean",
        *(
            format_stat(results.summary.get(key), scale=scale, decimals=decimals, seeds=seeds)
            for _, key, scale, decimals in COLUMNS
        ),
    ]
    seed_rows = [_seed_row(seed) for seed in results.per_seed]
    title = f"{bench.name}: {method.strategy} on {method.backbone}, {bench.data_source} data"
    lines = [title + (", --fast" if results.fast else ""), ""]
    lines += _field_lines(fields)
    lines += ["", f"per seed ({seeds}), mean +- sample std:"]
    lines.append(render_table(headers, [*seed_rows, summary_row]))
    lines += ["", _matrix_section(results, max_matrix_views, max_matrix_rows)]
    return "\n".join(lines)


def _synthetic(results: Results) -> bool:
    return results.benchmark.data_source == "synthetic"


def _matrix_section(results: Results, max_views: int, max_rows: int) -> str:
    matrices = [seed.accuracy_matrix for seed in results.per_seed]
    n_rows, n_views = len(matrices[0]), len(matrices[0][0])
    if n_views > max_views:
        return f"accuracy matrix: {n_rows}x{n_views}, too wide to print (see the plot)"
    if n_rows > max_rows:
        return f"accuracy matrix: {n_rows}x{n_views}, too long to print (see the plot)"
    first = results.per_seed[0].evaluated_after
    if any(seed.evaluated_after != first for seed in results.per_seed):
        return "accuracy matrix: the seeds were evaluated after different experiences (see each)"
    after = metrics.evaluated_rows(matrices[0], first)
    mean = [
        [sum(m[i][j] for m in matrices) / len(matrices) for j in range(n_views)]
        for i in range(n_rows)
    ]
    title = "accuracy matrix % (row: after training experience i, column: test view j"
    title += f", mean of {len(matrices)} seeds)" if len(matrices) > 1 else ")"
    curve = metrics.accuracy_so_far(mean, results.benchmark.test_sizes, after)
    trail = "accuracy on views seen so far %: " + ", ".join(f"{100 * a:.1f}" for a in curve)
    return "\n".join([title, _percent_matrix(mean, after), "", trail])


PROGRESS_FROM_EXPERIENCES = 20
"""Streams at least this long show where each cell is (CORe50 NICv2); shorter ones stay quiet."""


class ExperienceProgress:
    """`run_strategy`'s `on_experience` hook that says where a cell is on a long stream:
    `cwr_star seed 0: experience 40/391, accuracy 23.4%` (the accuracy on the test views seen so
    far at the last evaluation). On a terminal one line is rewritten after every experience;
    elsewhere (a log, a Ray worker) a line is printed at every tenth of the stream. Streams
    shorter than `PROGRESS_FROM_EXPERIENCES` print nothing: the cell's final line is enough."""

    def __init__(self, label: str, stream: Stream, *, out: TextIO | None = None) -> None:
        self.label = label
        self.total = stream.n_experiences
        self.test_sizes = stream.test_sizes
        self.out = out or sys.stdout
        self.active = self.total >= PROGRESS_FROM_EXPERIENCES
        self.live = self.active and self.out.isatty()
        self.every = max(1, round(self.total / 10))
        self.accuracy: float | None = None

    def __call__(self, index: int, info: dict[str, Any]) -> None:
        if not self.active:
            return
        row = info.get("accuracy_row")
        if row is not None:
            self.accuracy = self._seen_so_far(index, row)
        done = index + 1
        text = f"{self.label}: experience {done}/{self.total}"
        if self.accuracy is not None:
            text += f", accuracy {100 * self.accuracy:.1f}%"
        if self.live:
            end = "\n" if done == self.total else ""
            self.out.write(f"\r{text}\033[K{end}")
            self.out.flush()
        elif done % self.every == 0 or done == self.total:
            print(text, file=self.out, flush=True)

    def _seen_so_far(self, index: int, row: Sequence[float]) -> float:
        """Accuracy on the views learned by experience `index` (all of a shared test set)."""
        seen = range(len(row)) if len(row) == 1 else range(index + 1)
        total = sum(self.test_sizes[j] for j in seen)
        return sum(row[j] * self.test_sizes[j] for j in seen) / total
