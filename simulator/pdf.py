"""Atomic pair distribution function G(r) (Liu et al. 2019 settings) from a crystal.

G(r) = 1 / (N r) sum_i sum_{j != i} (f_i f_j / <f>^2) g_ij(r) - 4 pi rho0 r, with Z as the X-ray weight f,
pair peaks g_ij Gaussian with variance 2 Uiso + Qbroad^2 r^2, damped by exp(-(Qdamp r)^2 / 2), and
the finite Q window [Qmin, Qmax] imposed by a sine transform to F(Q) and back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from simulator.peaks import crystal_arrays


@dataclass
class PDFConfig:
    """r grid (A): r_min + r_step * i up to r_max; Q window (1/A); Uiso (A^2); min-max normalisation flag.

    ``kind`` names the representation in ``conf/simulation/pdf.yaml`` (``simulator.representation``).
    """

    kind: str = "pdf"
    r_min: float = 1.5
    r_max: float = 30.0
    r_step: float = 0.1366
    q_min: float = 0.5
    q_max: float = 23.0
    u_iso: float = 0.008
    q_damp: float = 0.04
    q_broad: float = 0.01
    normalise: bool = True


# Fine r sampling of the pair peaks and Q sampling of the sine transforms (1/A, A).
_DR_FINE = 0.01
_DQ = 0.005


@numba.njit(cache=True)
def _pair_histogram(cart, weights, translations, r0, dr, n_bins):
    """Weighted histogram of the pair distances (i != j or a lattice translation apart) on the fine r grid,
    each distance split linearly between its two neighbouring bins (mass per bin, not density)."""
    out = np.zeros(n_bins)
    rmax = r0 + dr * (n_bins - 1)
    n = cart.shape[0]
    for i in range(n):
        for j in range(n):
            wij = weights[i] * weights[j]
            for t in range(translations.shape[0]):
                dx = cart[j, 0] + translations[t, 0] - cart[i, 0]
                dy = cart[j, 1] + translations[t, 1] - cart[i, 1]
                dz = cart[j, 2] + translations[t, 2] - cart[i, 2]
                d = math.sqrt(dx * dx + dy * dy + dz * dz)
                if d < 1e-8 or d >= rmax:
                    continue
                u = (d - r0) / dr
                if u < 0:
                    continue
                k = int(u)
                frac = u - k
                out[k] += wij * (1.0 - frac)
                out[k + 1] += wij * frac
    return out


class PairDistribution:
    """``PairDistribution(config)(crystal) -> (R,) float32`` G(r) on ``.grid``.

    Everything after the pair distances is linear in their histogram h on a fine r grid and the same for
    every crystal: Gaussian pair peaks (width from Uiso and Qbroad at each r), division by N r, the Qdamp
    envelope and the Q-window sine transforms. That operator A (R x fine) and the density term b (R,) are
    built once per config, so a crystal costs one histogram and one product: G = A h / N - rho0 b.
    """

    def __init__(self, config: PDFConfig | dict | None = None):
        self.config = config if isinstance(config, PDFConfig) else PDFConfig(**(config or {}))
        c = self.config
        if not (0 <= c.r_min < c.r_max and c.r_step > 0 and 0 <= c.q_min < c.q_max):
            raise ValueError(f"pdf: invalid r or Q window {c}")
        self.grid = c.r_min + c.r_step * np.arange(int(math.floor((c.r_max - c.r_min) / c.r_step + 1e-9)) + 1)
        self._reach = c.r_max + 2.0  # pairs are enumerated up to here from every atom of the cell
        self.r_fine = np.arange(_DR_FINE, self._reach + 10.0, _DR_FINE)
        self._operator: tuple[np.ndarray, np.ndarray] | None = None

    def _linear_operator(self) -> tuple[np.ndarray, np.ndarray]:
        if self._operator is None:
            from scipy import sparse

            c, r_fine = self.config, self.r_fine
            q = np.arange(c.q_min, c.q_max, _DQ)
            # finite Q window: F(Q) = int G sin(Qr) dr on [q_min, q_max], back G(r) = 2/pi int F sin(Qr) dQ
            window = ((2 / np.pi) * _DQ * _DR_FINE) * (np.sin(np.outer(self.grid, q)) @ np.sin(np.outer(q, r_fine)))
            damp = np.exp(-0.5 * (c.q_damp * r_fine) ** 2)
            # Gaussian pair peak of the mass in fine bin j, sampled at fine point k (cut at 5 sigma)
            sigma = np.sqrt(2.0 * c.u_iso + (c.q_broad * r_fine) ** 2)
            half = int(np.ceil(5 * sigma.max() / _DR_FINE))
            rows, cols, vals = [], [], []
            for off in range(-half, half + 1):
                j = np.arange(max(0, -off), min(len(r_fine), len(r_fine) - off))
                k = j + off
                keep = np.abs(r_fine[k] - r_fine[j]) <= 5 * sigma[j]
                u = (r_fine[k[keep]] - r_fine[j[keep]]) / sigma[j[keep]]
                rows.append(k[keep])
                cols.append(j[keep])
                vals.append(np.exp(-0.5 * u * u) / (sigma[j[keep]] * math.sqrt(2 * math.pi)))
            peaks = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                      shape=(len(r_fine), len(r_fine)))
            left = window * (damp / r_fine)  # (R, fine): damping and 1 / r, then the window
            operator = np.asarray((peaks.T @ left.T).T)
            density = window @ (damp * 4 * np.pi * r_fine)
            self._operator = (np.ascontiguousarray(operator), density)
        return self._operator

    def raw(self, crystal) -> np.ndarray:
        """Unnormalised G(r) on :attr:`grid` (1/A^2)."""
        arrays = crystal_arrays(crystal, symmetry=False)
        lattice = arrays.lattice
        cart = arrays.frac_coords @ lattice
        z = arrays.elements[arrays.species_index].astype(float)
        occ = arrays.occupancies
        weights = z * occ / np.sum(z * occ) * np.sum(occ)  # f_i / <f>, occupancy weighted
        n_atoms = np.sum(occ)
        rho0 = n_atoms / abs(np.linalg.det(lattice))
        # lattice translations reaching r_max + margin from any atom in the cell
        inv = np.linalg.inv(lattice)
        nmax = np.ceil(self._reach * np.linalg.norm(inv, axis=0)).astype(int) + 1
        grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1).reshape(-1, 3)
        translations = grid @ lattice
        hist = _pair_histogram(cart, weights, translations, float(self.r_fine[0]), _DR_FINE, len(self.r_fine))
        operator, density = self._linear_operator()
        return operator @ hist / n_atoms - rho0 * density

    def __call__(self, crystal) -> np.ndarray:
        g = self.raw(crystal)
        if self.config.normalise:
            span = g.max() - g.min()
            g = (g - g.min()) / span if span > 0 else np.zeros_like(g)
        return g.astype(np.float32)
