"""Powder diffraction peaks (stick pattern) of a crystal: positions and integrated intensities.

Same physics and conventions as pymatgen's ``XRDCalculator`` (atomic scattering factors,
Lorentz-polarisation factor, optional isotropic Debye-Waller factors, partial occupancies,
reflections within 1e-5 deg of 2-theta merged), computed by a Numba kernel that

* enumerates one Miller index per Laue-group orbit and multiplies by the orbit size,
* builds exp(2 pi i h.x) from per-atom tables of exp(2 pi i x)^h (two complex products per
  atom and reflection instead of a complex exponential),
* evaluates each element's scattering factor once per reflection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from generator.crystal import SyntheticCrystal
from simulator.laue import FRIEDEL, standard_laue_rotations, structure_laue_rotations
from simulator.scattering import check_elements, scattering_table

CU_KA1 = 1.5406
TWO_THETA_TOL = 1e-5  # deg; pymatgen's AbstractDiffractionPatternCalculator.TWO_THETA_TOL


@dataclass
class Peaks:
    """Merged powder peaks, sorted by 2-theta.

    Attributes:
        two_theta: (P,) float64 peak positions, degrees.
        intensity: (P,) float64 integrated intensities, maximum 1.
        d_spacing: (P,) float64 interplanar spacings, Angstrom.
        multiplicity: (P,) int64 number of reflections (hkl and its equivalents, both Friedel mates)
            merged into the peak.
        hkl: (P, 3) int64 Miller indices of one reflection of the peak.
        wavelength: Angstrom.
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    d_spacing: np.ndarray
    multiplicity: np.ndarray
    hkl: np.ndarray
    wavelength: float

    def __len__(self) -> int:
        return int(self.two_theta.shape[0])


