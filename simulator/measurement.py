"""What a laboratory measurement does to a powder pattern beyond the paper's imperfections.

Each effect is a small function of numpy arrays and a ``numpy.random.Generator`` so that the
pattern simulator can compose them and tests can check each against its physics:

- lattice strain (isotropic and symmetry-preserving anisotropic) applied to the cell before the
  peaks are computed: DFT-relaxed cells differ from measured ones by a few per cent;
- March-Dollase preferred orientation, averaged over the Laue orbit of every peak;
- peak shifts from a zero offset and a sample displacement;
- an amorphous hump (glass, capillary, sample holder);
- counting (Poisson) noise at a random count level;
- a 2-theta window: the part of the grid a scan does not cover, filled exactly as
  :func:`fill_outside` fills it for a measured pattern.
"""
from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------- draws


def uniform(rng: np.random.Generator, bounds, log: bool = False) -> float:
    """One value uniform in [low, high] (log-uniform with ``log``); the low end when high <= low."""
    lo, hi = float(bounds[0]), float(bounds[1])
    if hi <= lo:
        return lo
    if log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------------------------- strain


def strained_lattice(lattice: np.ndarray, rotations: np.ndarray, isotropic: float, anisotropic: np.ndarray) -> np.ndarray:
    """Lattice rows (3, 3), Angstrom, after a symmetry-preserving strain.

    Args:
        lattice: (3, 3) lattice vectors as rows.
        rotations: (R, 3, 3) Laue rotations acting on Miller indices as ``h W``; the anisotropic
            part is averaged over them, so the strained reciprocal metric keeps the symmetry
            (a cubic cell only swells or shrinks, a tetragonal one changes a and c independently).
        isotropic: relative change of every length (0.01: 1 % larger cell).
        anisotropic: (3, 3) relative perturbation of the reciprocal metric (symmetrised here).

    The reciprocal metric G* = R R^T (R: reciprocal rows) becomes (G* + sym(delta)) / (1 + iso)^2
    with delta_ij = anisotropic_ij sqrt(G*_ii G*_jj); the returned cell has that metric (its
    orientation is arbitrary, which a powder pattern does not see). Unchanged if not positive definite.
    """
    lattice = np.asarray(lattice, float)
    recip = np.linalg.inv(lattice).T
    gstar = recip @ recip.T
    e = np.asarray(anisotropic, float)
    e = 0.5 * (e + e.T)
    scale = np.sqrt(np.outer(np.diag(gstar), np.diag(gstar)))
    delta = e * scale
    rot = np.asarray(rotations, float)
    if len(rot):
        delta = np.einsum("rij,jk,rlk->il", rot, delta, rot) / len(rot)
    new = (gstar + delta) / (1.0 + isotropic) ** 2
    try:
        chol = np.linalg.cholesky(new)  # new = C C^T: C are reciprocal rows of the strained cell
    except np.linalg.LinAlgError:
        return lattice
    return np.linalg.inv(chol).T


def draw_strain(rng: np.random.Generator, isotropic_range, anisotropic_sd: float) -> tuple[float, np.ndarray]:
    """(isotropic, (3, 3) anisotropic) strain draws for :func:`strained_lattice`."""
    iso = uniform(rng, isotropic_range)
    aniso = rng.normal(0.0, anisotropic_sd, (3, 3)) if anisotropic_sd > 0 else np.zeros((3, 3))
    return iso, aniso


# ----------------------------------------------------------------------- preferred orientation


