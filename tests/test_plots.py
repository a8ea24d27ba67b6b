import math

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
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size, len(set(image.convert("RGB").getdata()))


def inches_to_pixels(size):
    return (round(size[0] * plots.DPI), round(size[1] * plots.DPI))


@pytest.mark.parametrize(
    "matrices",
    [
        [nc_matrix(4), nc_matrix(4, 0.8)],  # NC: T x T
        [ni_matrix(8), ni_matrix(8, 0.1)],  # NI: T x 1
        [[[0.5]]],  # one experience, one seed
        [nc_matrix(20)],  # long stream: smaller annotations, bigger figure
    ],
    ids=["nc_4x4", "ni_8x1", "single", "nc_20x20"],
)
def test_accuracy_matrix_plot_is_a_png_sized_by_the_matrix_shape(tmp_path, matrices):
    path = plots.plot_accuracy_matrix(make_results(matrices), tmp_path / "sub" / "matrix.png")
    size, colours = png_size(path)
    n_rows, n_cols = len(matrices[0]), len(matrices[0][0])
    assert size == inches_to_pixels(plots.matrix_figure_size(n_rows, n_cols))
    assert colours > 50  # a drawn heatmap, not a blank canvas


def test_matrix_figure_grows_with_the_number_of_experiences():
    small, large = plots.matrix_figure_size(4, 4), plots.matrix_figure_size(20, 20)
    assert large[0] > small[0] and large[1] > small[1]


def test_accuracy_curves_plot_accepts_nc_and_ni_results_together(tmp_path):
    results_list = [
        make_results([nc_matrix(5), nc_matrix(5, 0.7)], strategy="naive"),
        make_results([nc_matrix(5, 0.5)], strategy="cwr_star", weight_bits=8),
        make_results([ni_matrix(8)], strategy="replay", source="synthetic"),
    ]
    path = plots.plot_accuracy_curves(results_list, tmp_path / "curves.png")
    size, colours = png_size(path)
    assert size == inches_to_pixels(plots.CURVES_SIZE)
    assert colours > 50


def test_accuracy_curves_plot_refuses_an_empty_list(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_accuracy_curves([], tmp_path / "curves.png")


def test_curve_ends_at_the_final_accuracy_and_counts_only_seen_views():
    matrix = nc_matrix(3)
    sizes = [10, 20, 30]
    curve = accuracy_so_far(matrix, sizes)
    assert curve[0] == pytest.approx(matrix[0][0])
    assert curve[1] == pytest.approx((matrix[1][0] * 10 + matrix[1][1] * 20) / 30)
    assert curve[-1] == pytest.approx(seed_metrics(matrix, sizes)["final_accuracy"])
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
    for path in (single, both, merged):
        size, colours = png_size(path)
        assert size == inches_to_pixels(plots.SCHEDULE_SIZE)
        assert colours > 20
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
