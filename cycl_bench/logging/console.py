"""Plain-text tables for the terminal and log files: the strategy comparison and one results file.

No colour codes and ASCII only (`+-`, `|`, `-`), so a table pasted from a log reads the same.
Accuracies, forgetting and BWT are shown in percent (the results file stores fractions).
"""

from __future__ import annotations

from collections.abc import Sequence

from cycl_bench.evaluation import metrics
from cycl_bench.evaluation.plots import method_labels
from cycl_bench.evaluation.results import Results, SeedResult, Stat

# (header, summary key, scale, decimals)
COLUMNS = (
    ("final acc %", "final_accuracy", 100.0, 1),
    ("forgetting %", "average_forgetting", 100.0, 1),
    ("BWT %", "bwt", 100.0, 1),
    ("BitOPs saved %", "bitops_reduction_vs_fp32", 100.0, 1),
    ("train time s", "train_time_s", 1.0, 1),
    ("peak mem MB", "peak_memory_mb", 1.0, 0),
)
FAST_NOTE = "--fast run: shortened settings for a quick check, not comparable with full runs"
SYNTHETIC_NOTE = (
    "synthetic data: a procedurally generated stand-in for the real dataset; it ranks the "
    "methods on its own stream, not on the real one (leaderboards take real data only)"
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
    return notes


def comparison_table(results_list: Sequence[Results]) -> str:
    """The final table of an experiment: one row per results file, in the given order."""
    if not results_list:
        raise ValueError("comparison_table needs at least one results file")
    headers = ["method", *(header for header, *_ in COLUMNS), "seeds"]
    rows = []
    for results, label in zip(results_list, method_labels(results_list), strict=True):
        seeds = len(results.per_seed)
        cells = [
            format_stat(results.summary.get(key), scale=scale, decimals=decimals, seeds=seeds)
            for _, key, scale, decimals in COLUMNS
        ]
        rows.append([label, *cells, str(seeds)])
    lines = [_title(results_list), "", render_table(headers, rows), ""]
    lines += [f"note: {note}" for note in _notes(results_list)]
    return "\n".join(lines)


def _seed_row(seed: SeedResult) -> list[str]:
    cells = [str(seed.seed)]
    for _, key, scale, decimals in COLUMNS:
        cells.append(f"{getattr(seed, key) * scale:.{decimals}f}")
    return cells


def _percent_matrix(matrix: Sequence[Sequence[float]]) -> str:
    headers = ["after exp", *(f"view {j}" for j in range(len(matrix[0])))]
    rows = [[str(i), *(f"{100 * a:.1f}" for a in row)] for i, row in enumerate(matrix)]
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


def describe_results(results: Results, *, max_matrix_views: int = 12) -> str:
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
    lines += ["", _matrix_section(results, max_matrix_views)]
    return "\n".join(lines)


def _synthetic(results: Results) -> bool:
    return results.benchmark.data_source == "synthetic"


def _matrix_section(results: Results, max_views: int) -> str:
    matrices = [seed.accuracy_matrix for seed in results.per_seed]
    n_views = len(matrices[0][0])
    if n_views > max_views:
        return f"accuracy matrix: {len(matrices[0])}x{n_views}, too wide to print (see the plot)"
    mean = [
        [sum(m[i][j] for m in matrices) / len(matrices) for j in range(n_views)]
        for i in range(len(matrices[0]))
    ]
    title = "accuracy matrix % (row: after training experience i, column: test view j"
    title += f", mean of {len(matrices)} seeds)" if len(matrices) > 1 else ")"
    curve = metrics.accuracy_so_far(mean, results.benchmark.test_sizes)
    trail = "accuracy on views seen so far %: " + ", ".join(f"{100 * a:.1f}" for a in curve)
    return "\n".join([title, _percent_matrix(mean), "", trail])