@dataclass
class CrystalArrays:
    """What the kernel needs of a crystal: atoms grouped by element.

    Attributes:
        lattice: (3, 3) float64 lattice vectors as rows, Angstrom.
        frac_coords: (N, 3) float64 fractional coordinates.
        occupancies: (N,) float64.
        species_index: (N,) int64 index into ``elements`` of every atom.
        elements: (E,) int64 distinct atomic numbers.
        rotations: (R, 3, 3) int64 Laue-group rotations acting on Miller indices as h W.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    occupancies: np.ndarray
    species_index: np.ndarray
    elements: np.ndarray
    rotations: np.ndarray


def crystal_arrays(crystal, symmetry: bool = True) -> CrystalArrays:
    """Arrays of a ``SyntheticCrystal`` or a pymatgen ``Structure`` (disordered sites expanded).

    With ``symmetry`` the Laue group comes from the crystal's space-group number (standard setting,
    checked against the lattice metric) or, for a ``Structure``, from spglib at a tight tolerance.
    """
    if isinstance(crystal, SyntheticCrystal):
        lattice = np.asarray(crystal.lattice, float)
        frac = np.asarray(crystal.frac_coords, float)
        numbers = np.asarray(crystal.atomic_numbers, np.int64)
        occ = (np.ones(len(numbers)) if crystal.occupancies is None
               else np.asarray(crystal.occupancies, float))
        source = f"SyntheticCrystal (space group {crystal.space_group})"
        rotations = (standard_laue_rotations(crystal.space_group) if symmetry and 1 <= crystal.space_group <= 230
                     else FRIEDEL)  # the kernel checks them against the lattice metric
    elif hasattr(crystal, "lattice") and hasattr(crystal, "sites"):
        lattice = np.array(crystal.lattice.matrix, float)
        if crystal.is_ordered:
            frac = np.array(crystal.frac_coords, float)
            numbers = np.array([site.specie.Z for site in crystal], np.int64)
            occ = np.ones(len(numbers))
        else:
            frac_l, z_l, occ_l = [], [], []
            for site in crystal:
                for sp, o in site.species.items():
                    frac_l.append(site.frac_coords)
                    z_l.append(sp.Z)
                    occ_l.append(o)
            frac = np.array(frac_l, float).reshape(-1, 3)
            numbers = np.array(z_l, np.int64)
            occ = np.array(occ_l, float)
        source = f"Structure {crystal.composition.reduced_formula}"
        rotations = FRIEDEL
        # spglib costs more than the Friedel-only kernel for small cells; only worth it for big ones
        if symmetry and crystal.is_ordered and len(crystal) > 64:
            rotations = structure_laue_rotations(lattice, frac, numbers)
    else:
        raise TypeError(f"expected a SyntheticCrystal or a pymatgen Structure, got {type(crystal).__name__}")
    if len(numbers) == 0:
        raise ValueError(f"{source}: the cell holds no atoms")
    check_elements(numbers, source)
    elements, species_index = np.unique(numbers, return_inverse=True)
    return CrystalArrays(lattice, np.ascontiguousarray(frac), occ, species_index.astype(np.int64),
                         elements.astype(np.int64), np.ascontiguousarray(rotations, dtype=np.int64))


@numba.njit(cache=True)
def _reflections(recip, gmin2, gmax2, rotations):
    """One Miller index per Laue orbit inside gmin <= |g| <= gmax.

    recip: (3, 3) reciprocal lattice rows (no 2 pi), 1/A. Returns hkl (M, 3), |g|^2 (M,), orbit size (M,).
    The representative is the lexicographically largest member of its orbit.
    """
    gmax = math.sqrt(gmax2)
    # |h| <= |g| |a_1| since h = g . a_1; a_i are the rows of inv(recip).T
    real = np.linalg.inv(recip).T
    lims = np.empty(3, np.int64)
    for i in range(3):
        lims[i] = int(math.floor(gmax * math.sqrt(real[i, 0] ** 2 + real[i, 1] ** 2 + real[i, 2] ** 2) + 1e-9))
    hmax = lims[0]
    kmax = lims[1]
    lmax = lims[2]
    cap = (2 * hmax + 1) * (2 * kmax + 1) * (2 * lmax + 1)
    out_hkl = np.empty((cap, 3), np.int64)
    out_g2 = np.empty(cap)
    out_mult = np.empty(cap, np.int64)
    gs = recip @ recip.T
    nrot = rotations.shape[0]
    m = 0
    for h in range(-hmax, hmax + 1):
        for k in range(-kmax, kmax + 1):
            # g^2 as a quadratic in l: a l^2 + b l + c
            a = gs[2, 2]
            b = 2.0 * (h * gs[0, 2] + k * gs[1, 2])
            c = h * h * gs[0, 0] + k * k * gs[1, 1] + 2.0 * h * k * gs[0, 1]
            disc = b * b - 4.0 * a * (c - gmax2)
            if disc < 0.0:
                continue
            sq = math.sqrt(disc)
            lo = max(-lmax, int(math.ceil((-b - sq) / (2.0 * a) - 1e-9)))
            hi = min(lmax, int(math.floor((-b + sq) / (2.0 * a) + 1e-9)))
            for l in range(lo, hi + 1):
                g2 = a * l * l + b * l + c
                if g2 > gmax2 or g2 < gmin2 or (h == 0 and k == 0 and l == 0):
                    continue
                canonical = True
                stab = 0
                for r in range(nrot):
                    h2 = h * rotations[r, 0, 0] + k * rotations[r, 1, 0] + l * rotations[r, 2, 0]
                    k2 = h * rotations[r, 0, 1] + k * rotations[r, 1, 1] + l * rotations[r, 2, 1]
                    l2 = h * rotations[r, 0, 2] + k * rotations[r, 1, 2] + l * rotations[r, 2, 2]
                    if h2 > h or (h2 == h and (k2 > k or (k2 == k and l2 > l))):
                        canonical = False
                        break
                    if h2 == h and k2 == k and l2 == l:
                        stab += 1
                if canonical:
                    out_hkl[m, 0] = h
                    out_hkl[m, 1] = k
                    out_hkl[m, 2] = l
                    out_g2[m] = g2
                    out_mult[m] = nrot // stab
                    m += 1
    return out_hkl[:m], out_g2[:m], out_mult[:m]


@numba.njit(cache=True)
def _intensities(hkl, g2, mult, frac, occ, species, elements, coeffs, dw, wavelength, lorentz=True):
    """Integrated intensity of every reflection family: mult |F|^2 LP (LP = 1 without ``lorentz``).

    frac (N, 3), occ (N,), species (N,) index into elements (E,), coeffs (119, 4, 2) scattering
    coefficients, dw (E,) isotropic Debye-Waller B per element (A^2).
    """
    n_ref = hkl.shape[0]
    n_atoms = frac.shape[0]
    n_el = elements.shape[0]
    hmax = 0
    for i in range(n_ref):
        for j in range(3):
            hmax = max(hmax, abs(hkl[i, j]))
    width = 2 * hmax + 1
    # tables[a, j, h + hmax] = exp(2 pi i x_aj h) by repeated products (rounding grows like h * 1e-16)
    tables = np.empty((n_atoms, 3, width), np.complex128)
    for a in range(n_atoms):
        for j in range(3):
            step = np.exp(2j * np.pi * frac[a, j])
            tables[a, j, hmax] = 1.0
            up = 1.0 + 0j
            for h in range(1, hmax + 1):
                up = up * step
                tables[a, j, hmax + h] = up
                tables[a, j, hmax - h] = up.conjugate()
    out = np.empty(n_ref)
    fsum = np.empty(n_el, np.complex128)
    fel = np.empty(n_el)
    for i in range(n_ref):
        s2 = g2[i] / 4.0
        for e in range(n_el):
            z = elements[e]
            acc = 0.0
            for c in range(4):
                acc += coeffs[z, c, 0] * math.exp(-coeffs[z, c, 1] * s2)
            f = z - 41.78214 * s2 * acc
            if dw[e] != 0.0:
                f *= math.exp(-dw[e] * s2)
            fel[e] = f
            fsum[e] = 0.0
        h = hkl[i, 0] + hmax
        k = hkl[i, 1] + hmax
        l = hkl[i, 2] + hmax
        for a in range(n_atoms):
            fsum[species[a]] += occ[a] * (tables[a, 0, h] * tables[a, 1, k] * tables[a, 2, l])
        re = 0.0
        im = 0.0
        for e in range(n_el):
            re += fel[e] * fsum[e].real
            im += fel[e] * fsum[e].imag
        if not lorentz:
            out[i] = mult[i] * (re * re + im * im)
            continue
        sin_t = wavelength * math.sqrt(g2[i]) / 2.0
        cos2t = 1.0 - 2.0 * sin_t * sin_t
        cos_t = math.sqrt(max(1.0 - sin_t * sin_t, 0.0))
        lp = (1.0 + cos2t * cos2t) / (sin_t * sin_t * cos_t)
        out[i] = mult[i] * (re * re + im * im) * lp
    return out


@numba.njit(cache=True)
def _merge(two_theta, intensity, mult, tol):
    """Sum reflections whose 2-theta round to the same multiple of ``tol`` (input sorted by 2-theta)."""
    n = two_theta.shape[0]
    keep = np.empty(n, np.int64)
    out_i = np.empty(n)
    out_m = np.empty(n, np.int64)
    p = -1
    last = -(2 ** 62)
    for i in range(n):
        key = int(np.round(two_theta[i] / tol))
        if key != last:
            p += 1
            keep[p] = i
            out_i[p] = intensity[i]
            out_m[p] = mult[i]
            last = key
        else:
            out_i[p] += intensity[i]
            out_m[p] += mult[i]
    return keep[: p + 1], out_i[: p + 1], out_m[: p + 1]


@numba.njit(cache=True)
def _metric_invariant(rotations, lattice, rtol):
    metric = lattice @ lattice.T
    scale = np.abs(metric).max()
    for r in range(rotations.shape[0]):
        w = rotations[r].astype(np.float64)
        diff = w.T @ metric @ w - metric
        if np.abs(diff).max() > rtol * scale:
            return False
    return True


@numba.njit(cache=True)
def peaks_kernel(lattice, frac, occ, species, elements, coeffs, dw, rotations, wavelength, gmin2, gmax2,
                 tol, min_intensity):
    """Whole peak computation in one compiled call (no Python overhead per crystal).

    Rotations that do not leave the lattice metric invariant are replaced by the Friedel pair.
    Returns two_theta (P,), relative intensity (P,), d (P,), multiplicity (P,), hkl (P, 3).
    """
    if rotations.shape[0] > 2 and not _metric_invariant(rotations, lattice, 1e-7):
        rotations = np.empty((2, 3, 3), np.int64)
        rotations[0] = np.eye(3, dtype=np.int64)
        rotations[1] = -np.eye(3, dtype=np.int64)
    recip = np.ascontiguousarray(np.linalg.inv(lattice).T)
    hkl, g2, mult = _reflections(recip, gmin2, gmax2, rotations)
    inten = _intensities(hkl, g2, mult, frac, occ, species, elements, coeffs, dw, wavelength)
    order = np.argsort(g2)
    n = order.shape[0]
    two_theta = np.empty(n)
    for i in range(n):
        two_theta[i] = np.degrees(2.0 * math.asin(min(wavelength * math.sqrt(g2[order[i]]) / 2.0, 1.0)))
    keep, merged, merged_mult = _merge(two_theta, inten[order], mult[order], tol)
    top = 0.0
    for i in range(merged.shape[0]):
        top = max(top, merged[i])
    p = 0
    for i in range(merged.shape[0]):
        if top > 0.0 and merged[i] > min_intensity * top:
            p += 1
    out_t = np.empty(p)
    out_i = np.empty(p)
    out_d = np.empty(p)
    out_m = np.empty(p, np.int64)
    out_hkl = np.empty((p, 3), np.int64)
    j = 0
    for i in range(merged.shape[0]):
        if top > 0.0 and merged[i] > min_intensity * top:
            src = order[keep[i]]
            out_t[j] = two_theta[keep[i]]
            out_i[j] = merged[i] / top
            out_d[j] = 1.0 / math.sqrt(g2[src])
            out_m[j] = merged_mult[i]
            out_hkl[j] = hkl[src]
            j += 1
    return out_t, out_i, out_d, out_m, out_hkl


def g_limits(wavelength: float, two_theta_range) -> tuple[float, float]:
    """(|g|min^2, |g|max^2) in 1/A^2 of a 2-theta range (None: the whole limiting sphere)."""
    lo, hi = (0.0, 180.0) if two_theta_range is None else (float(two_theta_range[0]), float(two_theta_range[1]))
    if not (0.0 <= lo < hi <= 180.0) or not wavelength > 0:
        raise ValueError(f"invalid 2-theta range {two_theta_range} (need 0 <= min < max <= 180 deg) "
                         f"or wavelength {wavelength} A")
    gmin = 2.0 * math.sin(math.radians(lo / 2.0)) / wavelength
    gmax = 2.0 * math.sin(math.radians(hi / 2.0)) / wavelength
    return gmin * gmin, gmax * gmax


def debye_waller_array(debye_waller, elements: np.ndarray) -> np.ndarray:
    """(E,) B factors (A^2) per element from None, one float, or {symbol or Z: B}."""
    if debye_waller is None:
        return np.zeros(len(elements))
    if np.isscalar(debye_waller):
        return np.full(len(elements), float(debye_waller))
    from pymatgen.core.periodic_table import Element

    by_z = {Element(k).Z if isinstance(k, str) else int(k): float(v) for k, v in dict(debye_waller).items()}
    return np.array([by_z.get(int(z), 0.0) for z in elements])


def peaks_from_arrays(arrays: CrystalArrays, wavelength: float = CU_KA1, two_theta_range=(5.0, 90.0),
                      debye_waller=None, min_intensity: float = 1e-5) -> Peaks:
    """Peaks of a crystal already converted by :func:`crystal_arrays` (see :func:`simulate_peaks`)."""
    gmin2, gmax2 = g_limits(wavelength, two_theta_range)
    coeffs, _ = scattering_table()
    dw = debye_waller_array(debye_waller, arrays.elements)
    t, i, d, m, hkl = peaks_kernel(arrays.lattice, arrays.frac_coords, arrays.occupancies, arrays.species_index,
                                   arrays.elements, coeffs, dw, arrays.rotations, float(wavelength), gmin2, gmax2,
                                   TWO_THETA_TOL, float(min_intensity))
    return Peaks(two_theta=t, intensity=i, d_spacing=d, multiplicity=m, hkl=hkl, wavelength=float(wavelength))


def simulate_peaks(structure_or_crystal, wavelength: float = CU_KA1, two_theta_range=(5.0, 90.0),
                   debye_waller=None, min_intensity: float = 1e-5, symmetry: bool = True) -> Peaks:
    """Powder peaks of a pymatgen ``Structure`` or a ``SyntheticCrystal``.

    Args:
        wavelength: Angstrom (default Cu K-alpha1).
        two_theta_range: (min, max) degrees, or None for the whole limiting sphere.
        debye_waller: isotropic B factors in A^2, one float for every element or a mapping
            {element symbol or Z: B}; the scattering factor is multiplied by exp(-B s^2).
        min_intensity: drop merged peaks below this fraction of the strongest (pymatgen: 1e-5).
        symmetry: enumerate one reflection per Laue orbit (same result, faster): from the space-group
            number of a ``SyntheticCrystal``, from spglib for a ``Structure`` of more than 64 sites.
    """
    return peaks_from_arrays(crystal_arrays(structure_or_crystal, symmetry=symmetry), wavelength,
                             two_theta_range, debye_waller, min_intensity)
