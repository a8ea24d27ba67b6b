"""The results file: one schema, derived numbers recomputable, readable errors for bad files.

The numbers of the file built here are worked out by hand (in the comments), not by the package:
a file the package reads back as consistent agrees with arithmetic it did not do itself.
"""

import json

import pytest
import reference_metrics

from cycl_bench.errors import UserError
from cycl_bench.evaluation.results import (
    BenchmarkInfo,
    MethodInfo,
    PretrainingInfo,
    Results,
    SeedResult,
    Stat,
    derived_mismatches,
    load_results,
    seed_metrics,
    write_results,
)

TEST_SIZES = [20, 10, 10]
MATRICES = [
    [[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.4, 0.6, 0.7]],
    [[0.8, 0.0, 0.0], [0.6, 0.7, 0.0], [0.5, 0.5, 0.9]],
]
# final accuracy: seed 0 (0.4*20 + 0.6*10 + 0.7*10) / 40 = 0.525, seed 1 (10 + 5 + 9) / 40 = 0.6
# forgetting (views 0 and 1): seed 0 ((0.9-0.4) + (0.8-0.6)) / 2 = 0.35, seed 1 (0.3 + 0.2) / 2
# BWT: the same drops, negative
BY_HAND = [
    {"final_accuracy": 0.525, "average_forgetting": 0.35, "bwt": -0.35, "train_time_s": 1.5},
    {"final_accuracy": 0.6, "average_forgetting": 0.25, "bwt": -0.25, "train_time_s": 2.5},
]
# mean and sample std of two values a, b: (a + b) / 2 and |a - b| / sqrt(2)
SUMMARY_BY_HAND = {
    "final_accuracy": Stat(mean=0.5625, std=0.053033008588991),
    "average_forgetting": Stat(mean=0.3, std=0.070710678118655),
    "bwt": Stat(mean=-0.3, std=0.070710678118655),
    "train_time_s": Stat(mean=2.0, std=0.707106781186548),
    "peak_memory_mb": Stat(mean=300.0, std=0.0),
    "train_bitops": Stat(mean=1e12, std=0.0),
    "bitops_reduction_vs_fp32": Stat(mean=0.9, std=0.0),
}


def seed_result(seed: int, matrix) -> SeedResult:
    return SeedResult(
        seed=seed,
        accuracy_matrix=matrix,
        final_accuracy=0.5,
        average_forgetting=0.0,
        bwt=0.0,
        train_time_s=1.5 + seed,
        peak_memory_mb=300.0,
        train_bitops=1e12,
        bitops_reduction_vs_fp32=0.9,
        model_size_bytes=1000,
    )


def make_results() -> Results:
    per_seed = [
        SeedResult(
            seed=seed,
            accuracy_matrix=matrix,
            **BY_HAND[seed],
            peak_memory_mb=300.0,
            train_bitops=1e12,
            bitops_reduction_vs_fp32=0.9,
            model_size_bytes=1000,
        )
        for seed, matrix in enumerate(MATRICES)
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
        summary={key: stat.model_copy() for key, stat in SUMMARY_BY_HAND.items()},
    )


def test_a_consistent_file_round_trips_and_has_no_mismatch(tmp_path):
    path = write_results(make_results(), tmp_path / "r.json")
    loaded = load_results(path)
    assert loaded == make_results()
    assert derived_mismatches(loaded) == []


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = Results.summarize(make_results().per_seed)
    for key, stat in SUMMARY_BY_HAND.items():
        assert summary[key].mean == pytest.approx(stat.mean, abs=1e-12), key
        assert summary[key].std == pytest.approx(stat.std, abs=1e-12), key


def test_per_seed_numbers_follow_from_the_matrix():
    for matrix, by_hand in zip(MATRICES, BY_HAND, strict=True):
        for computed in (
            seed_metrics(matrix, TEST_SIZES),
            reference_metrics.per_seed(matrix, TEST_SIZES),
        ):
            assert computed.keys() == {"final_accuracy", "average_forgetting", "bwt"}
            for key, value in computed.items():
                assert value == pytest.approx(by_hand[key], abs=1e-12), key


def test_the_reference_summary_agrees_with_the_hand_numbers():
    for key, stat in SUMMARY_BY_HAND.items():
        values = [getattr(seed, key) for seed in make_results().per_seed]
        assert reference_metrics.mean_std(values) == pytest.approx((stat.mean, stat.std)), key


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
    seed_result(0, [[0.5]])
    with pytest.raises(ValueError, match="accuracy_matrix"):
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
    with pytest.raises(UserError, match="not JSON"):
        load_results(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"schema_version": 1}')
    with pytest.raises(UserError, match="not a valid results file"):
        load_results(tmp_path / "other.json")


