import pytest

from cycl_bench.evaluation.results import (
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    Stat,
    seed_metrics,
)
from cycl_bench.logging.console import (
    FAST_NOTE,
    SYNTHETIC_NOTE,
    comparison_table,
    describe_results,
    format_stat,
    render_table,
)

NC_MATRIX = [[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.3, 0.4, 0.7]]
NC_MATRIX_2 = [[0.8, 0.0, 0.0], [0.6, 0.7, 0.0], [0.4, 0.5, 0.6]]
NI_MATRIX = [[0.4], [0.5], [0.6]]


def seed_result(seed, matrix, test_sizes, *, time_s=10.0, memory_mb=250.0, reduction=0.8889):
    return SeedResult(
        seed=seed,
        accuracy_matrix=matrix,
        **seed_metrics(matrix, test_sizes),
        train_time_s=time_s,
        peak_memory_mb=memory_mb,
        train_bitops=1.2e14,
        bitops_reduction_vs_fp32=reduction,
        model_size_bytes=4096,
    )


def make_results(
    matrices,
    *,
    strategy="naive",
    backbone="tiny_bnn",
    weight_bits=1,
    source="real",
    fast=False,
    times=None,
):
    n_views = len(matrices[0][0])
    test_sizes = [100] * n_views
    times = times or [10.0 * (k + 1) for k in range(len(matrices))]
    per_seed = [
        seed_result(k, m, test_sizes, time_s=t)
        for k, (m, t) in enumerate(zip(matrices, times, strict=True))
    ]
    return Results(
        created_at="2026-01-01T00:00:00Z",
        cycl_bench_version="0.1.0",
        git_sha="0123456789abcdef0123",
        device="cpu",
        fast=fast,
        benchmark=BenchmarkInfo(
            name="core50_nc" if n_views > 1 else "core50_ni",
            scenario="nc" if n_views > 1 else "ni",
            data_source=source,
            protocol_hash="a1b2c3d4e5f60718",
            n_experiences=len(matrices[0]),
            test_sizes=test_sizes,
        ),
        method=MethodInfo(
            strategy=strategy,
            params={"lr": 0.01, "epochs": 2},
            backbone=backbone,
            weight_bits=weight_bits,
            activation_bits=1,
            gradient_bits=8,
            pretraining=PretrainingInfo(
                schedule="cyclic", mode="cyclebnn", min_bits=2, max_bits=6, cycles=8, epochs=3
            ),
        ),
        per_seed=per_seed,
        summary=Results.summarize(per_seed),
    )


def test_comparison_table_has_exact_headers_rows_and_notes():
    naive = make_results([NC_MATRIX, NC_MATRIX_2], strategy="naive", times=[10.0, 20.0])
    cwr = make_results([NC_MATRIX], strategy="cwr_star")
    assert comparison_table([naive, cwr]).splitlines() == [
        "core50_nc: real data, protocol a1b2c3d4e5f60718",
        "",
        "method   | final acc % | forgetting % |         BWT % | BitOPs saved % "
        "| train time s | peak mem MB | seeds",
        "---------+-------------+--------------+---------------+----------------"
        "+--------------+-------------+------",
        "naive    | 48.3 +- 2.4 | 40.0 +- 14.1 | -40.0 +- 14.1 |    88.9 +- 0.0 "
        "|  15.0 +- 7.1 |    250 +- 0 |     2",
        "cwr_star |        46.7 |         50.0 |         -50.0 |           88.9 "
        "|         10.0 |         250 |     1",
        "",
        "note: mean +- sample std over seeds; BitOPs saved = training BitOPs reduction vs FP32",
    ]


def test_a_latent_replay_memory_gets_a_column_of_its_payload():
    cwr = make_results([NC_MATRIX], strategy="cwr_star")
    ar1 = make_results([NC_MATRIX], strategy="ar1_star")
    # 480 activations of 64 x 8 x 8 values at 1 bit: 480 * 4096 / 8 = 245,760 bytes = 240 KB
    seeds = [ar1.per_seed[0].model_copy(update={"replay_buffer_bytes": 245_760})]
    ar1 = ar1.model_copy(update={"per_seed": seeds})
    lines = comparison_table([cwr, ar1]).splitlines()
    assert lines[2].split(" | ")[-2:] == ["latent mem KB", "seeds"]
    assert [line.split("|")[-2].strip() for line in lines[4:6]] == ["-", "240.0"]
    assert any(line.startswith("note: latent mem KB = ") for line in lines)
    assert "latent mem KB" not in comparison_table([cwr])


def test_synthetic_source_and_fast_flag_are_in_the_title_and_notes():
    results = make_results([NI_MATRIX], source="synthetic", fast=True)
    lines = comparison_table([results]).splitlines()
    assert lines[0] == "core50_ni: synthetic data, protocol a1b2c3d4e5f60718, --fast"
    assert f"note: {SYNTHETIC_NOTE}" in lines
    assert f"note: {FAST_NOTE}" in lines


def test_method_column_adds_backbone_and_bits_only_when_they_differ():
    binary = make_results([NI_MATRIX], strategy="cwr_star", weight_bits=1)
    eight_bit = make_results([NI_MATRIX], strategy="cwr_star", weight_bits=8, backbone="resnet18")
    rows = comparison_table([binary, eight_bit]).splitlines()[4:6]
    assert rows[0].startswith("cwr_star tiny_bnn W1A1G8 |")
    assert rows[1].startswith("cwr_star resnet18 W8A1G8 |")