def march_dollase(hkl: np.ndarray, lattice: np.ndarray, rotations: np.ndarray, axis: np.ndarray, r: float) -> np.ndarray:
    """(P,) March-Dollase factors of peaks with Miller indices ``hkl`` (P, 3).

    P(alpha) = (r^2 cos^2 alpha + sin^2 alpha / r)^(-3/2), alpha the angle between the
    scattering vector and the preferred-orientation direction ``axis`` (a reciprocal-lattice
    vector in Miller-index coordinates), averaged over the Laue orbit of each peak (the
    rotations act on Miller indices as ``h W``). r = 1: random orientation; r < 1: platelets
    along ``axis``; r > 1: needles. The factor averages to about 1 over all directions.
    """
    hkl = np.asarray(hkl, float)
    if len(hkl) == 0 or r == 1.0:
        return np.ones(len(hkl))
    recip = np.linalg.inv(np.asarray(lattice, float)).T
    rot = np.asarray(rotations, float) if len(rotations) else np.eye(3)[None]
    members = np.einsum("pi,rij->rpj", hkl, rot)  # (R, P, 3) orbit members
    g = members @ recip  # Cartesian scattering vectors
    n = np.asarray(axis, float) @ recip
    n = n / np.linalg.norm(n)
    norm = np.linalg.norm(g, axis=-1)
    cos2 = np.divide((g @ n) ** 2, norm ** 2, out=np.ones_like(norm), where=norm > 0)
    factor = (r * r * cos2 + (1.0 - cos2) / r) ** -1.5
    return factor.mean(axis=0)


def draw_texture_axis(rng: np.random.Generator) -> np.ndarray:
    """A low-index preferred direction: one of 001, 010, 100, 110, 101, 011, 111 (Miller indices)."""
    axes = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], float)
    return axes[rng.integers(len(axes))]


# ------------------------------------------------------------------------------ peak shifts


def shifted_positions(two_theta: np.ndarray, zero_offset_deg: float, displacement_mm: float,
                      radius_mm: float) -> np.ndarray:
    """Observed 2-theta (deg) of peaks at ``two_theta``: zero offset plus sample displacement.

    A sample displaced by s (mm, towards the source positive) on a goniometer of radius R (mm)
    shifts peaks by -2 s cos(theta) / R radians (Bragg-Brentano geometry).
    """
    theta = np.radians(np.asarray(two_theta, float) / 2.0)
    return two_theta + zero_offset_deg - np.degrees(2.0 * displacement_mm * np.cos(theta) / radius_mm)


# ---------------------------------------------------------------------------- backgrounds


def amorphous_hump(grid: np.ndarray, center: float, fwhm: float, height: float) -> np.ndarray:
    """(N,) Gaussian hump of ``height`` at ``center`` (deg) with full width ``fwhm`` (deg)."""
    return height * np.exp(-4.0 * np.log(2.0) * ((grid - center) / fwhm) ** 2)


# ---------------------------------------------------------------------------------- noise


def counting_noise(pattern: np.ndarray, max_counts: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson counting statistics: the pattern scaled so its maximum is ``max_counts`` counts,
    drawn, and scaled back (relative noise 1/sqrt(counts) at every point)."""
    top = float(np.max(pattern)) if pattern.size else 0.0
    if top <= 0 or max_counts <= 0:
        return pattern
    scale = max_counts / top
    return rng.poisson(np.clip(pattern, 0.0, None) * scale) / scale


# ---------------------------------------------------------------------------- scan window


def window_mask(grid: np.ndarray, start: float, end: float) -> np.ndarray:
    """(N,) bool: True where ``start <= grid <= end`` (the part of the grid a scan covers)."""
    return (grid >= start) & (grid <= end)


def fill_outside(intensity: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Intensities (N,) or (B, N) with every point outside ``mask`` set to the lowest value inside.

    Applied to simulated patterns with a random scan window and to measured patterns on the
    model's grid alike, so that after the min-max scaling both read 0 where nothing was measured.
    """
    x = np.array(intensity, dtype=np.float64)
    if mask is None:
        return x
    mask = np.asarray(mask, bool)
    if mask.all() or not mask.any():
        return x
    lo = np.min(np.where(mask, x, np.inf), axis=-1, keepdims=True)
    return np.where(mask, x, lo)
