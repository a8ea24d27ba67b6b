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

On long streams a run may evaluate only after some experiences (`eval_every`): row r of the
matrix then follows experience e_r (`evaluated_after`, strictly increasing, the last row after
experience T-1; None means every experience, e_r = r). The definitions keep their form over the
evaluated rows: view j counts when a row before the last one was evaluated at or after l_j;
forgetting takes the max over those rows, BWT the first of them (the first evaluation after the
view was learned: A[l_j][j] itself whenever experience l_j was evaluated). With every experience
evaluated these are exactly the definitions above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]
Evaluated = Sequence[int] | None


def evaluated_rows(matrix: Matrix, evaluated_after: Evaluated = None) -> list[int]:
    """The experience each row of the matrix follows (checked against the matrix's shape)."""
    return _layout(matrix, evaluated_after)[0]


def _layout(matrix: Matrix, evaluated_after: Evaluated) -> tuple[list[int], int, int]:
    """(experience of each row, number of experiences T, number of views)."""
    rows = len(matrix)
    if rows == 0:
        raise ValueError("empty accuracy matrix")
    cols = len(matrix[0])
    if any(len(row) != cols for row in matrix):
        raise ValueError("accuracy matrix rows differ in length")
    after = list(range(rows)) if evaluated_after is None else [int(e) for e in evaluated_after]
    if len(after) != rows:
        raise ValueError(f"evaluated_after has {len(after)} entries for {rows} matrix rows")
    if after[0] < 0 or any(after[r + 1] <= after[r] for r in range(rows - 1)):
        raise ValueError("evaluated_after must be increasing experience indices from 0 on")
    experiences = after[-1] + 1
    if cols not in (experiences, 1):
        raise ValueError(
            f"accuracy matrix is {rows}x{cols} after {experiences} experiences: expected "
            f"{rows}x{experiences} or {rows}x1"
        )
    return after, experiences, cols


def first_learned(matrix: Matrix, evaluated_after: Evaluated = None) -> list[int]:
    """l_j: the experience that first learns each view."""
    _, experiences, cols = _layout(matrix, evaluated_after)
    return [0] if cols == 1 and experiences != 1 else list(range(cols))


def final_accuracy(
    matrix: Matrix, test_sizes: Sequence[int], evaluated_after: Evaluated = None
) -> float:
    _layout(matrix, evaluated_after)
    last = matrix[-1]
    if len(test_sizes) != len(last):
        raise ValueError("test_sizes must have one entry per test view")
    total = sum(test_sizes)
    return sum(a * n for a, n in zip(last, test_sizes, strict=True)) / total


def _forgotten_views(matrix: Matrix, evaluated_after: Evaluated) -> list[tuple[int, int]]:
    """(view j, first row evaluated at or after l_j) for the views with such a row before the
    last one: with every experience evaluated, (j, l_j) for l_j < T-1."""
    after, _, _ = _layout(matrix, evaluated_after)
    last = len(matrix) - 1
    views = []
    for j, lj in enumerate(first_learned(matrix, evaluated_after)):
        first = next(r for r, experience in enumerate(after) if experience >= lj)
        if first < last:
            views.append((j, first))
    return views


def average_forgetting(matrix: Matrix, evaluated_after: Evaluated = None) -> float:
    views = _forgotten_views(matrix, evaluated_after)
    if not views:
        return 0.0
    last = len(matrix) - 1
    drops = [max(matrix[r][j] for r in range(first, last)) - matrix[last][j] for j, first in views]
    return sum(drops) / len(drops)


def backward_transfer(matrix: Matrix, evaluated_after: Evaluated = None) -> float:
    views = _forgotten_views(matrix, evaluated_after)
    if not views:
        return 0.0
    last = len(matrix) - 1
    return sum(matrix[last][j] - matrix[first][j] for j, first in views) / len(views)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def accuracy_so_far(
    matrix: Matrix, test_sizes: Sequence[int], evaluated_after: Evaluated = None
) -> list[float]:
    """Accuracy after each evaluated experience on the test views learned so far (weighted by
    size).

    The curve a comparison plot draws (at `evaluated_rows`); its last point is the final accuracy.
    """
    after = evaluated_rows(matrix, evaluated_after)
    learned = first_learned(matrix, evaluated_after)
    if len(test_sizes) != len(learned):
        raise ValueError("test_sizes must have one entry per test view")
    curve = []
    for experience, row in zip(after, matrix, strict=True):
        seen = [j for j, lj in enumerate(learned) if lj <= experience]
        total = sum(test_sizes[j] for j in seen)
        curve.append(sum(row[j] * test_sizes[j] for j in seen) / total)
    return curve
