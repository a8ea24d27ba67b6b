import math
from itertools import pairwise

import numpy as np
import pytest
from PIL import Image

from cycl_bench.evaluation import plots
from cycl_bench.evaluation.metrics import accuracy_so_far
from cycl_bench.evaluation.results import (
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    seed_metrics,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_results(matrices, *, strategy="naive", backbone="tiny_bnn", weight_bits=1, source="real"):
    n_rows, n_cols = len(matrices[0]), len(matrices[0][0])
    test_sizes = [10 * (j + 1) for j in range(n_cols)]
    per_seed = [
        SeedResult(
            seed=seed,
            accuracy_matrix=matrix,
            **seed_metrics(matrix, test_sizes),
            train_time_s=1.0 + seed,
            peak_memory_mb=100.0,
            train_bitops=1e9,
            bitops_reduction_vs_fp32=0.9,
            model_size_bytes=1000,
        )
        for seed, matrix in enumerate(matrices)
    ]
    return Results(
        created_at="2026-01-01T00:00:00Z",
        cycl_bench_version="0.1.0",
        device="cpu",
        benchmark=BenchmarkInfo(
            name="core50_nc" if n_cols > 1 else "core50_ni",
            scenario="nc" if n_cols > 1 else "ni",
            data_source=source,
            protocol_hash="0123456789abcdef",
            n_experiences=n_rows,
            test_sizes=test_sizes,
        ),
        method=MethodInfo(
            strategy=strategy,
            backbone=backbone,
            weight_bits=weight_bits,
            activation_bits=1,
            gradient_bits=8,
            pretraining=PretrainingInfo(schedule="none"),
        ),
        per_seed=per_seed,
        summary=Results.summarize(per_seed),
    )


def nc_matrix(n, scale=1.0):
    return [
        [scale * (0.9 - 0.8 * (i - j) / n) if j <= i else 0.0 for j in range(n)] for i in range(n)
    ]


def ni_matrix(n, offset=0.0):
    return [[min(1.0, 0.4 + 0.05 * i + offset)] for i in range(n)]


def png_size(path):
    """(width, height) as the PNG's header says (the IHDR chunk right after the signature),
    checked against the decoded image; and the number of distinct colours drawn."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == size
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint32)
    return size, len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))


# matplotlib's viridis at 0 and 1 (#fde725 and #440154): a cell at 100% and at 0%
YELLOW, PURPLE = (253, 231, 37), (68, 1, 84)


def checkerboard(n_rows, n_cols):
    """Accuracies alternating 0 and 1, so that neighbouring cells have the two end colours."""
    return [[float((i + j) % 2) for j in range(n_cols)] for i in range(n_rows)]


def colour_labels(pixels: np.ndarray) -> np.ndarray:
    """1 where a pixel is (within 3 levels) yellow, 2 where purple, 0 elsewhere."""
    near = [(np.abs(pixels - np.array(colour)) <= 3).all(axis=-1) for colour in (YELLOW, PURPLE)]
    return np.where(near[0], 1, np.where(near[1], 2, 0))


def cell_runs(label: np.ndarray) -> list[int]:
    """Pixel lengths of the longest run of alternating yellow and purple stretches along one
    line of labelled pixels (at most 2 px apart: an antialiased edge): the cells it crosses."""
    edges = [0, *(np.flatnonzero(np.diff(label)) + 1), len(label)]
    stretches = [(a, b, label[a]) for a, b in pairwise(edges) if label[a]]
    best, current = [], []
    for stretch in stretches:
        joins = current and stretch[0] - current[-1][1] <= 2 and stretch[2] != current[-1][2]
        current = [*current, stretch] if joins else [stretch]
        if (len(current), current[-1][1] - current[0][0]) > (
            len(best),
            best[-1][1] - best[0][0] if best else 0,
        ):
            best = current
    return [int(end - start) for start, end, _ in best]


def drawn_cells(path) -> tuple[list[int], list[int]]:
    """The widths and heights in pixels of a checkerboard's cells, measured on the image: the
    line of pixels (row, then column) crossing the most cells, which is one clear of the text."""
    with Image.open(path) as image:
        label = colour_labels(np.asarray(image.convert("RGB"), dtype=np.int16))

    def most(runs):  # the line crossing the most cells, the widest of those
        return len(runs), sum(runs)

    widths = max((cell_runs(row) for row in label if row.any()), key=most)
    heights = max((cell_runs(column) for column in label.T if column.any()), key=most)
    return widths, heights


# a cell holds its annotation ("100.0", 5 characters at up to 9 pt, about 0.6 em each:
# 9 / 72 * 100 px * 0.6 * 5 = 38 px wide, 12.5 px tall at 100 dpi) with room to spare
MIN_CELL_WIDTH, MIN_CELL_HEIGHT = 40, 24


@pytest.mark.parametrize(
    "n_rows, n_cols, seeds",
    [(4, 4, 2), (8, 1, 2), (1, 1, 1), (20, 20, 1)],  # NC: T x T; NI: T x 1; a long stream
    ids=["nc_4x4", "ni_8x1", "single", "nc_20x20"],
)
def test_accuracy_matrix_plot_draws_every_cell_large_enough_to_read(
    tmp_path, n_rows, n_cols, seeds
):
    matrices = [checkerboard(n_rows, n_cols)] * seeds
    path = plots.plot_accuracy_matrix(make_results(matrices), tmp_path / "sub" / "matrix.png")
    (width, height), colours = png_size(path)
    assert colours > 50  # a drawn heatmap with its colour bar, not a blank canvas
    widths, heights = drawn_cells(path)
    assert (len(widths), len(heights)) == (n_cols, n_rows)  # one cell per entry, measured
    assert min(widths) >= MIN_CELL_WIDTH and min(heights) >= MIN_CELL_HEIGHT
    assert max(widths) - min(widths) <= 4 and max(heights) - min(heights) <= 4  # a grid
    assert sum(widths) < width and sum(heights) < height  # room for labels and colour bar


def test_matrix_figure_grows_with_the_number_of_experiences(tmp_path):
    sizes = {}
    for n in (3, 9):
        path = plots.plot_accuracy_matrix(make_results([nc_matrix(n)]), tmp_path / f"{n}.png")
        sizes[n], _ = png_size(path)
    assert sizes[9][0] > sizes[3][0] and sizes[9][1] > sizes[3][1]


def test_accuracy_curves_plot_accepts_nc_and_ni_results_together(tmp_path):
    results_list = [
        make_results([nc_matrix(5), nc_matrix(5, 0.7)], strategy="naive"),
        make_results([nc_matrix(5, 0.5)], strategy="cwr_star", weight_bits=8),
        make_results([ni_matrix(8)], strategy="replay", source="synthetic"),
    ]
    path = plots.plot_accuracy_curves(results_list, tmp_path / "curves.png")
    (width, height), colours = png_size(path)
    assert colours > 50
    assert width > height >= 300  # a landscape figure
    one = plots.plot_accuracy_curves(results_list[:1], tmp_path / "one.png")
    assert png_size(one)[0] == (width, height)  # the same size however many methods it draws


def test_accuracy_curves_plot_refuses_an_empty_list(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_accuracy_curves([], tmp_path / "curves.png")


def test_curve_ends_at_the_final_accuracy_and_counts_only_seen_views():
    matrix = [[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.4, 0.6, 0.7]]
    # by hand: 0.9; (0.6 * 10 + 0.8 * 20) / 30 = 22 / 30; the final accuracy, over every view,
    # (0.4 * 10 + 0.6 * 20 + 0.7 * 30) / 60 = 37 / 60
    assert accuracy_so_far(matrix, [10, 20, 30]) == pytest.approx([0.9, 22 / 30, 37 / 60])
    assert accuracy_so_far(ni_matrix(4), [50]) == pytest.approx([0.4, 0.45, 0.5, 0.55])


def test_precision_schedule_plot_accepts_one_series_or_weight_and_activation(tmp_path):
    cycle = [round(2 + 2 * (1 - math.cos(math.pi * (t % 25) / 25))) for t in range(200)]
    single = plots.plot_precision_schedule(cycle, tmp_path / "single.png")
    both = plots.plot_precision_schedule(
        {"weight": cycle, "activation": [8] * len(cycle)}, tmp_path / "both.png"
    )
    merged = plots.plot_precision_schedule(
        {"weight": cycle, "activation": cycle}, tmp_path / "merged.png"
    )
    sizes = set()
    for path in (single, both, merged):
        size, colours = png_size(path)
        sizes.add(size)
        assert colours > 20
    ((width, height),) = sizes  # one size, whatever the series
    assert width > height >= 200
    assert both.read_bytes() != merged.read_bytes()


def test_schedule_is_drawn_through_its_change_points():
    assert plots._change_points([2, 2, 3, 3, 3, 2]) == [0, 2, 5]
    assert plots._change_points([2, 2, 3, 3, 3, 3]) == [0, 2, 5]
    assert plots._change_points([4]) == [0]


def test_precision_schedule_plot_rejects_empty_or_ragged_series(tmp_path):
    with pytest.raises(ValueError, match="at least one step"):
        plots.plot_precision_schedule([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="differ in length"):
        plots.plot_precision_schedule({"weight": [1, 2], "activation": [1]}, tmp_path / "x.png")


def test_labels_name_backbone_and_bits_only_when_they_differ():
    same = [make_results([ni_matrix(2)], strategy=s) for s in ("naive", "ewc")]
    assert plots.method_labels(same) == ["naive", "ewc"]
    mixed = [
        make_results([ni_matrix(2)], strategy="naive", weight_bits=1),
        make_results([ni_matrix(2)], strategy="naive", weight_bits=8, backbone="resnet18"),
    ]
    assert plots.method_labels(mixed) == ["naive tiny_bnn W1A1G8", "naive resnet18 W8A1G8"]


def test_source_note_marks_synthetic_data():
    assert plots.source_note([make_results([ni_matrix(2)])]) == ""
    synthetic = make_results([ni_matrix(2)], source="synthetic")
    assert plots.source_note([synthetic]) == " (synthetic data)"
