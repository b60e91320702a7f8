"""Peak widths against the Scherrer and Caglioti formulas, and the K-alpha doublet positions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from generator.crystal import SyntheticCrystal
from simulator import PatternSimulator, Peaks, ProfileParameters
from simulator.profiles import doublet_positions, render_peaks


def measured_fwhm(x: np.ndarray, y: np.ndarray) -> float:
    """FWHM of a single peak by linear interpolation at half maximum."""
    i = int(np.argmax(y))
    half = y[i] / 2
    left = i - np.argmax(y[i::-1] < half)
    right = i + np.argmax(y[i:] < half)
    xl = np.interp(half, [y[left], y[left + 1]], [x[left], x[left + 1]])
    xr = np.interp(half, [y[right], y[right - 1]], [x[right], x[right - 1]])
    return xr - xl


def one_peak(two_theta: float) -> Peaks:
    return Peaks(np.array([two_theta]), np.array([1.0]), np.array([1.0]), np.array([1]), np.zeros((1, 3), int), 1.5406)


@pytest.mark.parametrize("two_theta,size_nm", [(20.0, 20.0), (45.0, 60.0), (80.0, 100.0)])
def test_gaussian_width_follows_scherrer(two_theta, size_nm):
    sim = PatternSimulator({"grid": {"step": 0.002}})
    y = sim.render(one_peak(two_theta), ProfileParameters(size_nm, 0, 0, 0, 0))
    expected = math.degrees(0.9 * 1.5406 / (size_nm * 10 * math.cos(math.radians(two_theta / 2))))
    assert measured_fwhm(sim.grid, y) == pytest.approx(expected, rel=2e-3)
    # area-normalised: integral equals the peak's intensity
    assert y.sum() * 0.002 == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("eta", [0.0, 0.4, 1.0])
def test_pseudo_voigt_width_follows_caglioti(eta):
    sim = PatternSimulator({"grid": {"step": 0.002}, "profile": {"shape": "pseudo_voigt", "width": "caglioti",
                                                                  "cutoff": 1e-9}})
    u, w, two_theta = 0.008, 0.004, 60.0
    y = sim.render(one_peak(two_theta), ProfileParameters(50.0, u, 0.0, w, eta))
    t = math.tan(math.radians(two_theta / 2))
    assert measured_fwhm(sim.grid, y) == pytest.approx(math.sqrt(u * t * t + w), rel=2e-3)
    # shape: pseudo-Voigt value at a grid point about one FWHM out, relative to the centre
    fwhm = math.sqrt(u * t * t + w)
    i0 = int(np.argmin(np.abs(sim.grid - two_theta)))
    i1 = int(np.argmin(np.abs(sim.grid - (two_theta + fwhm))))
    z = (sim.grid[i1] - two_theta) / fwhm
    gauss, lorentz = 2 * math.sqrt(math.log(2) / math.pi), 2 / math.pi
    expected = ((1 - eta) * gauss * math.exp(-4 * math.log(2) * z * z) + eta * lorentz / (1 + 4 * z * z)) \
        / ((1 - eta) * gauss + eta * lorentz)
    assert y[i1] / y[i0] == pytest.approx(expected, rel=1e-3)


def test_windowed_rendering_equals_dense_sum():
    rng = np.random.default_rng(0)
    grid = 5 + 0.01 * np.arange(8501)
    centers, inten, fwhm = rng.uniform(4, 91, 300), rng.random(300) ** 4, rng.uniform(0.03, 0.6, 300)
    out = np.zeros_like(grid)
    render_peaks(out, 5.0, 0.01, centers, inten, fwhm, 0.0, 1e-9)
    a = 4 * math.log(2) / fwhm[:, None] ** 2
    dense = (inten / fwhm * 2 * math.sqrt(math.log(2) / math.pi))[:, None] * np.exp(-a * (grid - centers[:, None]) ** 2)
    np.testing.assert_allclose(out, dense.sum(0), atol=1e-8 * dense.sum(0).max())


def test_kalpha_doublet_positions():
    # Bragg's law at both wavelengths: 2-theta of the same d
    d = np.array([3.0, 1.5, 1.1])
    tt1 = np.degrees(2 * np.arcsin(1.540562 / (2 * d)))
    tt2 = doublet_positions(tt1, 1.540562, 1.544390)
    np.testing.assert_allclose(tt2, np.degrees(2 * np.arcsin(1.544390 / (2 * d))), atol=1e-10)
    # the splitting grows with angle: ~0.05 deg at 30 deg, ~0.13 at 60 deg... from d-lambda relation
    assert np.all(np.diff(tt2 - tt1) > 0)
    sim = PatternSimulator({"wavelength": 1.540562, "grid": {"step": 0.002},
                            "profile": {"kalpha2": True, "crystallite_size_nm": [1000.0, 1000.0]}})
    y = sim.render(Peaks(tt1[1:2], np.ones(1), d[1:2], np.ones(1, int), np.zeros((1, 3), int), 1.540562),
                   ProfileParameters(1000.0, 0, 0, 0, 0))
    # two maxima: K-alpha1 at tt1 and K-alpha2 at tt2 with half its height (same widths)
    peaks = [i for i in range(1, len(y) - 1) if y[i] > y[i - 1] and y[i] >= y[i + 1] and y[i] > 0.1 * y.max()]
    assert len(peaks) == 2
    assert sim.grid[peaks[0]] == pytest.approx(tt1[1], abs=0.002)
    assert sim.grid[peaks[1]] == pytest.approx(tt2[1], abs=0.002)
    assert y[peaks[1]] / y[peaks[0]] == pytest.approx(0.5, rel=0.02)


def test_crystallite_size_drawn_within_range_and_seeded():
    sim = PatternSimulator({"profile": {"crystallite_size_nm": [30.0, 40.0]}})
    sizes = [sim.draw_profile(np.random.default_rng(s)).crystallite_size_nm for s in range(50)]
    assert 30.0 <= min(sizes) and max(sizes) <= 40.0 and np.std(sizes) > 1.0
    crystal = SyntheticCrystal(np.eye(3) * 4.0, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([26, 26]), 229)
    a = sim.pattern(crystal, np.random.default_rng(5))
    b = sim.pattern(crystal, np.random.default_rng(5))
    c = sim.pattern(crystal, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
