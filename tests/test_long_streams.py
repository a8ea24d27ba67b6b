"""Long streams (CORe50 NICv2): evaluation after every k-th experience, exact metrics over the
evaluated rows, evaluation time per experience, and progress on the console.

The numbers are worked out by hand in the comments, from the README's definitions over the
evaluated rows (row r follows experience e_r; view j counts when a row before the last was
evaluated at or after l_j; forgetting takes the max over those rows, BWT the first of them).
"""

import io
import json
import statistics

import pytest
from test_leaderboard_support import make_submission, write_submission

from cycl_bench import config
from cycl_bench.config import shipped_protocol, shipped_protocol_hash
from cycl_bench.continual.loop import evaluated_experiences, run_strategy
from cycl_bench.evaluation import metrics
from cycl_bench.evaluation.results import (
    SUMMARY_KEYS,
    Results,
    SeedResult,
    derived_mismatches,
    load_results,
    write_results,
)
from cycl_bench.leaderboard.validate import validate
from cycl_bench.logging.console import ExperienceProgress, describe_results
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec

# 5 experiences, one test view per experience, evaluated after experiences 0, 2 and 4
AFTER = [0, 2, 4]
MATRIX = [
    [0.9, 0.0, 0.0, 0.0, 0.0],
    [0.95, 0.7, 0.8, 0.0, 0.0],
    [0.5, 0.4, 0.6, 0.7, 0.9],
]
SIZES = [10, 10, 10, 10, 20]
# final: (5 + 4 + 6 + 7 + 18) / 60 = 2/3
# views learned before the last evaluated row: view 0 (first row 0), 1 and 2 (first row 1);
# views 3 and 4 are first evaluated in the last row: nothing to forget
# forgetting: view 0 max(0.9, 0.95) - 0.5 = 0.45, view 1 0.7 - 0.4 = 0.3, view 2 0.8 - 0.6 = 0.2
#   -> 0.95 / 3
# BWT: view 0 0.5 - 0.9 = -0.4, view 1 0.4 - 0.7 = -0.3, view 2 0.6 - 0.8 = -0.2 -> -0.3
BY_HAND = {"final_accuracy": 2 / 3, "average_forgetting": 0.95 / 3, "bwt": -0.3}
# accuracy on the views seen so far: after 0, view 0: 0.9; after 2, views 0..2 of 10 images
# each: (9.5 + 7 + 8) / 30; after 4: the final accuracy
CURVE_BY_HAND = [0.9, 24.5 / 30, 2 / 3]

# one shared test set (NICv2), evaluated after experiences 0, 10, 20 of 21
SHARED = [[0.2], [0.5], [0.45]]
# final 0.45; forgetting max(0.2, 0.5) - 0.45 = 0.05; BWT 0.45 - 0.2 = 0.25
SHARED_BY_HAND = {"final_accuracy": 0.45, "average_forgetting": 0.05, "bwt": 0.25}


@pytest.mark.parametrize(
    ("n", "every", "expected"),
    [
        (9, 1, list(range(9))),
        (9, 4, [0, 4, 8]),
        (10, 4, [0, 4, 8, 9]),
        (391, 10, [10 * i for i in range(40)]),  # 390 is the last: 40 rows
        (196, 5, [5 * i for i in range(40)]),
        (79, 2, [2 * i for i in range(40)]),
        (3, 10, [0, 2]),
    ],
)
def test_a_run_evaluates_after_the_first_every_kth_and_the_last_experience(n, every, expected):
    assert evaluated_experiences(n, every) == expected


def test_metrics_over_evaluated_rows_agree_with_the_hand_numbers():
    assert metrics.final_accuracy(MATRIX, SIZES, AFTER) == pytest.approx(BY_HAND["final_accuracy"])
    assert metrics.average_forgetting(MATRIX, AFTER) == pytest.approx(BY_HAND["average_forgetting"])
    assert metrics.backward_transfer(MATRIX, AFTER) == pytest.approx(BY_HAND["bwt"])
    assert metrics.accuracy_so_far(MATRIX, SIZES, AFTER) == pytest.approx(CURVE_BY_HAND)


def test_metrics_over_a_shared_test_set_evaluated_sparsely_agree_with_the_hand_numbers():
    after = [0, 10, 20]
    assert metrics.final_accuracy(SHARED, [450], after) == pytest.approx(0.45)
    assert metrics.average_forgetting(SHARED, after) == pytest.approx(0.05)
    assert metrics.backward_transfer(SHARED, after) == pytest.approx(0.25)


