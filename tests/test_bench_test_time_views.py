"""benchmarks/bench_test_time_views.py: the views move peaks where a zero offset or a rescaled cell would."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark_module import benchmark_module

GRID = np.arange(5.0, 90.0 + 1e-9, 0.02)


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_test_time_views") as module:
        yield module


def _peak(two_theta: float, width: float = 0.1) -> np.ndarray:
    return np.exp(-0.5 * ((GRID - two_theta) / width) ** 2)[None, :].astype(np.float32)


@pytest.mark.parametrize("k", [-3, -1, 2])
def test_shift_moves_the_peak_by_whole_steps_and_zero_fills(bench, k):
    x = _peak(40.0)
    out = bench.shifted(x, k)
    assert GRID[out[0].argmax()] == pytest.approx(40.0 + 0.02 * k, abs=1e-9)
    if k > 0:
        assert np.all(out[0, :k] == 0)
    else:
        assert np.all(out[0, k:] == 0)


@pytest.mark.parametrize("s", [0.99, 1.01])
def test_scaled_cell_follows_bragg(bench, s):
    d = 1.5406 / (2 * np.sin(np.radians(30.0)))    # the d of a peak at 60 degrees
    expected = 2 * np.degrees(np.arcsin(1.5406 / (2 * d * s)))
    out = bench.scaled_cell(_peak(60.0), GRID, s)
    assert GRID[out[0].argmax()] == pytest.approx(expected, abs=0.02)
    assert abs(expected - 60.0) > 0.4              # larger cells move the peak to lower angles, and far enough to see


def test_right_at_counts_ranks_and_truths_outside(bench):
    classes = np.array([1, 2, 14, 225])
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    y = np.array([225, 14, 62])                     # right at rank 1, right at rank 3, outside the classes
    assert bench.right_at(p, y, classes, ks=(1, 3, 4)) == [1, 2, 2]
