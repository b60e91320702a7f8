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
    """r grid (A): r_min + r_step * i up to r_max; Q window (1/A); Uiso (A^2); min-max normalisation flag."""

    r_min: float = 1.5
    r_max: float = 30.0
    r_step: float = 0.1366
    q_min: float = 0.5
    q_max: float = 23.0
    u_iso: float = 0.008
    q_damp: float = 0.04
    q_broad: float = 0.01
    normalise: bool = True


@numba.njit(cache=True)
def _pair_sum(cart, weights, translations, r_fine, sig0_2, qbroad):
    out = np.zeros(r_fine.shape[0])
    dr = r_fine[1] - r_fine[0]
    r0 = r_fine[0]
    rmax = r_fine[-1]
    n = cart.shape[0]
    for i in range(n):
        for j in range(n):
            wij = weights[i] * weights[j]
            for t in range(translations.shape[0]):
                dx = cart[j, 0] + translations[t, 0] - cart[i, 0]
                dy = cart[j, 1] + translations[t, 1] - cart[i, 1]
                dz = cart[j, 2] + translations[t, 2] - cart[i, 2]
                d = math.sqrt(dx * dx + dy * dy + dz * dz)
                if d < 1e-8 or d > rmax + 1.0:
                    continue
                s = math.sqrt(sig0_2 + (qbroad * d) ** 2)
                lo = max(0, int((d - 5 * s - r0) / dr))
                hi = min(r_fine.shape[0] - 1, int((d + 5 * s - r0) / dr) + 1)
                norm = wij / (s * math.sqrt(2 * math.pi))
                for k in range(lo, hi + 1):
                    u = (r_fine[k] - d) / s
                    out[k] += norm * math.exp(-0.5 * u * u)
    return out


class PairDistribution:
    """``PairDistribution(config)(crystal) -> (R,) float32`` G(r) on ``.grid``."""

    def __init__(self, config: PDFConfig | dict | None = None):
        self.config = config if isinstance(config, PDFConfig) else PDFConfig(**(config or {}))
        c = self.config
        if not (0 <= c.r_min < c.r_max and c.r_step > 0 and 0 <= c.q_min < c.q_max):
            raise ValueError(f"pdf: invalid r or Q window {c}")
        self.grid = c.r_min + c.r_step * np.arange(int(math.floor((c.r_max - c.r_min) / c.r_step + 1e-9)) + 1)

    def raw(self, crystal) -> np.ndarray:
        """Unnormalised G(r) on :attr:`grid` (1/A^2)."""
        c = self.config
        arrays = crystal_arrays(crystal, symmetry=False)
        lattice = arrays.lattice
        cart = arrays.frac_coords @ lattice
        z = arrays.elements[arrays.species_index].astype(float)
        occ = arrays.occupancies
        weights = z * occ / np.sum(z * occ) * np.sum(occ)  # f_i / <f>, occupancy weighted
        n_atoms = np.sum(occ)
        rho0 = n_atoms / abs(np.linalg.det(lattice))
        # lattice translations reaching r_max + margin from any atom in the cell
        reach = c.r_max + 2.0
        inv = np.linalg.inv(lattice)
        nmax = np.ceil(reach * np.linalg.norm(inv, axis=0)).astype(int) + 1
        grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1).reshape(-1, 3)
        translations = grid @ lattice
        dr_fine = 0.01
        r_fine = np.arange(dr_fine, reach + 10.0, dr_fine)
        pairs = _pair_sum(cart, weights, translations, r_fine, 2.0 * c.u_iso, c.q_broad)
        g = pairs / (n_atoms * r_fine) - 4 * np.pi * rho0 * r_fine
        g *= np.exp(-0.5 * (c.q_damp * r_fine) ** 2)
        # finite Q window: F(Q) = int G sin(Qr) dr on [q_min, q_max], back G(r) = 2/pi int F sin(Qr) dQ
        q = np.arange(c.q_min, c.q_max, 0.005)
        fq = np.sin(np.outer(q, r_fine)) @ g * dr_fine
        r = self.grid
        return (2 / np.pi) * (np.sin(np.outer(r, q)) @ fq) * 0.005

    def __call__(self, crystal) -> np.ndarray:
        g = self.raw(crystal)
        if self.config.normalise:
            span = g.max() - g.min()
            g = (g - g.min()) / span if span > 0 else np.zeros_like(g)
        return g.astype(np.float32)
