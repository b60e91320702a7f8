"""The laboratory effects of simulator.measurement against their physics, and the measured config end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator import PatternSimulator
from simulator import measurement as meas
from simulator.config import SimulationConfig
from simulator.laue import standard_laue_rotations
from simulator.peaks import simulate_peaks

CONF = Path(__file__).resolve().parents[1] / "conf" / "simulation"


def _cubic(a=4.0):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _tetragonal():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.tetragonal(4.0, 6.0), ["Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.3]])


def _cell_lengths(lattice):
    return np.sort(np.linalg.norm(lattice, axis=1))


def test_strain_keeps_cubic_cubic_and_scales_isotropically():
    lat = 4.0 * np.eye(3)
    rot = standard_laue_rotations(221)
    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.05, (3, 3))
    e -= np.trace(e) / 3 * np.eye(3)
    new = meas.strained_lattice(lat, rot, 0.02, e)
    # a traceless anisotropic part averages out over the cubic group: only the isotropic 2 % remains
    np.testing.assert_allclose(_cell_lengths(new), [4.08] * 3, rtol=1e-9)
    g = new @ new.T
    np.testing.assert_allclose(g - np.diag(np.diag(g)), 0.0, atol=1e-9)


def test_strain_changes_tetragonal_a_and_c_independently():
    lat = np.diag([4.0, 4.0, 6.0])
    rot = standard_laue_rotations(123)
    e = np.zeros((3, 3))
    e[2, 2] = 0.04  # reciprocal metric c*^2 up 4 %: c shorter by ~2 %
    new = meas.strained_lattice(lat, rot, 0.0, e)
    lengths = np.linalg.norm(new, axis=1)
    assert lengths[0] == pytest.approx(4.0) and lengths[1] == pytest.approx(4.0)
    assert lengths[2] == pytest.approx(6.0 / np.sqrt(1.04))
    # with only the Friedel pair any strain is allowed: a and b may then differ
    new_p1 = meas.strained_lattice(lat, np.array([np.eye(3, dtype=int)]), 0.0, np.diag([0.04, 0.0, 0.0]))
    assert np.linalg.norm(new_p1[0]) != pytest.approx(np.linalg.norm(new_p1[1]))


def test_march_dollase_platelets_favour_the_axis():
    lat = np.diag([4.0, 4.0, 6.0])
    rot = standard_laue_rotations(123)
    hkl = np.array([[0, 0, 1], [1, 0, 0], [1, 1, 0]])
    f = meas.march_dollase(hkl, lat, rot, np.array([0, 0, 1.0]), 0.7)
    assert f[0] == pytest.approx(0.7 ** -3)  # along the axis: r^-3
    assert f[1] == pytest.approx(0.7 ** 1.5)  # perpendicular: r^(3/2)
    np.testing.assert_allclose(meas.march_dollase(hkl, lat, rot, np.array([0, 0, 1.0]), 1.0), 1.0)
    # cubic: 100 orbit averaged over its three axes, the same whichever axis is preferred
    cub = 4.0 * np.eye(3)
    crot = standard_laue_rotations(221)
    a = meas.march_dollase(np.array([[1, 0, 0]]), cub, crot, np.array([0, 0, 1.0]), 0.7)
    b = meas.march_dollase(np.array([[0, 1, 0]]), cub, crot, np.array([1, 0, 0.0]), 0.7)
    assert a[0] == pytest.approx(b[0])
    assert a[0] == pytest.approx((0.7 ** -3 + 2 * 0.7 ** 1.5) / 3)


def test_shifts_zero_offset_and_displacement():
    tt = np.array([20.0, 60.0, 120.0])
    np.testing.assert_allclose(meas.shifted_positions(tt, 0.1, 0.0, 240.0), tt + 0.1)
    d = meas.shifted_positions(tt, 0.0, 0.24, 240.0) - tt
    np.testing.assert_allclose(d, -np.degrees(2 * 0.24 * np.cos(np.radians(tt / 2)) / 240.0))
    assert abs(d[0]) > abs(d[2])  # displacement shifts low angles most


def test_counting_noise_is_poisson():
    rng = np.random.default_rng(0)
    x = np.full(20000, 0.25)
    y = meas.counting_noise(np.r_[1.0, x], 400.0, rng)[1:]
    # 0.25 of 400 counts = 100 counts: relative sd 1/sqrt(100)
    assert y.mean() == pytest.approx(0.25, rel=0.01)
    assert y.std() / 0.25 == pytest.approx(0.1, rel=0.05)


def test_fill_outside_makes_uncovered_points_read_zero():
    x = np.array([[5.0, 2.0, 3.0, 9.0], [1.0, 4.0, 6.0, 0.0]])
    mask = np.array([False, True, True, False])
    np.testing.assert_array_equal(meas.fill_outside(x, mask), [[2.0, 2.0, 3.0, 2.0], [4.0, 4.0, 6.0, 4.0]])
    sim = PatternSimulator({"grid": {"two_theta_min": 5.0, "two_theta_max": 5.03, "step": 0.01}})
    out = sim.preprocess(x, mask)
    np.testing.assert_allclose(out[:, [0, 3]], 0.0)
    assert out.max() == pytest.approx(1.0)


def test_measured_config_patterns():
    cfg = SimulationConfig.from_yaml(CONF / "measured.yaml")
    sim = PatternSimulator(cfg)
    crystals = [_cubic(), _tetragonal(), _cubic(5.0), _tetragonal()]
    a = sim.patterns(crystals, np.random.default_rng(3))
    np.testing.assert_array_equal(a, sim.patterns(crystals, np.random.default_rng(3)))
    assert a.shape == (4, sim.grid.shape[0]) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
    # over many draws some scans are windowed: zeros at the grid's ends
    b = sim.patterns([_cubic()] * 40, np.random.default_rng(4))
    assert (b[:, :50].max(axis=1) == 0).sum() >= 5
    # strain moves the peaks of a cubic cell without splitting them: one common d-spacing ratio
    plain = sim.peaks(_cubic())
    strained = sim.peaks(_cubic(), np.random.default_rng(7))
    ratio = np.sin(np.radians(strained.two_theta[:5] / 2)) / np.sin(np.radians(plain.two_theta[:5] / 2))
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    assert abs(ratio[0] - 1.0) > 1e-4
    np.testing.assert_array_equal(strained.multiplicity[:5], plain.multiplicity[:5])


def test_measured_config_rejects_bad_ranges():
    cfg = SimulationConfig.from_yaml(CONF / "measured.yaml")
    cfg.window.end = [10.0, 20.0]
    with pytest.raises(ValueError, match="window.end"):
        cfg.validate()
    cfg = SimulationConfig.from_yaml(CONF / "measured.yaml")
    cfg.texture.march_r = [0.0, 1.0]
    with pytest.raises(ValueError, match="texture.march_r"):
        cfg.validate()
