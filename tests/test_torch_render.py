"""The torch renderer of peak payloads against the simulator's numpy/Numba path on the same draws.

Tolerances: float32 rendering may differ from the float64 simulator by float32 rounding; after the
min-max scaling and the sqrt the largest difference seen is ~3e-6, the tests allow 1e-4. Rendered
in float64 the two agree to 1e-6 (the float32 output's rounding).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.peak_batch import draw_peak_batch, render_reference
from cluster.torch_render import TorchRenderer
from simulator import PatternSimulator, SimulationConfig

sys.path.insert(0, str(Path(__file__).parent))
from toy_statistics import toy_statistics  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "simulation"
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
TOL = 1e-4


@pytest.fixture(scope="module")
def crystals():
    from generator import CrystalSampler

    return CrystalSampler(toy_statistics(), seed=0).sample_many(12)


def _measured(noise: bool, gaussian: bool = False) -> SimulationConfig:
    """The measured-pattern config; ``gaussian``: Gaussian peaks only (narrow windows, fast)."""
    cfg = SimulationConfig.from_yaml(CONF / "measured.yaml")
    cfg.counting.enabled = cfg.noise.enabled = noise
    if gaussian:
        cfg.profile.shape = "gaussian"
    return cfg


def test_payload_draws_reproduce_the_simulator(crystals):
    """Same seed, counting and noise off: the payload holds exactly the draws of PatternSimulator.patterns."""
    sim = PatternSimulator(_measured(noise=False))
    expected = sim.patterns(crystals, np.random.default_rng(3))
    batch = draw_peak_batch(sim, crystals, np.random.default_rng(3))
    assert batch.gp_knots is not None and batch.vecsei is not None and (batch.impurity_partner >= 0).all()
    assert (batch.window[:, 0] > 0).any() and (batch.hump[:, 2] > 0).any()        # windows and humps drawn
    assert np.abs(render_reference(batch, sim) - expected).max() <= 1e-6


def test_clean_share_skips_degradations_in_both_paths(crystals):
    """clean_probability: clean patterns are exactly the degradation-free ones, in the simulator and in
    peak payloads (neutral draws, the GP background empty), and the random stream stays aligned."""
    cfg = _measured(noise=False)
    cfg.clean_probability = 0.5
    sim = PatternSimulator(cfg)
    expected = sim.patterns(crystals, np.random.default_rng(4))
    batch = draw_peak_batch(sim, crystals, np.random.default_rng(4))
    clean = batch.gp_count == 0
    assert 0 < clean.sum() < len(crystals)
    assert (batch.impurity_partner[clean] == -1).all() and (batch.hump[clean, 2] == 0).all()
    assert (batch.window[clean] == [0, len(sim.grid) - 1]).all()
    assert np.abs(render_reference(batch, sim) - expected).max() <= 1e-6
    assert np.abs(TorchRenderer()(batch).numpy() - expected).max() <= TOL
    cfg_all = _measured(noise=False)
    cfg_all.clean_probability = 1.0
    off = _measured(noise=False)
    for part in (off.impurity, off.gp_background, off.vecsei_background, off.hump, off.window):
        part.enabled = False
    every = PatternSimulator(cfg_all).patterns(crystals[:4], np.random.default_rng(2))
    assert np.array_equal(every, PatternSimulator(off).patterns(crystals[:4], np.random.default_rng(2)))
    with pytest.raises(ValueError, match="clean_probability"):
        SimulationConfig.from_any({"clean_probability": 1.5})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["default", "measured"])
def test_torch_matches_numba_without_noise(crystals, device, name):
    cfg = SimulationConfig.from_yaml(CONF / f"{name}.yaml") if name == "default" else _measured(noise=False)
    sim = PatternSimulator(cfg)
    expected = sim.patterns(crystals[:6], np.random.default_rng(5))
    batch = draw_peak_batch(sim, crystals[:6], np.random.default_rng(5))
    out = TorchRenderer(device)(batch)
    assert out.device.type == device and out.dtype == torch.float32 and out.shape == expected.shape
    assert np.abs(out.cpu().numpy() - expected).max() <= TOL
    exact = TorchRenderer(device, torch.float64)(batch).cpu().numpy()
    assert np.abs(exact - expected).max() <= 1e-6


def test_ragged_peak_lists_and_a_crystal_without_peaks(crystals):
    """Peak lists of very different lengths, one of them empty: the flat per-peak rows give the Numba
    renderer's patterns, the empty one included."""
    from dataclasses import replace

    sim = PatternSimulator(_measured(noise=False))
    batch = draw_peak_batch(sim, crystals[:6], np.random.default_rng(7))
    counts = np.diff(batch.offsets)
    assert counts.max() > 2 * counts.min() > 0
    drop = slice(int(batch.offsets[2]), int(batch.offsets[3]))    # crystal 2 loses every peak
    keep = np.r_[0:drop.start, drop.stop:len(batch.two_theta)]
    offsets = batch.offsets.copy()
    offsets[3:] -= drop.stop - drop.start
    empty = replace(batch, two_theta=batch.two_theta[keep], intensity=batch.intensity[keep], offsets=offsets)
    expected = render_reference(empty, sim, np.random.default_rng(0))
    out = TorchRenderer("cpu")(empty).numpy()
    assert np.abs(out - expected).max() <= TOL
    assert not np.allclose(out[2], TorchRenderer("cpu")(batch).numpy()[2])


