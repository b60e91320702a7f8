"""Exact, cheap draws from the lattice and density KDEs of :mod:`generator.statistics`.

A Gaussian KDE is a mixture of Gaussians, one per data point, so a draw is "pick a kernel,
add kernel noise". For the conditional density KDE p(f | V_atomic) of statsmodels
(product Gaussian kernels), the kernel weights given V_atomic are K_h(V_atomic - V_i), and the
draw is f_i + h_f * N(0, 1). No rejection loop and no KDE evaluation on a grid are needed.
"""
from __future__ import annotations

import numpy as np

from generator.statistics import DensityKDE, LatticeKDE
from generator.symmetry import LATTICE_PARAMETERS

# Beyond this many bandwidths a Gaussian kernel weighs < exp(-40) relative to the centre:
# kernels outside the window cannot change a draw at double precision.
_WINDOW_BANDWIDTHS = 9.0


class LatticeParameterSampler:
    """Draws unit-volume lattice parameters (a, b, c, alpha, beta, gamma) of one crystal system.

    Matches ``scipy.stats.gaussian_kde(data.T, bw_method=factor).resample``: kernel covariance is
    the (unbiased) data covariance times ``factor ** 2``.
    """

    def __init__(self, kde: LatticeKDE):
        self.crystal_system = kde.crystal_system
        self.parameters = tuple(kde.parameters)
        expected = LATTICE_PARAMETERS[kde.crystal_system]
        if set(self.parameters) != set(expected):
            raise ValueError(f"{kde.crystal_system} lattice KDE has parameters {self.parameters}, expected {expected}")
        data = np.asarray(kde.data, np.float64)
        self.data = data.reshape(-1, len(self.parameters)) if self.parameters else np.zeros((0, 0))
        if self.parameters and len(self.data) == 0:
            raise ValueError(f"{kde.crystal_system} lattice KDE has no data")
        self._columns = [("a", "b", "c", "alpha", "beta", "gamma").index(p) for p in self.parameters]
        self._chol = self._kernel_factor(self.data, float(kde.factor)) if self.parameters else None

    @staticmethod
    def _kernel_factor(data: np.ndarray, factor: float) -> np.ndarray:
        """A matrix L with L L^T = kernel covariance (eigen-based so degenerate data still works)."""
        d = data.shape[1]
        cov = np.atleast_2d(np.cov(data.T)) if len(data) > 1 else np.zeros((d, d))
        cov = cov * factor**2
        vals, vecs = np.linalg.eigh(cov)
        return vecs * np.sqrt(np.clip(vals, 0.0, None))

    def base(self) -> np.ndarray:
        """(6,) parameters fixed by the crystal system before the KDE's free ones are filled in."""
        params = np.array([1.0, 1.0, 1.0, 90.0, 90.0, 90.0])
        if self.crystal_system in ("hexagonal", "trigonal"):
            params[5] = 120.0
        return params

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """(6,) a, b, c (unit-volume scale) and alpha, beta, gamma (degrees); may be an invalid cell."""
        params = self.base()
        if not self.parameters:
            return params
        i = rng.integers(len(self.data))
        x = self.data[i] + self._chol @ rng.standard_normal(len(self.parameters))
        params[self._columns] = x
        if self.crystal_system in ("tetragonal", "hexagonal", "trigonal"):
            params[1] = params[0]
        return params


def lattice_matrix(params: np.ndarray) -> np.ndarray | None:
    """(3, 3) lattice vectors as rows for (a, b, c, alpha, beta, gamma), or None if they span no valid cell.

    a along x, b in the xy plane (the convention of pymatgen's ``Lattice.from_parameters`` up to a rotation).
    """
    a, b, c = params[:3]
    if min(a, b, c) <= 0.0:
        return None
    al, be, ga = np.radians(params[3:])
    if not (0.0 < al < np.pi and 0.0 < be < np.pi and 0.0 < ga < np.pi):
        return None
    ca, cb, cg, sg = np.cos(al), np.cos(be), np.cos(ga), np.sin(ga)
    cy = (ca - cb * cg) / sg
    cz2 = 1.0 - cb * cb - cy * cy
    # cz2 is (V / abc)^2 / sin^2(gamma); tiny values are cells flattened to a plane.
    if cz2 <= 1e-6:
        return None
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cb, c * cy, c * np.sqrt(cz2)]])


class DensityFactorSampler:
    """Draws the density factor f = V_cell / V_atomic from the conditional KDE p(f | V_atomic)."""

    def __init__(self, kde: DensityKDE):
        data = np.asarray(kde.data, np.float64).reshape(-1, 2)
        if len(data) == 0:
            raise ValueError("density KDE has no data")
        order = np.argsort(data[:, 1], kind="stable")
        self.f = np.ascontiguousarray(data[order, 0])
        self.v = np.ascontiguousarray(data[order, 1])
        self.h_f, self.h_v = (float(x) for x in np.asarray(kde.bandwidth, np.float64).ravel()[:2])
        if not (self.h_f > 0 and self.h_v > 0):
            raise ValueError(f"density KDE bandwidths must be positive, got {kde.bandwidth}")

    def kernel_weights(self, v_atomic: float) -> tuple[slice, np.ndarray]:
        """Data slice and normalised weights of the kernels that matter given ``v_atomic``."""
        lo = np.searchsorted(self.v, v_atomic - _WINDOW_BANDWIDTHS * self.h_v, "left")
        hi = np.searchsorted(self.v, v_atomic + _WINDOW_BANDWIDTHS * self.h_v, "right")
        if hi <= lo:
            # Far outside the data: the nearest V_i dominate; weigh all kernels in log space.
            lo, hi = 0, len(self.v)
        return slice(lo, hi), self._weights(lo, hi, v_atomic)

    def _weights(self, lo: int, hi: int, v_atomic: float) -> np.ndarray:
        """(hi - lo,) normalised kernel weights; the window holds ~20k kernels, so every pass counts:
        the arithmetic runs in place, and the largest log weight (that of the V_i nearest ``v_atomic``,
        the same expression element-wise) is read off the sorted data instead of a max over the window."""
        w = np.subtract(self.v[lo:hi], v_atomic)
        w /= self.h_v
        near = min(max(int(np.searchsorted(self.v, v_atomic)) - lo, 1), hi - lo - 1) if hi - lo > 1 else 0
        z_near = w[max(near - 1, 0):near + 1]
        top = np.max(-0.5 * z_near * z_near)
        np.multiply(w, w, out=w)
        w *= -0.5
        w -= top
        np.exp(w, out=w)
        w /= w.sum()
        return w

    def draw(self, v_atomic: float, rng: np.random.Generator) -> float:
        """One density factor (may be <= 0 in the Gaussian tail; the caller redraws)."""
        window, w = self.kernel_weights(v_atomic)
        np.cumsum(w, out=w)
        i = window.start + int(np.searchsorted(w, rng.random() * (1.0 - 1e-12), "right"))
        i = min(i, window.stop - 1)
        return float(self.f[i] + self.h_f * rng.standard_normal())