def test_every_experience_evaluated_is_the_plain_matrix():
    full = [[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.4, 0.6, 0.7]]
    for name in ("average_forgetting", "backward_transfer"):
        function = getattr(metrics, name)
        assert function(full, [0, 1, 2]) == function(full)


@pytest.mark.parametrize(
    ("after", "words"),
    [
        ([0, 2], "2 entries for 3 matrix rows"),
        ([0, 2, 2], "increasing"),
        ([0, 2, 5], "after 6 experiences"),  # 5 columns fit neither 6 views nor one
    ],
)
def test_rows_that_do_not_fit_their_experiences_are_refused(after, words):
    with pytest.raises(ValueError, match=words):
        metrics.average_forgetting(MATRIX, after)


def seed_result(seed: int, matrix, after, numbers) -> SeedResult:
    return SeedResult(
        seed=seed,
        evaluated_after=after,
        accuracy_matrix=matrix,
        **numbers,
        train_time_s=10.0,
        peak_memory_mb=300.0,
        train_bitops=1e12,
        bitops_reduction_vs_fp32=0.9,
        model_size_bytes=1000,
    )


def results_of(per_seed: list[SeedResult], n_experiences: int, sizes: list[int]) -> Results:
    data = make_submission(n_seeds=1)["results"]  # a consistent file's frame
    data["benchmark"].update(n_experiences=n_experiences, test_sizes=sizes)
    data["per_seed"] = [s.model_dump(mode="json") for s in per_seed]
    data["summary"] = {
        key: {
            "mean": statistics.fmean(getattr(s, key) for s in per_seed),
            "std": statistics.stdev(getattr(s, key) for s in per_seed) if len(per_seed) > 1 else 0,
        }
        for key in SUMMARY_KEYS
    }
    return Results.model_validate(data)


def test_a_results_file_with_evaluated_rows_is_consistent_and_round_trips(tmp_path):
    results = results_of([seed_result(0, MATRIX, AFTER, BY_HAND)], 5, SIZES)
    assert derived_mismatches(results) == []
    path = write_results(results, tmp_path / "r.json")
    assert json.loads(path.read_text())["per_seed"][0]["evaluated_after"] == AFTER
    assert load_results(path).per_seed[0].evaluated_after == AFTER


def test_a_number_the_evaluated_rows_do_not_give_is_reported():
    wrong = {**BY_HAND, "bwt": -0.4}  # what row 0 alone (view 0) would give
    results = results_of([seed_result(0, MATRIX, AFTER, wrong)], 5, SIZES)
    assert [where for where, _ in derived_mismatches(results)] == ["per_seed[0].bwt"]


def test_rows_must_end_after_the_last_experience():
    results = results_of([seed_result(0, MATRIX, AFTER, BY_HAND)], 6, SIZES)
    ((where, reason),) = derived_mismatches(results)
    assert where == "per_seed[0].evaluated_after" and "last experience" in reason


def test_the_seeds_of_a_file_must_be_evaluated_after_the_same_experiences():
    shifted = [0, 3, 4]  # the same matrix read as other experiences: other numbers too
    numbers = {
        "final_accuracy": 2 / 3,
        # views 0..3 before the last row: 0 (row 0), 1..3 (row 1); view 3 row 1 is 0.0
        "average_forgetting": (0.45 + 0.3 + 0.2 + (0.0 - 0.7)) / 4,
        "bwt": (-0.4 - 0.3 - 0.2 + 0.7) / 4,
    }
    results = results_of(
        [seed_result(0, MATRIX, AFTER, BY_HAND), seed_result(1, MATRIX, shifted, numbers)],
        5,
        SIZES,
    )
    assert [where for where, _ in derived_mismatches(results)] == ["per_seed[1].evaluated_after"]


def test_a_file_evaluated_after_every_experience_is_written_as_before(tmp_path):
    """A file of a run that evaluated after every experience (every file before eval_every)
    has neither `evaluated_after` nor `eval_time_s`, and reads back unchanged."""
    data = make_submission(n_seeds=1)["results"]
    cost = {"train_time_s": 1.0, "peak_memory_mb": 300.0, "train_bitops": 1e9}
    data["per_seed"][0]["per_experience"] = [cost] * 9
    path = write_results(Results.model_validate(data), tmp_path / "r.json")
    written = json.loads(path.read_text())
    assert written["per_seed"] == data["per_seed"]
    assert derived_mismatches(load_results(path)) == []