def test_mixed_protocols_are_flagged():
    nc = make_results([NC_MATRIX])
    other = nc.model_copy(
        update={"benchmark": nc.benchmark.model_copy(update={"protocol_hash": "f" * 16})}
    )
    table = comparison_table([nc, other])
    assert (
        table.splitlines()[0] == "core50_nc: real data, protocol a1b2c3d4e5f60718, ffffffffffffffff"
    )
    assert "note: protocols differ" in table


def test_tables_are_plain_ascii_without_colour_codes():
    results = make_results([NC_MATRIX, NC_MATRIX], source="synthetic", fast=True)
    for text in (comparison_table([results]), describe_results(results)):
        assert text.isascii()
        assert "\x1b" not in text


def test_format_stat_shows_mean_and_std_or_the_mean_alone_for_one_seed():
    assert format_stat(Stat(mean=0.63214, std=0.01449), scale=100) == "63.2 +- 1.4"
    assert format_stat(Stat(mean=-0.05, std=0.0), scale=100, decimals=2) == "-5.00 +- 0.00"
    assert format_stat(Stat(mean=0.5, std=0.0), scale=100, seeds=1) == "50.0"
    assert format_stat(None) == "n/a"


def test_render_table_aligns_text_left_and_numbers_right():
    assert render_table(["name", "value"], [["a", "1.0"], ["longer", "10.5"]]).splitlines() == [
        "name   | value",
        "-------+------",
        "a      |   1.0",
        "longer |  10.5",
    ]


def test_comparison_table_refuses_an_empty_list():
    with pytest.raises(ValueError, match="at least one"):
        comparison_table([])


def test_describe_results_shows_benchmark_method_seeds_summary_and_matrix():
    results = make_results([NC_MATRIX, NC_MATRIX_2], strategy="ewc", times=[10.0, 20.0])
    lines = describe_results(results).splitlines()
    assert lines[:10] == [
        "core50_nc: ewc on tiny_bnn, real data",
        "",
        "benchmark    core50_nc (NC), 3 experiences",
        "data         real",
        "protocol     a1b2c3d4e5f60718",
        "test views   3 (sizes 100, 100, 100)",
        "strategy     ewc (epochs=2, lr=0.01)",
        "backbone     tiny_bnn, bits W1 A1 G8",
        "pretraining  cyclic (cyclebnn), 2..6 bits, 8 cycles, 3 epochs",
        "run          2026-01-01T00:00:00Z, cycl_bench 0.1.0 (git 0123456789) on cpu",
    ]
    per_seed_at = lines.index("per seed (2), mean +- sample std:")
    table = lines[per_seed_at + 1 : per_seed_at + 6]
    assert table == [
        "seed | final acc % | forgetting % |         BWT % | BitOPs saved % | train time s "
        "| peak mem MB",
        "-----+-------------+--------------+---------------+----------------+--------------"
        "+------------",
        "0    |        46.7 |         50.0 |         -50.0 |           88.9 |         10.0 "
        "|         250",
        "1    |        50.0 |         30.0 |         -30.0 |           88.9 |         20.0 "
        "|         250",
        "mean | 48.3 +- 2.4 | 40.0 +- 14.1 | -40.0 +- 14.1 |    88.9 +- 0.0 |  15.0 +- 7.1 "
        "|    250 +- 0",
    ]
    matrix_at = lines.index(
        "accuracy matrix % (row: after training experience i, column: test view j, mean of 2 seeds)"
    )
    assert lines[matrix_at + 1 : matrix_at + 6] == [
        "after exp | view 0 | view 1 | view 2",
        "----------+--------+--------+-------",
        "0         |   85.0 |    0.0 |    0.0",
        "1         |   55.0 |   75.0 |    0.0",
        "2         |   35.0 |   45.0 |   65.0",
    ]
    assert lines[-1] == "accuracy on views seen so far %: 85.0, 65.0, 48.3"


def test_describe_results_marks_synthetic_fast_runs_and_skips_wide_matrices():
    results = make_results([NC_MATRIX], source="synthetic", fast=True)
    text = describe_results(results, max_matrix_views=2)
    assert text.splitlines()[0] == "core50_nc: naive on tiny_bnn, synthetic data, --fast"
    assert "data         synthetic (procedurally generated)" in text
    assert text.splitlines()[-1] == ("accuracy matrix: 3x3, too wide to print (see the plot)")


def test_variants_and_untuned_parameters_are_marked_and_named_in_the_notes():
    published = make_results([NC_MATRIX], strategy="cwr_star")
    variant = published.model_copy(
        update={
            "method": published.method.model_copy(
                update={"deviations": ["equal_row_norms=true (paper: false)"]}
            ),
            "config": {"strategy_entry": "cwr_star_rn"},
        }
    )
    ewc = make_results([NC_MATRIX], strategy="ewc")
    ewc = ewc.model_copy(
        update={"method": ewc.method.model_copy(update={"untuned": ["ewc_lambda"]})}
    )
    lines = comparison_table([published, variant, ewc]).splitlines()
    assert [line.split("|")[0].rstrip() for line in lines[4:7]] == [
        "cwr_star",
        "cwr_star_rn *",
        "ewc ~",
    ]
    assert (
        "note: * cwr_star_rn: a variant of cwr_star: equal_row_norms=true (paper: false)" in lines
    )
    assert "note: ~ ewc: ewc_lambda untuned (no published value here)" in lines
