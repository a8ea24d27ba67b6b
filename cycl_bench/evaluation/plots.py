"""PNG plots of results files and precision schedules (matplotlib, headless Agg backend).

Figures have fixed sizes in inches at `DPI`, never a "tight" bounding box, so the pixel size of a
file depends only on its inputs' shape: `matrix_figure_size` says what it will be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cycl_bench.evaluation import metrics  # noqa: E402
from cycl_bench.evaluation.results import Results  # noqa: E402

DPI = 100
CURVES_SIZE = (8.0, 5.0)
SCHEDULE_SIZE = (8.0, 3.5)
ANNOTATED_CELLS = 40
"""Matrices up to this many rows and columns get a number in every cell; longer ones (a long
stream evaluated after every experience) keep the size of one this long, without numbers."""


def matrix_figure_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    """Inches: room for a readable annotation per cell, a colour bar and the axis labels."""
    n_rows, n_cols = min(n_rows, ANNOTATED_CELLS), min(n_cols, ANNOTATED_CELLS)
    return (max(5.0, 0.6 * n_cols + 3.0), max(3.5, 0.45 * n_rows + 2.0))


def _every_nth(count: int, most: int = ANNOTATED_CELLS) -> range:
    """Tick positions: all of them up to `most`, else evenly thinned to about `most`."""
    return range(0, count, -(-count // most))


VARIANT_MARK = "*"
UNTUNED_MARK = "~"


def parameter_deviations(results: Results) -> list[str]:
    """The parameters by which a configuration departs from its strategy's paper (a variant)."""
    return [item for item in results.method.deviations if "(paper:" in item]


def method_label(results: Results, differing: Set[str] = frozenset()) -> str:
    """The strategy entry's name (`cwr_star_rn`, `hq_cwr_star_8`), plus backbone and bit widths
    when they tell results apart; a variant of a published method is marked VARIANT_MARK,
    parameters no source fixes for the scenario UNTUNED_MARK (the table's notes say which)."""
    method = results.method
    parts = [str(results.config.get("strategy_entry") or method.strategy)]
    if "backbone" in differing:
        parts.append(method.backbone)
    if "bits" in differing:
        parts.append(f"W{method.weight_bits}A{method.activation_bits}G{method.gradient_bits}")
    marks = VARIANT_MARK * bool(parameter_deviations(results))
    marks += UNTUNED_MARK * bool(method.untuned)
    return " ".join(parts) + (f" {marks}" if marks else "")


def method_labels(results_list: Sequence[Results]) -> list[str]:
    """One label per results file, as short as the set of results allows."""
    differing = set()
    if len({r.method.backbone for r in results_list}) > 1:
        differing.add("backbone")
    bits = {
        (r.method.weight_bits, r.method.activation_bits, r.method.gradient_bits)
        for r in results_list
    }
    if len(bits) > 1:
        differing.add("bits")
    return [method_label(r, differing) for r in results_list]


def source_note(results_list: Sequence[Results]) -> str:
    """' (synthetic data)' etc. whenever the data is not the real dataset, '' otherwise."""
    sources = sorted({r.benchmark.data_source for r in results_list} - {"real"})
    return f" ({', '.join(sources)} data)" if sources else ""


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)
    return path


def plot_accuracy_matrix(results: Results, path: str | Path) -> Path:
    """Heatmap of the accuracy matrix, mean over seeds, in percent."""
    mean = np.mean([np.asarray(s.accuracy_matrix) for s in results.per_seed], axis=0) * 100
    n_rows, n_cols = mean.shape
    first = results.per_seed[0]
    after = metrics.evaluated_rows(first.accuracy_matrix, first.evaluated_after)
    figure, axes = plt.subplots(figsize=matrix_figure_size(n_rows, n_cols), layout="constrained")
    image = axes.imshow(mean, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, label="accuracy (%)")
    font_size = 9 if max(n_rows, n_cols) <= 10 else 6
    annotated = max(n_rows, n_cols) <= ANNOTATED_CELLS
    for i in range(n_rows if annotated else 0):
        for j in range(n_cols):
            colour = "black" if mean[i, j] > 60 else "white"
            text = f"{mean[i, j]:.1f}"
            axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=font_size)
    axes.set_xticks(_every_nth(n_cols))
    rows = _every_nth(n_rows)
    axes.set_yticks(rows, [str(after[i]) for i in rows])  # the experience each row follows
    axes.set_xlabel("test view j")
    axes.set_ylabel("trained up to experience i")
    seeds = len(results.per_seed)
    axes.set_title(
        f"{results.benchmark.name}{source_note([results])}: {results.method.strategy}, "
        f"mean of {seeds} seed{'s' if seeds != 1 else ''}",
        fontsize=10,
    )
    return _save(figure, path)


