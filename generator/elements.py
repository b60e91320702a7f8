"""Atomic radii and the atomic volume that the density factor is defined against (Schopmans et al. 2023, SI S1)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

MAX_Z = 103


@lru_cache(maxsize=1)
def mean_radii() -> np.ndarray:
    """(MAX_Z + 1,) float64: r = (covalent + van der Waals radius) / 2 in Angstrom, indexed by Z (pyxtal's tables).

    Index 0 and elements without tabulated radii hold NaN.
    """
    from pyxtal.database.element import Element

    radii = np.full(MAX_Z + 1, np.nan)
    for z in range(1, MAX_Z + 1):
        try:
            el = Element(z)
            cov, vdw = el.covalent_radius, el.vdw_radius
        except Exception:  # pyxtal raises assorted errors for elements it lacks
            continue
        if cov and vdw:
            radii[z] = 0.5 * (float(cov) + float(vdw))
    return radii


def atomic_volume(atomic_numbers: np.ndarray) -> float:
    """V_atomic = sum over atoms of 4/3 pi r^3 (A^3) for (N,) atomic numbers of every atom in the cell."""
    r = mean_radii()[np.asarray(atomic_numbers, dtype=np.int64)]
    if np.isnan(r).any():
        bad = sorted(set(np.asarray(atomic_numbers)[np.isnan(r)].tolist()))
        raise ValueError(f"no tabulated radius for atomic numbers {bad}")
    return float(4.0 / 3.0 * np.pi * np.sum(r**3))
