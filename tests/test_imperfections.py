"""Each imperfection stays within its configured ranges and is reproducible with a seed."""
from __future__ import annotations

import numpy as np
import pytest

from simulator.config import GPBackgroundConfig, ImpurityConfig, NoiseConfig, VecseiBackgroundConfig
from simulator.imperfections import GPBackground, ImpurityMix, Noise, VecseiBackground, preprocess

GRID = 5 + 0.01 * np.arange(8501)


def test_gp_background_normalisation_and_seed():
    bg = GPBackground(GPBackgroundConfig(enabled=True, scale_range=[10.0, 20.0], scale_sd=75.0))
    a = bg.sample(GRID, np.random.default_rng(1))
    np.testing.assert_array_equal(a, bg.sample(GRID, np.random.default_rng(1)))
    assert not np.array_equal(a, bg.sample(GRID, np.random.default_rng(2)))
    # minus its minimum, scaled so that its sum over the grid is the drawn factor in [10, 20]
    assert a.min() == pytest.approx(0.0, abs=1e-12)
    sums = [bg.sample(GRID, np.random.default_rng(s)).sum() for s in range(30)]
    assert 10.0 <= min(sums) and max(sums) <= 20.0
    # smooth: the RBF length scale (>= 7 deg) leaves no structure on the 0.01 deg scale
    assert np.abs(np.diff(a, 2)).max() < 1e-3 * a.max()


def test_gp_background_length_scale_matters():
    def roughness(length):
        bg = GPBackground(GPBackgroundConfig(enabled=True, length_scale=[length, length], scale_range=[50, 50]))
        return np.mean([np.abs(np.diff(bg.sample(GRID, np.random.default_rng(s)))).sum() for s in range(100)])
    # about 2.3 for the exact GP (eigen-decomposition of the RBF covariance on the same knots)
    assert roughness(7.0) > 1.8 * roughness(40.0)


def test_vecsei_background_bounded_and_seeded():
    bg = VecseiBackground(VecseiBackgroundConfig(enabled=True, probability=1.0))
    for seed in range(20):
        b = bg.sample(GRID, np.random.default_rng(seed))
        assert b.min() >= 0.0
        # four functions of height <= T, 3T/5 or polynomial |sum a_n| <= 3T/2, T = 0.1 / 4
        assert b.max() <= 0.1 / 4 * (1 + 1 + 1.5 + 0.6) + 1e-12
    np.testing.assert_array_equal(bg.sample(GRID, np.random.default_rng(3)), bg.sample(GRID, np.random.default_rng(3)))
    assert not VecseiBackground(VecseiBackgroundConfig(probability=0.0)).sample(GRID, np.random.default_rng(0)).any()


def test_noise_levels_within_ranges():
    flat = np.full(GRID.shape, 0.5)
    add = Noise(NoiseConfig(enabled=True, additive_sd=[0.01, 0.02], multiplicative_sd=[0.0, 0.0]))
    mult = Noise(NoiseConfig(enabled=True, additive_sd=[0.0, 0.0], multiplicative_sd=[0.1, 0.16]))
    for seed in range(10):
        sd_add = np.std(add(flat, GRID, np.random.default_rng(seed)))
        assert 0.0095 < sd_add < 0.0205
        sd_mult = np.std(mult(flat, GRID, np.random.default_rng(seed))) / 0.5
        assert 0.095 < sd_mult < 0.165
    np.testing.assert_array_equal(add(flat, GRID, np.random.default_rng(4)), add(flat, GRID, np.random.default_rng(4)))
    # multiplicative noise leaves zeros at zero
    assert not mult(np.zeros_like(GRID), GRID, np.random.default_rng(0)).any()


def test_multiplicative_noise_scales_the_additive_noise():
    # SI S4.2: additive noise is added first (step 6), then the sum is multiplied (step 7), so on a zero
    # pattern with both levels at 1 the output is e1 (1 + e2), of variance 2 (1 if the order were swapped)
    both = Noise(NoiseConfig(enabled=True, additive_sd=[1.0, 1.0], multiplicative_sd=[1.0, 1.0]))
    out = both(np.zeros(GRID.shape), GRID, np.random.default_rng(0))
    assert 1.8 < np.var(out) < 2.2


def test_impurity_weight_within_range():
    pure = np.zeros(GRID.shape)
    pure[100] = 2.0
    impurity = np.zeros(GRID.shape)
    impurity[200] = 4.0
    mix = ImpurityMix(ImpurityConfig(enabled=True, weight=[0.01, 0.05]))
    weights = [mix(pure, impurity, np.random.default_rng(s))[200] for s in range(50)]
    assert 0.01 <= min(weights) and max(weights) <= 0.05 and np.std(weights) > 0.005
    out = mix(pure, impurity, np.random.default_rng(0))
    assert out[100] + out[200] == pytest.approx(1.0)


def test_preprocess_scaling_and_sqrt():
    x = np.array([[2.0, 3.0, 6.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(preprocess(x, sqrt=False), [[0.0, 0.25, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(preprocess(x, sqrt=True)[0], [0.0, 0.5, 1.0])
    assert preprocess(x, sqrt=True).dtype == np.float32


def test_imperfect_pattern_config_end_to_end():
    from pathlib import Path

    from generator.crystal import SyntheticCrystal
    from simulator import PatternSimulator, SimulationConfig

    cfg = SimulationConfig.from_yaml(Path(__file__).resolve().parents[1] / "conf" / "simulation" / "imperfections.yaml")
    sim = PatternSimulator(cfg)
    crystals = [SyntheticCrystal(np.eye(3) * a, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([11, 17]), 221)
                for a in (3.9, 4.4)]
    a = sim.patterns(crystals, np.random.default_rng(7))
    b = sim.patterns(crystals, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 8501) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    pure = PatternSimulator(SimulationConfig.from_any({"sqrt": True})).patterns(crystals, np.random.default_rng(7))
    # background and noise leave almost no point at exactly the pure pattern's values
    assert np.mean(np.abs(a - pure) > 1e-3) > 0.5
