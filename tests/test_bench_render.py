"""benchmarks/bench_render.py times both renderers on the same payloads and reports their ratio."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmark_module import benchmark_module
from toy_statistics import toy_statistics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_render") as module:
        yield module


@pytest.fixture(scope="module")
def crystals():
    from generator import CrystalSampler

    return CrystalSampler(toy_statistics(), seed=0).sample_many(8)


def _row(bench, crystals, simulation: str) -> dict:
    from cluster.peak_batch import draw_peak_batch
    from simulator import PatternSimulator, SimulationConfig

    sim = PatternSimulator(SimulationConfig.from_yaml(ROOT / "conf" / "simulation" / f"{simulation}.yaml"))
    batches = [draw_peak_batch(sim, crystals, np.random.default_rng(seed)) for seed in (0, 1)]
    return bench.measure(sim, batches, repeat=1)


def test_both_renderers_are_timed_on_the_same_payloads(bench, crystals):
    default, measured = _row(bench, crystals, "default"), _row(bench, crystals, "measured")
    for row in (default, measured):
        for key in ("numba_patterns_per_s", "torch_cpu_patterns_per_s", "host_rows_patterns_per_s"):
            assert math.isfinite(row[key]) and row[key] > 0, key
        assert row["torch_cpu_over_numba"] == pytest.approx(row["torch_cpu_patterns_per_s"]
                                                            / row["numba_patterns_per_s"])
    # the broad Lorentzian tails of measured-looking peaks are what makes their rendering costly
    assert measured["profile_values_per_pattern"] > 2 * default["profile_values_per_pattern"] > 0
