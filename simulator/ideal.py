"""Wavelength-independent "ideal" delta profiles on a 1/d grid (Ozaki et al. 2025).

Every reflection inside the 1/d window contributes mult |F|^2 (isotropic B for every atom, no
Lorentz-polarisation) to the grid point nearest its 1/d; the profile is scaled to max 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.peaks import _intensities, _reflections, crystal_arrays
from simulator.scattering import scattering_table


@dataclass
class IdealProfileConfig:
    """1/d grid (1/A) of ``n_points`` points from ``inv_d_min`` to ``inv_d_max``; one B (A^2) for every atom.

    ``kind`` names the representation in ``conf/simulation/ideal.yaml`` (``simulator.representation``).
    """

    kind: str = "ideal"
    inv_d_min: float = 0.1131
    inv_d_max: float = 1.0625
    n_points: int = 10001
    debye_waller_b: float = 2.0


class IdealProfile:
    """``IdealProfile(config)(crystal) -> (n_points,) float32``; ``.grid`` is the 1/d axis in 1/A."""

    def __init__(self, config: IdealProfileConfig | dict | None = None):
        self.config = config if isinstance(config, IdealProfileConfig) else IdealProfileConfig(**(config or {}))
        c = self.config
        if not (0 < c.inv_d_min < c.inv_d_max) or c.n_points < 2:
            raise ValueError(f"ideal profile: need 0 < inv_d_min < inv_d_max and n_points >= 2, got {c}")
        self.grid = np.linspace(c.inv_d_min, c.inv_d_max, c.n_points)

    def __call__(self, crystal) -> np.ndarray:
        c = self.config
        arrays = crystal_arrays(crystal)
        step = (c.inv_d_max - c.inv_d_min) / (c.n_points - 1)
        lo, hi = c.inv_d_min - step / 2, c.inv_d_max + step / 2
        recip = np.ascontiguousarray(np.linalg.inv(arrays.lattice).T)
        hkl, g2, mult = _reflections(recip, lo * lo, hi * hi, _checked_rotations(arrays))
        coeffs, _ = scattering_table()
        dw = np.full(len(arrays.elements), float(c.debye_waller_b))
        inten = _intensities(hkl, g2, mult, arrays.frac_coords, arrays.occupancies, arrays.species_index,
                             arrays.elements, coeffs, dw, 1.0, False)
        idx = np.clip(np.rint((np.sqrt(g2) - c.inv_d_min) / step).astype(np.int64), 0, c.n_points - 1)
        out = np.bincount(idx, weights=inten, minlength=c.n_points)
        top = out.max()
        return (out / top if top > 0 else out).astype(np.float32)


def _checked_rotations(arrays) -> np.ndarray:
    from simulator.laue import FRIEDEL, preserves_metric

    return arrays.rotations if preserves_metric(arrays.rotations, arrays.lattice) else FRIEDEL


def two_theta_to_inverse_d(two_theta_deg: np.ndarray, wavelength: float) -> np.ndarray:
    """1/d (1/A) of 2-theta positions (deg) measured at ``wavelength`` (A): 1/d = 2 sin(theta) / lambda."""
    return 2.0 * np.sin(np.radians(np.asarray(two_theta_deg, float) / 2.0)) / wavelength


def lorentz_polarisation(two_theta_deg: np.ndarray) -> np.ndarray:
    """(1 + cos^2 2theta) / (sin^2 theta cos theta): divide measured intensities by it before binning on 1/d."""
    t = np.radians(np.asarray(two_theta_deg, float) / 2.0)
    return (1 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))