def _curve_mean_std(results: Results) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The experiences evaluated (those of the first seed: a run evaluates every seed after the
    same ones), and the mean and std over seeds of the accuracy so far after each."""
    curves = np.array(
        [
            metrics.accuracy_so_far(
                s.accuracy_matrix, results.benchmark.test_sizes, s.evaluated_after
            )
            for s in results.per_seed
        ]
    )
    first = results.per_seed[0]
    steps = np.array(metrics.evaluated_rows(first.accuracy_matrix, first.evaluated_after))
    std = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(curves.shape[1])
    return steps, curves.mean(axis=0) * 100, std * 100


def plot_accuracy_curves(results_list: Sequence[Results], path: str | Path) -> Path:
    """Accuracy on the test data seen so far after each experience: one line per method,
    mean over seeds with a +-1 std band."""
    if not results_list:
        raise ValueError("plot_accuracy_curves needs at least one results file")
    figure, axes = plt.subplots(figsize=CURVES_SIZE, layout="constrained")
    longest = 0
    for results, label in zip(results_list, method_labels(results_list), strict=True):
        steps, mean, std = _curve_mean_std(results)
        longest = max(longest, int(steps[-1]) + 1)
        (line,) = axes.plot(steps, mean, marker="o", markersize=4, label=label)
        axes.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if longest <= 20:
        axes.set_xticks(range(longest))  # else matplotlib's own ticks (long streams)
    axes.set_ylim(0, 100)
    axes.set_xlabel("after training experience")
    axes.set_ylabel("accuracy on views seen so far (%)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=9)
    names = ", ".join(sorted({r.benchmark.name for r in results_list}))
    axes.set_title(f"{names}{source_note(results_list)}: average accuracy", fontsize=10)
    return _save(figure, path)


def _change_points(bits: Sequence[int]) -> list[int]:
    """Steps where the bit width changes, plus the first and last: a step line through them is
    the full schedule, drawn from hundreds of points instead of every training step."""
    points = [0, *(t for t in range(1, len(bits)) if bits[t] != bits[t - 1])]
    return points if points[-1] == len(bits) - 1 else [*points, len(bits) - 1]


def plot_precision_schedule(
    steps_bits: Sequence[int] | Mapping[str, Sequence[int]],
    path: str | Path,
    *,
    title: str = "precision schedule",
) -> Path:
    """Bits applied at each training step.

    `steps_bits` is one bit width per step, or labelled series of equal length such as
    `{"weight": [...], "activation": [...]}`; identical series are drawn as one line.
    """
    series = {"bits": steps_bits} if not isinstance(steps_bits, Mapping) else dict(steps_bits)
    series = {label: [int(b) for b in bits] for label, bits in series.items()}
    lengths = {len(bits) for bits in series.values()}
    if not series or lengths == {0}:
        raise ValueError("plot_precision_schedule needs at least one step")
    if len(lengths) > 1:
        raise ValueError(f"precision series differ in length: {sorted(lengths)}")
    merged: dict[tuple[int, ...], list[str]] = {}
    for label, bits in series.items():
        merged.setdefault(tuple(bits), []).append(label)

    figure, axes = plt.subplots(figsize=SCHEDULE_SIZE, layout="constrained")
    for bits, labels in merged.items():
        label = f"{' = '.join(labels)} (mean {np.mean(bits):.2f})"
        steps = _change_points(bits)
        axes.step(steps, [bits[t] for t in steps], where="post", label=label)
    low = min(min(bits) for bits in merged)
    high = max(max(bits) for bits in merged)
    axes.set_yticks(range(low, high + 1))
    axes.set_ylim(low - 0.5, high + 0.5)
    axes.set_xlabel("training step")
    axes.set_ylabel("bits")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)  # off the lines
    axes.set_title(title, fontsize=10)
    return _save(figure, path)


def plot_run(results: Sequence[Results], folder: Path, schedule_png: Path | None) -> list[Path]:
    """A run's plots: the accuracy curves of every entry, each entry's accuracy matrix, and the
    pretraining schedule (already drawn by the pretraining) when there is one."""
    if not results:
        return []
    folder = Path(folder)
    paths = [plot_accuracy_curves(results, folder / "accuracy_curves.png")]
    for entry_results in results:
        entry = entry_results.config.get("strategy_entry", entry_results.method.strategy)
        paths.append(plot_accuracy_matrix(entry_results, folder / f"accuracy_matrix_{entry}.png"))
    if schedule_png and Path(schedule_png).is_file():
        paths.append(Path(schedule_png))
    return paths
