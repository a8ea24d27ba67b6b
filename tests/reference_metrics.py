"""An independent re-implementation of the derived numbers of a results file, written from the
README's formulas (section "Metrics") with numpy and the standard library, not from the package:
a test that compares the package's numbers with these checks arithmetic the package did not do.

A[i][j]: accuracy on test view j after experience i, T experiences, n_j test samples of view j.
"""

from __future__ import annotations

import statistics

import numpy as np


def final_accuracy(matrix, test_sizes) -> float:
    """sum_j A[T-1][j] n_j / sum_j n_j"""
    sizes = np.asarray(test_sizes, dtype=float)
    return float(np.asarray(matrix, dtype=float)[-1] @ sizes / sizes.sum())


def _views(matrix) -> list[tuple[int, int]]:
    """(view j, experience l_j that first learns it) for views learned before the last one: the
    diagonal when every experience has its view, experience 0 for a single shared view."""
    rows, cols = np.shape(matrix)
    learned = [0] if cols == 1 else list(range(cols))
    return [(j, lj) for j, lj in enumerate(learned) if lj < rows - 1]


def average_forgetting(matrix) -> float:
    """mean_j (max_{l_j <= i < T-1} A[i][j] - A[T-1][j])"""
    a = np.asarray(matrix, dtype=float)
    drops = [a[lj:-1, j].max() - a[-1, j] for j, lj in _views(matrix)]
    return float(np.mean(drops)) if drops else 0.0


def bwt(matrix) -> float:
    """mean_j (A[T-1][j] - A[l_j][j])"""
    a = np.asarray(matrix, dtype=float)
    changes = [a[-1, j] - a[lj, j] for j, lj in _views(matrix)]
    return float(np.mean(changes)) if changes else 0.0


def per_seed(matrix, test_sizes) -> dict[str, float]:
    return {
        "final_accuracy": final_accuracy(matrix, test_sizes),
        "average_forgetting": average_forgetting(matrix),
        "bwt": bwt(matrix),
    }


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