def write_json(tmp_path, data, name="r.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))  # NaN and Infinity as JSON's non-standard tokens
    return path


def refusal(path) -> str:
    with pytest.raises(UserError) as error:
        load_results(path)
    message = str(error.value)
    assert "\n" not in message
    return message


def as_json() -> dict:
    return json.loads(make_results().model_dump_json())


@pytest.mark.parametrize(
    "change, where",
    [
        (
            lambda d: d["summary"]["final_accuracy"].update(mean=float("nan")),
            "summary.final_accuracy.mean",
        ),
        (
            lambda d: d["per_seed"][0].update(peak_memory_mb=float("inf")),
            "per_seed[0].peak_memory_mb",
        ),
        (
            lambda d: d["per_seed"][1]["per_experience"].append(
                {"train_time_s": 1.0, "peak_memory_mb": float("-inf"), "train_bitops": 1.0}
            ),
            "per_seed[1].per_experience[0].peak_memory_mb",
        ),
        (lambda d: d["summary"]["bwt"].update(std=float("inf")), "summary.bwt.std"),
    ],
)
def test_a_number_that_is_not_finite_is_refused_with_its_path(tmp_path, change, where):
    data = as_json()
    change(data)
    message = refusal(write_json(tmp_path, data))
    assert f"({where}: Input should be a finite number)" in message


def test_a_non_finite_number_in_a_free_form_part_is_refused(tmp_path):
    data = as_json()
    data["method"]["params"] = {"lr": float("nan")}
    message = refusal(write_json(tmp_path, data))
    assert "method.params.lr" in message and "finite number" in message


def test_a_number_out_of_range_is_refused_with_its_path(tmp_path):
    data = as_json()
    data["per_seed"][1]["train_time_s"] = -2.0
    assert "per_seed[1].train_time_s: Input should be greater than or equal to 0" in refusal(
        write_json(tmp_path, data)
    )


@pytest.mark.parametrize(
    "key, value, bound",
    [
        ("train_bitops", 1e300, "less than or equal to"),
        ("bitops_reduction_vs_fp32", -1e300, "greater than or equal to 0"),
        ("peak_memory_mb", 1e300, "less than or equal to"),
        ("seed", -1, "greater than or equal to 0"),
    ],
)
def test_a_number_no_run_can_produce_is_refused_before_any_arithmetic(tmp_path, key, value, bound):
    # 1e300 squared overflows: the bound must refuse it before the summary is recomputed
    data = as_json()
    data["per_seed"][0][key] = value
    assert f"per_seed[0].{key}: Input should be {bound}" in refusal(write_json(tmp_path, data))


def test_a_summary_the_seeds_do_not_give_is_refused(tmp_path):
    data = as_json()
    data["summary"]["final_accuracy"]["mean"] = 0.6  # the seeds give 0.5625
    message = refusal(write_json(tmp_path, data))
    assert "summary.final_accuracy.mean: stored 0.6, the seeds give 0.5625" in message


def test_a_per_seed_number_the_matrix_does_not_give_is_refused(tmp_path):
    data = as_json()
    data["per_seed"][0]["bwt"] = -0.3  # the matrix gives -0.35
    assert "per_seed[0].bwt: stored -0.3, the matrix gives" in refusal(write_json(tmp_path, data))


def test_a_summary_key_that_is_no_per_seed_number_is_refused(tmp_path):
    data = as_json()
    data["summary"]["speedup"] = {"mean": 2.0, "std": 0.0}
    assert "summary.speedup: not a per-seed number" in refusal(write_json(tmp_path, data))


def test_a_seed_twice_is_refused(tmp_path):
    data = as_json()
    data["per_seed"][1]["seed"] = 0
    assert "per_seed[1].seed: seed 0 appears twice" in refusal(write_json(tmp_path, data))


def test_a_binary_file_is_refused(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert "binary data, not JSON text" in refusal(path)


def test_deeply_nested_json_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in refusal(path)


def test_a_truncated_file_is_refused(tmp_path):
    text = make_results().model_dump_json(indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    assert "is not a valid results file (not JSON: " in refusal(path)


def test_a_results_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A stop while the new file is written leaves the previous file as it was."""
    path = write_results(make_results(), tmp_path / "r.json")
    before = path.read_bytes()

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.fsync", stop)
    with pytest.raises(KeyboardInterrupt):
        write_results(make_results(), path)
    assert path.read_bytes() == before