@pytest.mark.parametrize("device", DEVICES)
def test_noise_free_parts_and_noise_statistics(crystals, device):
    sim = PatternSimulator(_measured(noise=True, gaussian=True))
    batch = draw_peak_batch(sim, crystals[:6], np.random.default_rng(7), noise_seed=11)
    r = TorchRenderer(device, torch.float64)
    # the noise-free part equals the reference rendered without noise
    clean = r(batch, noise=False).cpu().numpy()
    assert np.abs(clean - render_reference(batch, sim, noise=False)).max() <= 1e-6
    base = r.intensities(batch, noise=False).cpu().numpy()
    noisy = r(batch).cpu().numpy()
    assert np.array_equal(noisy, r(batch).cpu().numpy())                        # one seed, one draw
    batch.noise_seed = 12
    assert not np.array_equal(noisy, r(batch).cpu().numpy())
    # counting noise alone: (drawn - mean) / sqrt(mean / scale) ~ N(0, 1), as numpy's counting_noise
    batch.noise = None
    batch.max_counts[:] = 2000.0
    counted = r.intensities(batch).cpu().numpy()
    scale = 2000.0 / base.max(axis=1, keepdims=True)
    bright = base * scale > 100
    z = (counted - base)[bright] / np.sqrt(base[bright] / scale.repeat(base.shape[1], 1)[bright])
    rng = np.random.default_rng(0)
    from simulator.measurement import counting_noise

    z_np = np.concatenate([((counting_noise(b, 2000.0, rng) - b) / np.sqrt(b / (2000.0 / b.max())))[b * 2000.0 / b.max() > 100]
                           for b in base])
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.05 and abs(z.std() - z_np.std()) < 0.05
    # Gaussian noise alone: additive sd and multiplicative sd recovered from the residuals
    batch.max_counts = None
    batch.noise = np.tile(np.array([0.01, 0.0, 0.0], np.float32), (len(batch), 1))
    assert abs((r.intensities(batch).cpu().numpy() - base).std() - 0.01) < 5e-4
    batch.noise[:] = (0.0, 0.05, 0.0)
    ratio = r.intensities(batch).cpu().numpy()[base > 0.05] / base[base > 0.05] - 1.0
    assert abs(ratio.std() - 0.05) < 3e-3 and abs(ratio.mean()) < 3e-3


def test_patterns_per_crystal_share_one_peak_list(crystals):
    sim = PatternSimulator(_measured(noise=False, gaussian=True))
    batch = draw_peak_batch(sim, crystals[:3], np.random.default_rng(1), patterns_per_crystal=3)
    assert len(batch) == 9 and len(batch.offsets) == 4
    assert np.array_equal(batch.crystal, np.repeat(np.arange(3), 3))
    assert (batch.impurity_partner // 3 != np.arange(9) // 3).all()              # never its own impurity
    out = TorchRenderer()(batch).numpy()
    assert np.abs(out - render_reference(batch, sim)).max() <= TOL
    assert not np.allclose(out[0], out[1])                                       # other profile and draws
    single = draw_peak_batch(sim, crystals[:3], np.random.default_rng(1))
    assert batch.nbytes < 3 * single.nbytes - 2 * single.two_theta.nbytes       # peaks are not repeated
    short = draw_peak_batch(sim, crystals[:3], np.random.default_rng(1), patterns_per_crystal=3, n_patterns=8)
    assert len(short) == 8 and np.array_equal(short.crystal, [0, 0, 0, 1, 1, 1, 2, 2])   # the last crystal twice
    assert np.abs(TorchRenderer()(short).numpy() - render_reference(short, sim)).max() <= TOL
    with pytest.raises(ValueError, match="n_patterns"):
        draw_peak_batch(sim, crystals[:3], np.random.default_rng(1), patterns_per_crystal=3, n_patterns=6)


def test_payload_is_smaller_and_checks_itself(crystals):
    sim = PatternSimulator(_measured(noise=True))
    batch = draw_peak_batch(sim, crystals, np.random.default_rng(2), labels=np.zeros(len(crystals)))
    assert batch.nbytes / len(batch) < 2 * sim.grid.shape[0]                     # below the float16 array
    assert batch.check(n_classes=3, input_length=sim.grid.shape[0]) is None
    assert "expects" in batch.check(n_classes=3, input_length=8501)
    batch.labels[0] = 5
    assert "labels" in batch.check(n_classes=3, input_length=sim.grid.shape[0])
