"""Continual-learning metrics, all derived from the accuracy matrix and the test-view sizes.

A[i][j] is the accuracy (a fraction in [0, 1]) on test view j after training experience i,
for T training experiences and M test views. Two layouts occur:
- M == T: one test view per experience (class-incremental streams, test set split by the
  classes of each experience). View j is first learned at experience j.
- M == 1: one shared test set (domain-incremental streams such as CORe50 NI). It is learned
  from experience 0 on.

Definitions (l_j = the experience at which view j is first learned):
- final accuracy: accuracy over the whole test set after the last experience,
  sum_j A[T-1][j] * n_j / sum_j n_j (Avalanche's stream accuracy).
- average forgetting (Chaudhry et al. 2018): mean over views with l_j < T-1 of
  max_{l_j <= i < T-1} A[i][j] - A[T-1][j].
- BWT (Lopez-Paz & Ranzato 2017): mean over the same views of A[T-1][j] - A[l_j][j];
  equal to minus Avalanche's StreamForgetting / equal to Avalanche's StreamBWT.
With a single experience there is nothing to forget: both are 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _shape(matrix: Matrix) -> tuple[int, int]:
    rows = len(matrix)
    if rows == 0:
        raise ValueError("empty accuracy matrix")
    cols = len(matrix[0])
    if any(len(row) != cols for row in matrix):
        raise ValueError("accuracy matrix rows differ in length")
    if cols not in (rows, 1):
        raise ValueError(f"accuracy matrix is {rows}x{cols}: expected {rows}x{rows} or {rows}x1")
    return rows, cols


def first_learned(matrix: Matrix) -> list[int]:
    rows, cols = _shape(matrix)
    return [0] if cols == 1 and rows != 1 else list(range(cols))


def final_accuracy(matrix: Matrix, test_sizes: Sequence[int]) -> float:
    _shape(matrix)
    last = matrix[-1]
    if len(test_sizes) != len(last):
        raise ValueError("test_sizes must have one entry per test view")
    total = sum(test_sizes)
    return sum(a * n for a, n in zip(last, test_sizes, strict=True)) / total


def _forgotten_views(matrix: Matrix) -> list[tuple[int, int]]:
    last = len(matrix) - 1
    return [(j, lj) for j, lj in enumerate(first_learned(matrix)) if lj < last]


def average_forgetting(matrix: Matrix) -> float:
    views = _forgotten_views(matrix)
    if not views:
        return 0.0
    last = len(matrix) - 1
    drops = [max(matrix[i][j] for i in range(lj, last)) - matrix[last][j] for j, lj in views]
    return sum(drops) / len(drops)


def backward_transfer(matrix: Matrix) -> float:
    views = _forgotten_views(matrix)
    if not views:
        return 0.0
    last = len(matrix) - 1
    return sum(matrix[last][j] - matrix[lj][j] for j, lj in views) / len(views)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def accuracy_so_far(matrix: Matrix, test_sizes: Sequence[int]) -> list[float]:
    """Accuracy after each experience on the test views learned so far (weighted by size).

    The curve a comparison plot draws; its last point is the final accuracy.
    """
    learned = first_learned(matrix)
    if len(test_sizes) != len(learned):
        raise ValueError("test_sizes must have one entry per test view")
    curve = []
    for i, row in enumerate(matrix):
        seen = [j for j, lj in enumerate(learned) if lj <= i]
        total = sum(test_sizes[j] for j in seen)
        curve.append(sum(row[j] * test_sizes[j] for j in seen) / total)
    return curve
