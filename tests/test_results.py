"""The results file: one schema, derived numbers recomputable, readable errors for bad files."""

import json

import pytest

from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import (
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    derived_mismatches,
    load_results,
    seed_metrics,
    write_results,
)

TEST_SIZES = [20, 10, 10]


def seed_result(seed: int, matrix) -> SeedResult:
    return SeedResult(
        seed=seed,
        accuracy_matrix=matrix,
        **seed_metrics(matrix, TEST_SIZES),
        train_time_s=1.5 + seed,
        peak_memory_mb=300.0,
        train_bitops=1e12,
        bitops_reduction_vs_fp32=0.9,
        model_size_bytes=1000,
    )


def make_results() -> Results:
    per_seed = [
        seed_result(0, [[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.4, 0.6, 0.7]]),
        seed_result(1, [[0.8, 0.0, 0.0], [0.6, 0.7, 0.0], [0.5, 0.5, 0.9]]),
    ]
    return Results(
        created_at="2026-01-01T00:00:00+00:00",
        cycl_bench_version="0.1.0",
        device="cpu",
        benchmark=BenchmarkInfo(
            name="core50_nc",
            scenario="nc",
            data_source="synthetic",
            protocol_hash="abc",
            n_experiences=3,
            test_sizes=TEST_SIZES,
        ),
        method=MethodInfo(
            strategy="cwr_star",
            backbone="tiny_bnn",
            weight_bits=1,
            activation_bits=1,
            gradient_bits=32,
            pretraining=PretrainingInfo(schedule="cyclic", min_bits=2, max_bits=6, cycles=8),
        ),
        per_seed=per_seed,
        summary=Results.summarize(per_seed),
    )


def test_a_consistent_file_round_trips_and_has_no_mismatch(tmp_path):
    path = write_results(make_results(), tmp_path / "r.json")
    loaded = load_results(path)
    assert loaded == make_results()
    assert derived_mismatches(loaded) == []


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = make_results().summary
    assert summary["train_time_s"].mean == pytest.approx(2.0)
    assert summary["train_time_s"].std == pytest.approx(0.7071067811865476)


def test_tampered_numbers_are_reported_with_their_path():
    results = make_results()
    results.per_seed[1].final_accuracy += 0.01
    results.summary["bwt"].mean += 0.01
    paths = [path for path, _ in derived_mismatches(results)]
    assert "per_seed[1].final_accuracy" in paths
    assert "summary.bwt.mean" in paths
    assert "summary.final_accuracy.mean" in paths


def test_a_matrix_that_does_not_fit_the_benchmark_is_reported():
    results = make_results()
    results.benchmark.n_experiences = 4
    assert derived_mismatches(results)[0][0] == "per_seed[0].accuracy_matrix"


@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.1])
def test_accuracies_must_be_finite_fractions(value):
    with pytest.raises(ValueError):
        seed_result(0, [[value]])


def test_a_newer_schema_asks_for_an_upgrade(tmp_path):
    data = json.loads(make_results().model_dump_json())
    data["schema_version"] = 2
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="newer than this cycl_bench"):
        load_results(path)


def test_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no results file"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        load_results(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"schema_version": 1}')
    with pytest.raises(UserError, match="not a valid results file"):
        load_results(tmp_path / "other.json")
