"""Peak-list comparison with pymatgen's ``XRDCalculator`` under its conventions (max 100, merged peaks)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.peaks import Peaks


@dataclass
class Agreement:
    """Worst deviations between two peak lists after both are clustered at ``merge_tol`` deg.

    n_peaks: clusters above the intensity floor (in either list). max_dtheta: deg. max_dintensity: relative to max 1.
    matched: every cluster found in both lists.
    """

    n_peaks: int
    max_dtheta: float
    max_dintensity: float
    matched: bool

    def ok(self, theta_tol: float = 1e-4, intensity_tol: float = 1e-5) -> bool:
        return self.matched and self.max_dtheta <= theta_tol and self.max_dintensity <= intensity_tol


def _cluster(x: np.ndarray, y: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Sum intensities of peaks closer than ``tol`` to their neighbour (positions: intensity-weighted)."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) == 0:
        return x, y
    starts = np.concatenate([[0], np.nonzero(np.diff(x) > tol)[0] + 1])
    ys = np.add.reduceat(y, starts)
    xs = np.add.reduceat(x * y, starts) / np.where(ys > 0, ys, 1)
    return xs, ys


def compare_peaks(ours: Peaks, two_theta_ref, intensity_ref, floor: float = 1e-4,
                  merge_tol: float = 1e-4) -> Agreement:
    """Compare our peaks with a reference list (any intensity scale): clusters >= ``floor`` of max."""
    xr, yr = np.asarray(two_theta_ref, float), np.asarray(intensity_ref, float)
    yr = yr / yr.max()
    xa, ya = _cluster(ours.two_theta, ours.intensity / ours.intensity.max(), merge_tol)
    xr, yr = _cluster(xr, yr, merge_tol)
    sel_a, sel_r = ya >= floor, yr >= floor
    worst_t, worst_i, matched = 0.0, 0.0, True
    for xs, ys, xo, yo, sel in ((xa, ya, xr, yr, sel_a), (xr, yr, xa, ya, sel_r)):
        for x, y in zip(xs[sel], ys[sel]):
            j = int(np.argmin(np.abs(xo - x))) if len(xo) else -1
            if j < 0 or abs(xo[j] - x) > 10 * merge_tol:
                matched = False
                continue
            worst_t = max(worst_t, abs(xo[j] - x))
            worst_i = max(worst_i, abs(yo[j] - y))
    return Agreement(int(max(sel_a.sum(), sel_r.sum())), worst_t, worst_i, matched)


def compare_with_pymatgen(ours: Peaks, pattern) -> Agreement:
    """Compare with a pymatgen ``DiffractionPattern`` (``.x`` deg, ``.y`` scaled to 100)."""
    return compare_peaks(ours, pattern.x, pattern.y)