def nicv2_submission():
    """A reproduced core50_nicv2_391 entry, three seeds evaluated after 0, 200 and 390."""
    seeds = [
        # matrix, and by hand: final, forgetting max(A0, A1) - A2, BWT A2 - A0
        ([[0.10], [0.40], [0.35]], 0.35, 0.05, 0.25),
        ([[0.12], [0.30], [0.38]], 0.38, -0.08, 0.26),
        ([[0.08], [0.45], [0.41]], 0.41, 0.04, 0.33),
    ]
    data = make_submission("Sparse NICv2 entry")
    results = data["results"]
    results["benchmark"].update(
        name="core50_nicv2_391",
        scenario="nic",
        protocol=shipped_protocol("core50_nicv2_391"),
        protocol_hash=shipped_protocol_hash("core50_nicv2_391"),
        n_experiences=391,
        test_sizes=[44972],
    )
    for seed, (matrix, final, forgetting, bwt) in zip(results["per_seed"], seeds, strict=True):
        seed.update(
            evaluated_after=[0, 200, 390],
            accuracy_matrix=matrix,
            final_accuracy=final,
            average_forgetting=forgetting,
            bwt=bwt,
        )
    for key in ("final_accuracy", "average_forgetting", "bwt"):
        values = [seed[key] for seed in results["per_seed"]]
        results["summary"][key] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values),
        }
    return data


def test_the_leaderboard_accepts_a_sparsely_evaluated_run_whose_numbers_hold(tmp_path):
    path = write_submission(tmp_path, nicv2_submission())
    (checked,) = validate([path])
    assert checked.problems == []


def test_the_leaderboard_refuses_a_sparsely_evaluated_run_whose_numbers_do_not_hold(tmp_path):
    data = nicv2_submission()
    data["results"]["per_seed"][0]["average_forgetting"] = -0.05  # min instead of max
    path = write_submission(tmp_path, data)
    (checked,) = validate([path])
    problems = {p.where: p.reason for p in checked.problems}
    assert "the matrix gives 0.05" in problems["$.results.per_seed[0].average_forgetting"]


# -- the loop ----------------------------------------------------------------------------


SHORT = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 0}


