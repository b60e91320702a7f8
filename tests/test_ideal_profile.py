"""The ideal 1/d profile: wavelength independent, |F|^2 with B = 2 A^2, one bin per reflection family."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from simulator import simulate_peaks
from simulator.ideal import IdealProfile, lorentz_polarisation, two_theta_to_inverse_d


def rocksalt():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_grid_and_peak_positions():
    prof = IdealProfile()
    assert prof.grid.shape == (10001,) and prof.grid[0] == pytest.approx(0.1131) and prof.grid[-1] == pytest.approx(1.0625)
    y = prof(rocksalt())
    assert y.max() == pytest.approx(1.0) and y.dtype == np.float32
    # NaCl (200) at 1/d = 2/a carries the strongest |F|^2 mult of the low-angle reflections
    step = prof.grid[1] - prof.grid[0]
    for h, k, l in [(1, 1, 1), (2, 0, 0), (2, 2, 0)]:
        inv_d = np.sqrt(h * h + k * k + l * l) / 5.64
        assert y[int(round((inv_d - 0.1131) / step))] > 0
    # fcc: only all-even or all-odd hkl reflect, so (100) and (110) bins stay empty
    for h, k, l in [(1, 0, 0), (1, 1, 0)]:
        assert y[int(round((np.sqrt(h * h + k * k + l * l) / 5.64 - 0.1131) / step))] < 1e-20


def test_invariant_to_wavelength_unlike_two_theta_patterns():
    # the ideal profile takes no wavelength; the same peaks simulated at two wavelengths and mapped to
    # 1/d land on the same bins, and after removing LP their ratios equal the ideal profile's (B = 0)
    s = rocksalt()
    prof = IdealProfile({"debye_waller_b": 0.0})
    y = prof(s)
    for wl in (1.5406, 0.7093):
        p = simulate_peaks(s, wavelength=wl, two_theta_range=(1, 120), min_intensity=0.0)
        inv_d = two_theta_to_inverse_d(p.two_theta, wl)
        ok = (inv_d > 0.1131) & (inv_d < 1.0625)
        no_lp = p.intensity[ok] / lorentz_polarisation(p.two_theta[ok])
        idx = np.rint((inv_d[ok] - 0.1131) / (prof.grid[1] - prof.grid[0])).astype(int)
        np.testing.assert_allclose(no_lp / no_lp.max(), y[idx], rtol=1e-5, atol=1e-12)


def test_debye_waller_damps_high_inverse_d():
    s = rocksalt()
    cold, warm = IdealProfile({"debye_waller_b": 0.0})(s), IdealProfile({"debye_waller_b": 2.0})(s)
    hi = IdealProfile().grid > 0.8
    assert warm[hi].sum() < 0.8 * cold[hi].sum()
