"""Fidelity report: overlap and KS scores, and the PNG + JSON it writes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from generator.compare import DESCRIPTORS, compare, histogram_edges, overlap_coefficient, run
from toy_statistics import toy_statistics


def test_overlap_of_identical_and_disjoint_samples():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 5000)
    edges = np.linspace(-10, 10, 81)
    assert overlap_coefficient(a, a, edges) == pytest.approx(1.0)
    assert overlap_coefficient(a, a + 8.0, edges) < 0.01
    half = overlap_coefficient(a, rng.normal(1.35, 1, 5000), edges)
    assert 0.4 < half < 0.6  # two unit normals 1.35 apart share ~50 %


def test_discrete_edges_are_unit_bins():
    edges = histogram_edges(np.array([1.0, 2.0]), np.array([4.0]), discrete=True, bins=10)
    np.testing.assert_array_equal(edges, [0.5, 1.5, 2.5, 3.5, 4.5])


def test_compare_scores_shifted_descriptor_worse():
    rng = np.random.default_rng(1)
    real = {k: rng.lognormal(1, 0.5, 3000) for k in DESCRIPTORS}
    same = {k: rng.lognormal(1, 0.5, 3000) for k in DESCRIPTORS}
    shifted = dict(same, volume=same["volume"] * 2.0)
    s1, s2 = compare(real, same), compare(real, shifted)
    assert s1["volume"]["overlap"] > 0.9 and s1["volume"]["ks"] < 0.05
    assert s2["volume"]["overlap"] < 0.7 and s2["volume"]["ks"] > 0.3
    assert s2["density_factor"] == s1["density_factor"]


def test_run_writes_png_and_json(tmp_path):
    cfg = OmegaConf.create({"n": 60, "bins": 20, "statistics_path": None, "output_dir": str(tmp_path), "seed": 3,
                            "generator": {}})
    scores = run(cfg, statistics=toy_statistics())
    report = json.loads((tmp_path / "fidelity.json").read_text())
    assert set(report["descriptors"]) == set(DESCRIPTORS) == set(scores)
    for s in report["descriptors"].values():
        assert 0.0 <= s["overlap"] <= 1.0 and 0.0 <= s["ks"] <= 1.0 and s["n_synthetic"] == 60
    assert (tmp_path / "fidelity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