@pytest.fixture(scope="module")
def nc_stream():
    return BENCHMARKS.build(
        "core50_nc", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


def run(stream, eval_every, calls):
    return run_strategy(
        stream,
        RunSpec.of("tiny_bnn", stream.image_shape),
        strategy="naive",
        params=SHORT,
        checkpoint=None,
        seed=0,
        eval_every=eval_every,
        on_experience=lambda index, info: calls.append((index, info)),
    )


@pytest.fixture(scope="module")
def every_and_every_fourth(nc_stream):
    calls = []
    return run(nc_stream, 1, []), run(nc_stream, 4, calls), calls


def test_sparse_evaluation_keeps_the_rows_of_the_evaluated_experiences(every_and_every_fourth):
    every, fourth, _ = every_and_every_fourth
    assert every.evaluated_after is None and len(every.accuracy_matrix) == 9
    assert fourth.evaluated_after == [0, 4, 8]
    assert fourth.accuracy_matrix == [every.accuracy_matrix[i] for i in (0, 4, 8)]
    assert fourth.final_accuracy == every.final_accuracy
    assert fourth.train_bitops == every.train_bitops  # evaluation does not change training


def test_sparse_evaluation_metrics_follow_the_formulas_over_its_rows(every_and_every_fourth):
    _, fourth, _ = every_and_every_fourth
    rows = fourth.accuracy_matrix
    views = [(0, 0), (1, 1), (2, 1), (3, 1), (4, 1)]  # (view, first row evaluated at/after it)
    drops = [max(rows[r][j] for r in range(first, 2)) - rows[2][j] for j, first in views]
    changes = [rows[2][j] - rows[first][j] for j, first in views]
    assert fourth.average_forgetting == pytest.approx(sum(drops) / 5, abs=1e-12)
    assert fourth.bwt == pytest.approx(sum(changes) / 5, abs=1e-12)


def test_each_evaluation_is_timed_and_reported_where_it_happened(every_and_every_fourth):
    every, fourth, calls = every_and_every_fourth
    assert all(cost.eval_time_s > 0 for cost in every.per_experience)
    timed = [i for i, cost in enumerate(fourth.per_experience) if cost.eval_time_s is not None]
    assert timed == [0, 4, 8]
    rows = [i for i, info in calls if info["accuracy_row"] is not None]
    assert rows == [0, 4, 8] and [index for index, _ in calls] == list(range(9))


# -- progress and configs ------------------------------------------------------------------


class FakeStream:
    def __init__(self, n_experiences, test_sizes=(100,)):
        self.n_experiences = n_experiences
        self.test_sizes = list(test_sizes)


def test_a_long_stream_shows_where_each_cell_is_at_every_tenth():
    out = io.StringIO()
    progress = ExperienceProgress("naive seed 0", FakeStream(40), out=out)
    for index in range(40):
        progress(index, {"accuracy_row": [0.25] if index % 10 == 0 else None})
    lines = out.getvalue().splitlines()
    assert lines[0] == "naive seed 0: experience 4/40, accuracy 25.0%"
    assert [line.split()[4] for line in lines] == [f"{4 * k}/40," for k in range(1, 11)]


def test_a_short_stream_prints_no_progress():
    out = io.StringIO()
    progress = ExperienceProgress("naive seed 0", FakeStream(9), out=out)
    for index in range(9):
        progress(index, {"accuracy_row": [0.5]})
    assert out.getvalue() == ""


def test_show_labels_each_row_with_the_experience_it_follows():
    results = results_of([seed_result(0, MATRIX, AFTER, BY_HAND)], 5, SIZES)
    text = describe_results(results)
    rows = [line.split("|")[0].strip() for line in text.splitlines() if line.count("|") == 5]
    assert rows[-3:] == ["0", "2", "4"]


@pytest.mark.parametrize(("experiment", "every"), [("79", 2), ("196", 5), ("391", 10)])
def test_the_nicv2_experiments_train_every_strategy_with_the_nicv2_protocol(experiment, every):
    resolved = config.resolve(f"core50_nicv2_{experiment}")
    assert resolved.benchmark.name == f"core50_nicv2_{experiment}"
    assert resolved.eval_every == every
    assert sorted(resolved.strategy) == sorted(
        ["ar1_star", "cwr_star", "ewc", "lwf", "naive", "cumulative"]
        + ["replay", "hq_cwr_star", "hq_cwr_star_lr"]
    )
    for params in resolved.strategy.values():
        assert params["first_optimizer"] == params["optimizer"] == "sgd"
        assert params["first_lr"] == params["lr"] == 0.001
        assert params["first_epochs"] == params["epochs"] == 4
        assert (params["batch_size"], params["momentum"], params["weight_decay"]) == (
            128,
            0.9,
            0.0005,
        )


def test_eval_every_is_one_unless_an_experiment_says_otherwise():
    assert config.resolve("core50_nc").eval_every == 1
    assert config.resolve("core50_nc", overrides=["eval_every=3"]).eval_every == 3


class RecordingSession:
    def __init__(self):
        self.logged = []

    def log_experience(self, index, metrics):
        self.logged.append((index, metrics))


def test_wandb_gets_the_costs_of_every_experience_and_the_accuracies_of_the_evaluated():
    from cycl_bench.logging.wandb_run import experience_logger

    session = RecordingSession()
    log = experience_logger(session, [450])
    log(0, {"accuracy_row": [0.25], "train_time_s": 2.0, "eval_time_s": 0.5})
    log(1, {"accuracy_row": None, "train_time_s": 1.0})
    (_, evaluated), (_, skipped) = session.logged
    assert evaluated["accuracy/seen_so_far"] == 0.25
    assert evaluated["experience/eval_time_s"] == 0.5
    assert skipped == {"experience/train_time_s": 1.0}


def test_the_site_labels_rows_and_points_with_the_experience_they_follow():
    from cycl_bench.leaderboard import svg

    curve = str(svg.accuracy_curve([[0.1, 0.4, 0.35]], [1, 201, 391]))
    assert "experience 201: 40.00%" in curve and "experience 391: 35.00%" in curve
    heatmap = str(svg.heatmap([[0.1], [0.4], [0.35]], [1, 201, 391]))
    assert "after experience 391, test view 1: 35.00%" in heatmap
