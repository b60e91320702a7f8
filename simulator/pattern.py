"""Crystal -> model input: peaks, profiles, imperfections and preprocessing on the configured grid."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from simulator.config import SimulationConfig
from simulator import measurement as meas
from simulator.imperfections import GPBackground, ImpurityMix, Noise, VecseiBackground, preprocess
from simulator.peaks import Peaks, crystal_arrays, peaks_from_arrays
from simulator.profiles import caglioti_fwhm, doublet_positions, render_peaks, scherrer_fwhm


@dataclass
class ProfileParameters:
    """Per-pattern draws of the profile and of the peak shifts (units: nm, deg^2, dimensionless, deg, mm)."""

    crystallite_size_nm: float
    caglioti_u: float
    caglioti_v: float
    caglioti_w: float
    eta: float
    zero_offset_deg: float = 0.0
    displacement_mm: float = 0.0


class PatternSimulator:
    """Turns crystals (``SyntheticCrystal`` or pymatgen ``Structure``) into (N,) float32 patterns in [0, 1].

    Attributes:
        config: the validated :class:`SimulationConfig`.
        grid: (N,) float64 2-theta axis, degrees.
    """

    def __init__(self, config=None):
        self.config = SimulationConfig.from_any(config)
        g = self.config.grid
        self.grid = g.two_theta_min + g.step * np.arange(self.config.n_points)
        c = self.config
        self._backgrounds = [t for t, on in ((GPBackground(c.gp_background), c.gp_background.enabled),
                                             (VecseiBackground(c.vecsei_background), c.vecsei_background.enabled))
                             if on]
        self._noise = Noise(c.noise) if c.noise.enabled else None
        self._impurity = ImpurityMix(c.impurity) if c.impurity.enabled else None

    # -- peaks and profiles -------------------------------------------------------------------
    def peaks(self, crystal, rng: np.random.Generator | None = None) -> Peaks:
        """Peaks at the configured wavelength over the grid plus the profile margin.

        With ``rng`` and the strain or texture sections enabled, the cell is strained before the
        peaks are computed and the intensities get a March-Dollase factor (then rescaled to max 1).
        """
        c = self.config
        lo = max(self.grid[0] - c.profile.margin_deg, 0.0)
        hi = min(self.grid[-1] + c.profile.margin_deg + 3.0 * c.shift.enabled, 179.9)
        arrays = crystal_arrays(crystal, symmetry=c.symmetry)
        rotations = None  # the crystal's Laue rotations, found once if strain or texture needs them
        if rng is not None and c.strain.enabled:
            iso, aniso = meas.draw_strain(rng, c.strain.isotropic, c.strain.anisotropic_sd)
            rotations = self._symmetry_of(crystal, arrays)
            arrays.lattice = meas.strained_lattice(arrays.lattice, rotations, iso, aniso)
        peaks = peaks_from_arrays(arrays, c.wavelength, (lo, hi), c.debye_waller_b, c.min_peak_intensity)
        if rng is not None and c.texture.enabled and len(peaks) and rng.random() < c.texture.probability:
            r = meas.uniform(rng, c.texture.march_r, log=True)
            if rotations is None:
                rotations = self._symmetry_of(crystal, arrays)
            factor = meas.march_dollase(peaks.hkl, arrays.lattice, rotations, meas.draw_texture_axis(rng), r)
            inten = peaks.intensity * factor
            peaks.intensity = inten / inten.max()
        return peaks

    @staticmethod
    def _symmetry_of(crystal, arrays) -> np.ndarray:
        """Laue rotations of ``crystal`` (spglib for an ordered pymatgen Structure whose arrays carry only
        the Friedel pair), so strain and texture respect its symmetry."""
        if len(arrays.rotations) <= 2 and hasattr(crystal, "sites") and crystal.is_ordered:
            from simulator.laue import structure_laue_rotations

            numbers = arrays.elements[arrays.species_index]
            return structure_laue_rotations(arrays.lattice, arrays.frac_coords, numbers, symprec=1e-3)
        return arrays.rotations

    def draw_profile(self, rng: np.random.Generator) -> ProfileParameters:
        c = self.config
        p = c.profile
        u = meas.uniform
        shift = c.shift
        return ProfileParameters(u(rng, p.crystallite_size_nm, log=p.crystallite_size_log), u(rng, p.caglioti_u),
                                 u(rng, p.caglioti_v), u(rng, p.caglioti_w),
                                 u(rng, p.eta) if p.shape == "pseudo_voigt" else 0.0,
                                 u(rng, shift.zero_offset_deg) if shift.enabled else 0.0,
                                 u(rng, shift.displacement_mm) if shift.enabled else 0.0)

    def fwhm(self, two_theta: np.ndarray, params: ProfileParameters) -> np.ndarray:
        """Peak FWHM in degrees at ``two_theta`` for one pattern's profile parameters."""
        p = self.config.profile
        w = 0.0
        if p.width in ("scherrer", "scherrer_caglioti"):
            w = scherrer_fwhm(two_theta, self.config.wavelength, params.crystallite_size_nm, p.scherrer_k) ** 2
        if p.width in ("caglioti", "scherrer_caglioti"):
            w = w + caglioti_fwhm(two_theta, params.caglioti_u, params.caglioti_v, params.caglioti_w) ** 2
        return np.maximum(np.sqrt(w), p.min_fwhm_deg)

    def render(self, peaks: Peaks, params: ProfileParameters) -> np.ndarray:
        """(N,) float64 profile sum on the grid (not yet scaled), K-alpha2 included if configured."""
        p = self.config.profile
        centers, inten = peaks.two_theta, peaks.intensity
        if params.zero_offset_deg or params.displacement_mm:
            centers = meas.shifted_positions(centers, params.zero_offset_deg, params.displacement_mm,
                                             self.config.shift.goniometer_radius_mm)
        if p.kalpha2 and len(centers):
            second = doublet_positions(centers, peaks.wavelength, p.kalpha2_wavelength)
            ok = np.isfinite(second)
            centers = np.concatenate([centers, second[ok]])
            inten = np.concatenate([inten, p.kalpha2_ratio * inten[ok]])
        out = np.zeros(self.grid.shape[0])
        if len(centers):
            render_peaks(out, float(self.grid[0]), float(self.config.grid.step), np.ascontiguousarray(centers),
                         np.ascontiguousarray(inten), self.fwhm(centers, params), float(params.eta), p.cutoff)
        return out

    # -- whole patterns ------------------------------------------------------------------------
    def pure(self, crystal, rng: np.random.Generator, params: ProfileParameters | None = None) -> np.ndarray:
        """(N,) float64 pure pattern scaled to max 1 (no background, noise or impurity)."""
        out = self.render(self.peaks(crystal, rng), params or self.draw_profile(rng))
        top = out.max()
        return out / top if top > 0 else out

    def imperfect(self, pure: np.ndarray, rng: np.random.Generator, impurity: np.ndarray | None = None) -> np.ndarray:
        """Apply the enabled imperfections to a pure pattern (impurity phase only when one is given)."""
        x = pure
        if self._impurity is not None and impurity is not None:
            x = self._impurity(x, impurity, rng)
        for background in self._backgrounds:
            x = background(x, self.grid, rng)
        c = self.config
        if c.hump.enabled and rng.random() < c.hump.probability:
            x = x + meas.amorphous_hump(self.grid, meas.uniform(rng, c.hump.center), meas.uniform(rng, c.hump.fwhm),
                                        meas.uniform(rng, c.hump.height))
        if c.counting.enabled:
            x = meas.counting_noise(x, meas.uniform(rng, c.counting.max_counts, log=True), rng)
        if self._noise is not None:
            x = self._noise(x, self.grid, rng)
        return x

    def preprocess(self, intensity: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Exactly the training-time scaling of (N,) or (B, N) patterns already on :attr:`grid`: points outside
        ``mask`` (the part a scan covers) filled with the lowest value inside, min-max to [0, 1], optional
        sqrt. Measured patterns go through the same call at inference. Returns float32."""
        x = np.asarray(intensity)
        if x.shape[-1] != self.grid.shape[0]:
            raise ValueError(f"pattern has {x.shape[-1]} points, the grid {self.grid.shape[0]}; "
                             "interpolate it onto PatternSimulator.grid first")
        return preprocess(meas.fill_outside(x, mask), self.config.sqrt)

    def draw_clean(self, rng: np.random.Generator) -> bool:
        """Whether the next pattern skips the per-pattern degradations (``clean_probability``); draws from
        ``rng`` only when that probability is positive."""
        p = self.config.clean_probability
        return p > 0 and rng.random() < p

    def draw_window(self, rng: np.random.Generator) -> np.ndarray | None:
        """(N,) bool mask of a random scan window, or None (the whole grid) when the window is off or not drawn."""
        w = self.config.window
        if not w.enabled or rng.random() >= w.probability:
            return None
        return meas.window_mask(self.grid, meas.uniform(rng, w.start), meas.uniform(rng, w.end))

    def pattern(self, crystal, rng: np.random.Generator, impurity=None) -> np.ndarray:
        """(N,) float32 model input in [0, 1] for one crystal; ``impurity``: a second crystal for the impurity phase."""
        pure = self.pure(crystal, rng)
        imp = self.pure(impurity, rng) if (impurity is not None and self._impurity is not None) else None
        if self.draw_clean(rng):
            return self.preprocess(pure)
        return self.preprocess(self.imperfect(pure, rng, imp), self.draw_window(rng))

    def patterns(self, crystals, rng: np.random.Generator, impurities=None) -> np.ndarray:
        """(B, N) float32 batch. With the impurity phase enabled and no ``impurities`` given, crystal i's
        impurity is the next crystal of the batch (cyclically) that is another object than crystal i, so no
        extra crystals are needed and a crystal repeated in the batch (several crystallite sizes) is never
        its own impurity; a batch of one crystal gets no impurity phase."""
        crystals = list(crystals)
        out = np.empty((len(crystals), self.grid.shape[0]), np.float32)
        pures = [self.pure(c, rng) for c in crystals]
        partners = _next_other(crystals) if self._impurity is not None and impurities is None else None
        for i, pure in enumerate(pures):
            if self.draw_clean(rng):
                out[i] = self.preprocess(pure)
                continue
            imp = None
            if self._impurity is not None:
                if impurities is not None:
                    imp = self.pure(impurities[i], rng)
                elif partners[i] is not None:
                    imp = pures[partners[i]]
            out[i] = self.preprocess(self.imperfect(pure, rng, imp), self.draw_window(rng))
        return out

    def timing(self, crystals, rng: np.random.Generator) -> dict[str, float]:
        """Seconds and bytes per sample of :meth:`patterns` on ``crystals`` (for logs and benchmarks)."""
        t0 = time.perf_counter()
        batch = self.patterns(crystals, rng)
        dt = time.perf_counter() - t0
        n = max(len(batch), 1)
        return {"seconds_per_sample": dt / n, "bytes_per_sample": batch.nbytes / n}


def _next_other(items: list) -> list:
    """For every position, the index of the next item (cyclically) that is not the same object, or None."""
    n = len(items)
    starts = [i for i in range(n) if i == 0 or items[i] is not items[i - 1]]  # runs of one object
    partners: list = [None] * n
    for r, start in enumerate(starts):
        stop = starts[r + 1] if r + 1 < len(starts) else n
        for step in range(1, len(starts)):
            j = starts[(r + step) % len(starts)]
            if items[j] is not items[start]:
                partners[start:stop] = [j] * (stop - start)
                break
    return partners
