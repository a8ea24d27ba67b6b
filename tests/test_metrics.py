"""The accuracy-matrix metrics, checked against hand computations and Avalanche's definitions."""

import pytest

from cycl_bench.evaluation import metrics

# 3 experiences, one test view per experience (class-incremental)
MATRIX = [
    [0.9, 0.0, 0.0],
    [0.5, 0.8, 0.0],
    [0.4, 0.6, 0.7],
]


def test_final_accuracy_weights_views_by_their_size():
    assert metrics.final_accuracy(MATRIX, [10, 10, 20]) == pytest.approx((4 + 6 + 14) / 40)


def test_forgetting_uses_the_best_earlier_accuracy():
    # view 0: max(0.9, 0.5) - 0.4 = 0.5; view 1: 0.8 - 0.6 = 0.2
    assert metrics.average_forgetting(MATRIX) == pytest.approx(0.35)


def test_forgetting_differs_from_minus_bwt_when_accuracy_peaks_later():
    matrix = [[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.4, 0.8, 0.7]]
    assert metrics.average_forgetting(matrix) == pytest.approx((0.5 + 0.0) / 2)
    assert metrics.backward_transfer(matrix) == pytest.approx((-0.1 + 0.0) / 2)


def test_bwt_is_final_minus_just_learned():
    # (0.4 - 0.9 + 0.6 - 0.8) / 2
    assert metrics.backward_transfer(MATRIX) == pytest.approx(-0.35)


def test_shared_test_set_is_learned_from_the_first_experience():
    matrix = [[0.5], [0.7], [0.6]]
    assert metrics.final_accuracy(matrix, [30]) == pytest.approx(0.6)
    assert metrics.average_forgetting(matrix) == pytest.approx(0.1)
    assert metrics.backward_transfer(matrix) == pytest.approx(0.1)


def test_single_experience_has_nothing_to_forget():
    assert metrics.average_forgetting([[0.7]]) == 0.0
    assert metrics.backward_transfer([[0.7]]) == 0.0


@pytest.mark.parametrize("matrix", [[], [[0.1, 0.2], [0.3]], [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]])
def test_malformed_matrices_are_refused(matrix):
    with pytest.raises(ValueError):
        metrics.average_forgetting(matrix)


def test_mean_std_is_the_sample_standard_deviation():
    assert metrics.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert metrics.mean_std([5.0]) == (5.0, 0.0)


def test_bwt_matches_avalanches_standalone_bwt_metric():
    from avalanche.evaluation.metrics.forgetting_bwt import BWT

    bwt = BWT()
    last = len(MATRIX) - 1
    for j in range(last):  # Avalanche averages over experiences trained before the last one
        bwt.update(j, MATRIX[j][j], initial=True)
        bwt.update(j, MATRIX[last][j])
    values = bwt.result()
    assert metrics.backward_transfer(MATRIX) == pytest.approx(sum(values.values()) / len(values))
