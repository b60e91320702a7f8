"""Atomic X-ray scattering factors as arrays indexed by atomic number.

The coefficients are pymatgen's (``atomic_scattering_params.json``), so that our peaks agree with
``XRDCalculator``: f(s) = Z - 41.78214 s^2 sum_i a_i exp(-b_i s^2), s = sin(theta) / lambda.
They are read once from the installed pymatgen package; the hot path only sees the arrays.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

MAX_Z = 118


@functools.lru_cache(maxsize=1)
def scattering_table() -> tuple[np.ndarray, np.ndarray]:
    """``(coeffs, known)``: coeffs (MAX_Z + 1, 4, 2) float64 [a_i, b_i] per Z; known (MAX_Z + 1,) bool."""
    import pymatgen.analysis.diffraction as diffraction
    from pymatgen.core.periodic_table import Element

    path = Path(diffraction.__file__).parent / "atomic_scattering_params.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RuntimeError(f"cannot read atomic scattering parameters from {path}: {err}") from err
    coeffs = np.zeros((MAX_Z + 1, 4, 2))
    known = np.zeros(MAX_Z + 1, bool)
    for symbol, table in raw.items():
        z = Element(symbol).Z
        arr = np.asarray(table, float).reshape(-1, 2)
        coeffs[z, : len(arr)] = arr
        known[z] = True
    return coeffs, known


def check_elements(atomic_numbers: np.ndarray, source: str = "structure") -> None:
    """Raise a clear ``ValueError`` if some Z has no scattering coefficients."""
    _, known = scattering_table()
    z = np.asarray(atomic_numbers)
    bad = z[(z < 1) | (z > MAX_Z)]
    if bad.size == 0:
        bad = z[~known[z]]
    if bad.size:
        raise ValueError(f"{source}: no X-ray scattering coefficients for atomic number(s) {sorted(set(bad.tolist()))}")
