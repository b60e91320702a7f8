"""Single-crystal zone-axis diffraction images along [100], [010] and [001], raw or "shaped" (Tiong et al.).

For each axis [uvw] of the conventional cell the kinematic pattern is the zero-order Laue zone
(ZOLZ): reciprocal-lattice points g = h a* + k b* + l c* with h u + k v + l w = 0 (0 k l for [100],
h 0 l for [010], h k 0 for [001]) inside |g| <= ``g_max``. Each spot's intensity is |F(hkl)|^2 with
F = sum_atoms occ f(s) exp(2 pi i h.x), s = |g| / 2, computed from the same coefficient table as
:mod:`simulator.peaks` (:func:`simulator.scattering.scattering_table`).

Scattering factors: **electron** by default. The table's coefficients are the electron factors
f_e(s) = sum_i a_i exp(-b_i s^2) (Angstrom); pymatgen (and :mod:`simulator.peaks`) obtain X-ray
factors from them by the Mott-Bethe relation f_x = Z - 41.78214 s^2 f_e. Zone-axis spot patterns
are what a TEM records (selected-area electron diffraction; the paper's 3.5 pm wavelength is a
~100 keV electron's), so the electron factors are the natural choice and need no division by s^2.
``radiation: xray`` uses the X-ray factors of the powder simulator instead. The flat-Ewald-sphere
limit is used (every ZOLZ spot excited, no excitation-error or dynamical effects).

Geometry: the beam runs along the real-space axis a_i; the image x axis is a*_j (j = i + 1 mod 3)
and y = a_i x x, so the three frames are cyclic permutations of each other and a cubic crystal gives
three identical images. The image scale is fixed (``g_max`` maps to the image edge less
``margin_px``), so spot spacings carry the lattice parameters.

Rendering: spots are Gaussians (peak = scaled intensity v in [0, 1], sigma growing linearly with v
from ``spot_sigma_px[0]`` to ``[1]``); overlaps take the maximum. Shaping (the paper's "shaped DP"):
a line joins every pair of spots closer than ``shaping_factor`` x the smallest spot distance of
that image; its profile is a Gaussian across the segment whose height and sigma interpolate those of
its two end spots (line thickness follows node size). Output: (3, H, W) float32 in [0, 1], one
channel per axis; ``spot_image`` superimposes them (the spot-DP baseline input is the same array).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

import numba
import numpy as np

from simulator.peaks import crystal_arrays
from simulator.scattering import scattering_table

AXES = ("[100]", "[010]", "[001]")
MOTT_BETHE = 41.78214  # A^-1: f_x = Z - MOTT_BETHE s^2 f_e


@dataclass
class ZoneAxisConfig:
    """Zone-axis images (conf/representation/zone_axis.yaml).

    kind: "zone_axis", the switch that makes ``cluster.sources.make_source`` build the image producer.
    image_size: [H, W] pixels. g_max: largest |g| drawn, 1/A (d >= 1 / g_max). margin_px: pixels
    between the g_max circle and the image edge. radiation: "electron" or "xray" scattering factors.
    debye_waller_b: isotropic B of every atom, A^2 (0: none). min_intensity: spots weaker than this
    fraction of the strongest are neither drawn nor shaped (removes systematic absences' round-off).
    scaling: "sqrt", "log" (``log_decades`` decades of intensity mapped to [0, 1]) or "linear".
    spot_sigma_px: Gaussian sigma of the weakest and of the strongest spot, pixels.
    direct_beam: draw the 000 spot at full intensity (it takes part in shaping).
    shaping: draw the paper's lines; shaping_factor: the 1.7 of the paper.
    max_spots: per axis; more raise an error naming the key (huge cells at a large g_max).
    """

    kind: str = "zone_axis"
    image_size: List[int] = field(default_factory=lambda: [128, 128])
    g_max: float = 1.0
    margin_px: float = 3.0
    radiation: str = "electron"
    debye_waller_b: float = 1.0
    min_intensity: float = 1e-4
    scaling: str = "sqrt"
    log_decades: float = 4.0
    spot_sigma_px: List[float] = field(default_factory=lambda: [0.6, 1.4])
    direct_beam: bool = True
    shaping: bool = True
    shaping_factor: float = 1.7
    max_spots: int = 6000

    @classmethod
    def from_any(cls, config=None) -> "ZoneAxisConfig":
        """A validated config from None, a dataclass, a dict or a DictConfig (unknown keys raise)."""
        from generator.config import as_config

        cfg = as_config(cls, config)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        where = "representation (zone_axis)"
        if self.kind != "zone_axis":
            raise ValueError(f"{where}.kind must be 'zone_axis', got {self.kind!r}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"{where}.image_size must be [H, W] with both >= 8, got {list(self.image_size)}")
        if not self.g_max > 0 or not 0 <= self.margin_px < min(self.image_size) / 2 - 1:
            raise ValueError(f"{where}: need g_max > 0 and 0 <= margin_px < min(image_size) / 2 - 1")
        if self.radiation not in ("electron", "xray"):
            raise ValueError(f"{where}.radiation must be 'electron' or 'xray', got {self.radiation!r}")
        if self.scaling not in ("sqrt", "log", "linear"):
            raise ValueError(f"{where}.scaling must be 'sqrt', 'log' or 'linear', got {self.scaling!r}")
        s = self.spot_sigma_px
        if len(s) != 2 or not 0 < s[0] <= s[1]:
            raise ValueError(f"{where}.spot_sigma_px must be [low, high] with 0 < low <= high, got {list(s)}")
        if not (0 <= self.min_intensity < 1 and self.log_decades > 0 and self.shaping_factor >= 1
                and self.debye_waller_b >= 0 and self.max_spots > 0):
            raise ValueError(f"{where}: need 0 <= min_intensity < 1, log_decades > 0, shaping_factor >= 1, "
                             f"debye_waller_b >= 0 and max_spots > 0")


@dataclass
class ZoneAxisSpots:
    """Spots of one axis. hkl: (M, 3) int64; xy: (M, 2) float64 pixel (column, row); intensity: (M,)
    |F|^2 relative to the strongest (direct beam excluded); value: (M,) scaled to [0, 1]."""

    hkl: np.ndarray
    xy: np.ndarray
    intensity: np.ndarray
    value: np.ndarray


def zolz_indices(lattice: np.ndarray, axis: int, g_max: float) -> tuple[np.ndarray, np.ndarray]:
    """ZOLZ Miller indices of zone axis ``axis`` (0: [100], 1: [010], 2: [001]) within |g| <= g_max (000 left
    out) and their in-plane coordinates (M, 2) in 1/A along the cyclic image frame (see module docstring)."""
    lattice = np.asarray(lattice, float)
    recip = np.linalg.inv(lattice).T  # rows a*, b*, c* (no 2 pi)
    j, k = (axis + 1) % 3, (axis + 2) % 3
    # m = g . a_j, so |m| <= g_max |a_j|
    mj = int(math.floor(g_max * np.linalg.norm(lattice[j]) + 1e-9))
    mk = int(math.floor(g_max * np.linalg.norm(lattice[k]) + 1e-9))
    m, n = np.meshgrid(np.arange(-mj, mj + 1), np.arange(-mk, mk + 1), indexing="ij")
    m, n = m.ravel(), n.ravel()
    g = m[:, None] * recip[j] + n[:, None] * recip[k]
    keep = (np.einsum("ij,ij->i", g, g) <= g_max * g_max * (1 + 1e-12)) & ((m != 0) | (n != 0))
    hkl = np.zeros((int(keep.sum()), 3), np.int64)
    hkl[:, j], hkl[:, k] = m[keep], n[keep]
    beam = lattice[axis] / np.linalg.norm(lattice[axis])
    ex = recip[j] / np.linalg.norm(recip[j])
    ey = np.cross(beam, ex)
    g = g[keep]
    return hkl, np.stack([g @ ex, g @ ey], axis=1)


def structure_intensities(arrays, hkl: np.ndarray, radiation: str = "electron", debye_waller_b: float = 0.0) -> np.ndarray:
    """(M,) kinematic |F(hkl)|^2 of a :class:`~simulator.peaks.CrystalArrays`."""
    coeffs, _ = scattering_table()
    recip = np.linalg.inv(arrays.lattice).T
    g = hkl @ recip
    s2 = np.einsum("ij,ij->i", g, g) / 4.0                                   # (M,) s^2 = (|g| / 2)^2
    c = coeffs[arrays.elements]                                              # (E, 4, 2)
    fe = np.einsum("ec,mec->me", c[:, :, 0], np.exp(-c[None, :, :, 1] * s2[:, None, None]))  # (M, E) electron
    f = fe if radiation == "electron" else arrays.elements[None, :] - MOTT_BETHE * s2[:, None] * fe
    if debye_waller_b:
        f = f * np.exp(-debye_waller_b * s2)[:, None]
    phase = np.exp(2j * np.pi * (hkl @ arrays.frac_coords.T))               # (M, N)
    F = np.einsum("mn,mn->m", phase, f[:, arrays.species_index] * arrays.occupancies[None, :])
    return (F.real ** 2 + F.imag ** 2).astype(np.float64)


def scale_intensities(rel: np.ndarray, scaling: str, log_decades: float = 4.0) -> np.ndarray:
    """Relative intensities (max 1) -> [0, 1] display values."""
    rel = np.clip(rel, 0.0, 1.0)
    if scaling == "sqrt":
        return np.sqrt(rel)
    if scaling == "log":
        with np.errstate(divide="ignore"):
            return np.clip(1.0 + np.log10(np.maximum(rel, 1e-300)) / log_decades, 0.0, 1.0)
    return rel


@numba.njit(cache=True)
def shaping_pairs(xy, factor):
    """(P, 2) int64 pairs of spots closer than ``factor`` x the smallest distance between any two spots."""
    n = xy.shape[0]
    dmin2 = np.inf
    for a in range(n):
        for b in range(a + 1, n):
            d2 = (xy[a, 0] - xy[b, 0]) ** 2 + (xy[a, 1] - xy[b, 1]) ** 2
            if d2 < dmin2:
                dmin2 = d2
    out = np.empty((0, 2), np.int64)
    if n < 2 or dmin2 <= 0.0:
        return out
    lim2 = dmin2 * factor * factor
    count = 0
    for a in range(n):
        for b in range(a + 1, n):
            if (xy[a, 0] - xy[b, 0]) ** 2 + (xy[a, 1] - xy[b, 1]) ** 2 < lim2:
                count += 1
    out = np.empty((count, 2), np.int64)
    p = 0
    for a in range(n):
        for b in range(a + 1, n):
            if (xy[a, 0] - xy[b, 0]) ** 2 + (xy[a, 1] - xy[b, 1]) ** 2 < lim2:
                out[p, 0] = a
                out[p, 1] = b
                p += 1
    return out


@numba.njit(cache=True)
def render(img, xy, value, sigma, pairs):
    """Draw Gaussian spots (and lines for ``pairs``) into ``img`` (H, W) by maximum; windows of 3 sigma."""
    h, w = img.shape
    for s in range(xy.shape[0]):
        r = 3.0 * sigma[s]
        x0, y0 = xy[s, 0], xy[s, 1]
        inv = 0.5 / (sigma[s] * sigma[s])
        for row in range(max(0, int(math.floor(y0 - r))), min(h, int(math.ceil(y0 + r)) + 1)):
            for col in range(max(0, int(math.floor(x0 - r))), min(w, int(math.ceil(x0 + r)) + 1)):
                v = value[s] * math.exp(-((col - x0) ** 2 + (row - y0) ** 2) * inv)
                if v > img[row, col]:
                    img[row, col] = v
    for p in range(pairs.shape[0]):
        a, b = pairs[p, 0], pairs[p, 1]
        ax, ay, bx, by = xy[a, 0], xy[a, 1], xy[b, 0], xy[b, 1]
        dx, dy = bx - ax, by - ay
        l2 = dx * dx + dy * dy
        if l2 <= 0.0:
            continue
        r = 3.0 * max(sigma[a], sigma[b])
        for row in range(max(0, int(math.floor(min(ay, by) - r))), min(h, int(math.ceil(max(ay, by) + r)) + 1)):
            for col in range(max(0, int(math.floor(min(ax, bx) - r))), min(w, int(math.ceil(max(ax, bx) + r)) + 1)):
                t = ((col - ax) * dx + (row - ay) * dy) / l2
                t = min(max(t, 0.0), 1.0)
                d2 = (col - ax - t * dx) ** 2 + (row - ay - t * dy) ** 2
                sg = sigma[a] + t * (sigma[b] - sigma[a])
                v = (value[a] + t * (value[b] - value[a])) * math.exp(-0.5 * d2 / (sg * sg))
                if v > img[row, col]:
                    img[row, col] = v
    return img


class ZoneAxisSimulator:
    """``ZoneAxisSimulator(cfg)(crystal) -> (3, H, W) float32``; ``.images(crystals) -> (B, 3, H, W)``.

    ``crystal``: a ``SyntheticCrystal`` or pymatgen ``Structure`` in its conventional setting.
    """

    def __init__(self, config: ZoneAxisConfig | dict | None = None):
        self.config = ZoneAxisConfig.from_any(config)
        c = self.config
        self.shape = (3, int(c.image_size[0]), int(c.image_size[1]))
        self.center = np.array([(c.image_size[1] - 1) / 2.0, (c.image_size[0] - 1) / 2.0])
        self.pixels_per_inv_angstrom = (min(c.image_size) / 2.0 - 1.0 - c.margin_px) / c.g_max

    def spots(self, crystal, axis: int) -> ZoneAxisSpots:
        """The drawn spots of one axis (weaker than ``min_intensity`` dropped; direct beam not included)."""
        return self._spots(crystal_arrays(crystal, symmetry=False), axis)

    def _spots(self, arrays, axis: int) -> ZoneAxisSpots:
        c = self.config
        hkl, g_xy = zolz_indices(arrays.lattice, axis, c.g_max)
        if len(hkl) > c.max_spots:
            raise ValueError(f"{len(hkl)} ZOLZ spots along {AXES[axis]} exceed representation.max_spots="
                             f"{c.max_spots} (cell too large for g_max={c.g_max})")
        inten = structure_intensities(arrays, hkl, c.radiation, c.debye_waller_b)
        top = inten.max() if len(inten) else 0.0
        rel = inten / top if top > 0 else np.zeros_like(inten)
        keep = rel > c.min_intensity
        xy = self.center + self.pixels_per_inv_angstrom * g_xy[keep] * np.array([1.0, -1.0])  # rows grow downwards
        return ZoneAxisSpots(hkl[keep], xy, rel[keep], scale_intensities(rel[keep], c.scaling, c.log_decades))

    def axis_image(self, spots: ZoneAxisSpots, shaping: bool | None = None) -> np.ndarray:
        """(H, W) float32 image of one axis' spots (``shaping`` None: the config's)."""
        c = self.config
        xy, value = spots.xy, spots.value
        if c.direct_beam:
            xy, value = np.vstack([self.center[None, :], xy]), np.concatenate([[1.0], value])
        lo, hi = c.spot_sigma_px
        sigma = lo + (hi - lo) * value
        shaping = c.shaping if shaping is None else shaping
        pairs = (shaping_pairs(np.ascontiguousarray(xy), float(c.shaping_factor)) if shaping and len(xy) > 1
                 else np.empty((0, 2), np.int64))
        img = np.zeros(self.shape[1:], np.float64)
        render(img, np.ascontiguousarray(xy, np.float64), np.ascontiguousarray(value, np.float64),
               np.ascontiguousarray(sigma, np.float64), pairs)
        return img.astype(np.float32)

    def __call__(self, crystal, shaping: bool | None = None) -> np.ndarray:
        arrays = crystal_arrays(crystal, symmetry=False)
        return np.stack([self.axis_image(self._spots(arrays, a), shaping) for a in range(3)])

    def images(self, crystals, shaping: bool | None = None) -> np.ndarray:
        """(B, 3, H, W) float32 images of ``crystals``."""
        out = np.empty((len(crystals),) + self.shape, np.float32)
        for i, crystal in enumerate(crystals):
            out[i] = self(crystal, shaping)
        return out

