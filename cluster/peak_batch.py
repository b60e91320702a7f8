"""A compact batch: peak lists and per-pattern draws, rendered into patterns by the consumer.

With ``cluster.payload=peaks`` generation actors send a :class:`PeakBatch` instead of a
:class:`~cluster.batch.Batch` of (B, N) patterns: per crystal the peak list after strain and
texture, per pattern every random draw that :meth:`simulator.PatternSimulator.patterns` would
make for it (profile, shifts, backgrounds, hump, impurity weight, noise levels, scan window).
The trainer renders the batch on its own device (:mod:`cluster.torch_render`); the pure,
background, impurity and window parts equal the simulator's, the noise is drawn there from
``noise_seed``.

:func:`draw_peak_batch` makes the draws from the simulator's ``rng`` in exactly the order
``PatternSimulator.patterns`` makes them, leaving out only the noise arrays (Poisson counts and
Gaussian/uniform noise); with counting and noise off, the same seed gives the same patterns.
:func:`render_reference` renders a payload with the simulator's own numpy/Numba functions (the
reference the torch renderer is tested against). This module imports numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from types import SimpleNamespace
from typing import Optional

import numpy as np

from cluster.batch import cell_shapes
from simulator import measurement as meas
from simulator.imperfections import GPBackground, GPDraw, Noise, VecseiBackground, VecseiDraw, preprocess
from simulator.pattern import PatternSimulator, ProfileParameters, _next_other

VECSEI_FIELDS = 13  # up (h, a, pos), down (h, a, pos), polynomial c0..c4, bump (h, n)


@dataclass(frozen=True)
class RenderSpec:
    """The static part of rendering (from the ``SimulationConfig``), the same for every pattern.

    Grid: ``grid_start + grid_step * i`` deg, i < ``n_points``. ``width``: "scherrer", "caglioti" or
    "scherrer_caglioti"; ``cutoff``: profiles are evaluated where they exceed cutoff x the tallest
    peak's height (as the Numba renderer does); ``goniometer_radius_mm`` converts displacements.
    """

    grid_start: float
    grid_step: float
    n_points: int
    wavelength: float
    width: str
    scherrer_k: float
    min_fwhm_deg: float
    cutoff: float
    kalpha2: bool
    kalpha2_wavelength: float
    kalpha2_ratio: float
    goniometer_radius_mm: float
    sqrt: bool

    @classmethod
    def from_config(cls, config) -> "RenderSpec":
        p = config.profile
        return cls(float(config.grid.two_theta_min), float(config.grid.step), int(config.n_points),
                   float(config.wavelength), str(p.width), float(p.scherrer_k), float(p.min_fwhm_deg),
                   float(p.cutoff), bool(p.kalpha2), float(p.kalpha2_wavelength), float(p.kalpha2_ratio),
                   float(config.shift.goniometer_radius_mm), bool(config.sqrt))

    @property
    def grid(self) -> np.ndarray:
        """(N,) float64 2-theta axis, deg (equal to ``PatternSimulator.grid``)."""
        return self.grid_start + self.grid_step * np.arange(self.n_points)


@dataclass
class PeakBatch:
    """B patterns of C crystals as peak lists and draws (P: most peaks of a crystal, K: most GP knots).

    Peaks (per crystal, concatenated: crystal c owns entries ``offsets[c]:offsets[c + 1]``; positions and
    intensities as ``PatternSimulator.peaks`` returns them, after strain and texture, before the pattern's
    shift; float64, so every profile window is exactly the Numba renderer's. Ragged rather than padded:
    peak counts have a long tail, padding to the largest would double the bytes):
        two_theta: (T,) float64 deg. intensity: (T,) float64, max 1 per crystal. offsets: (C + 1,) int32.
    Per pattern:
        crystal: (B,) int32 index of the pattern's crystal (its peak list).
        profile: (B, 5) float64 crystallite size (nm), Caglioti U, V, W (deg^2), eta.
        shift: (B, 2) float64 zero offset (deg), sample displacement (mm).
        gp_knots: (B, K) float32 GP background values at knots ``grid_start + gp_step * k``, or None
            (GP background off). gp_count: (B,) int16 knots used; gp_step: (B,) float64 deg; gp_scale:
            (B,) float32 the background's sum over the grid.
        vecsei: (B, 13) float32 step up (h, a, pos), step down (h, a, pos), |polynomial| c0..c4, bump
            (h, n) on rel = i / (N - 1), zeros where not drawn; None when off.
        hump: (B, 3) float32 centre (deg), FWHM (deg), height (0: none); None when off.
        impurity_partner: (B,) int32 pattern of the batch whose pure pattern is mixed in (-1: none);
            impurity_weight: (B,) float32 its weight a; both None when off.
        max_counts: (B,) float32 Poisson counts at the maximum (0: none); None when off.
        noise: (B, 3) float32 additive sd, multiplicative sd, uniform amplitude; None when off.
        window: (B, 2) int32 first and last grid index a scan covers (inclusive; whole grid when not
            drawn); None when off.
        noise_seed: seed of the renderer's noise generator (one per batch).
    Labels as :class:`~cluster.batch.Batch`: labels (B,) int64, space_groups (B,) int16, log_volume (B,) float32,
    cell_shape (B, 5) float32 (None where unknown).
    """

    spec: RenderSpec
    two_theta: np.ndarray
    intensity: np.ndarray
    offsets: np.ndarray
    crystal: np.ndarray
    profile: np.ndarray
    shift: np.ndarray
    labels: np.ndarray
    space_groups: np.ndarray
    log_volume: np.ndarray
    noise_seed: int = 0
    gp_knots: Optional[np.ndarray] = None
    gp_count: Optional[np.ndarray] = None
    gp_step: Optional[np.ndarray] = None
    gp_scale: Optional[np.ndarray] = None
    vecsei: Optional[np.ndarray] = None
    hump: Optional[np.ndarray] = None
    impurity_partner: Optional[np.ndarray] = None
    impurity_weight: Optional[np.ndarray] = None
    max_counts: Optional[np.ndarray] = None
    noise: Optional[np.ndarray] = None
    window: Optional[np.ndarray] = None
    cell_shape: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def peak_range(self, i: int) -> tuple[int, int]:
        """Slice of the peak arrays that pattern ``i`` renders."""
        c = int(self.crystal[i])
        return int(self.offsets[c]), int(self.offsets[c + 1])

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays (what crosses the queue, less pickling overhead)."""
        return int(sum(v.nbytes for f in fields(self) if isinstance(v := getattr(self, f.name), np.ndarray)))

    def check(self, n_classes: int, input_length: int) -> Optional[str]:
        """Why this payload cannot be trained on (None if it can); the counterpart of checking patterns."""
        b = len(self)
        if self.spec.n_points != input_length:
            return f"peak payload renders {self.spec.n_points} points, the model expects {input_length}"
        if b == 0 or len(self.crystal) != b or len(self.profile) != b:
            return f"peak payload of {len(self.crystal)} patterns with {b} labels"
        if (self.labels < 0).any() or (self.labels >= n_classes).any():
            return f"labels outside [0, {n_classes})"
        if not (np.isfinite(self.two_theta).all() and np.isfinite(self.intensity).all()
                and np.isfinite(self.profile).all()):
            return "non-finite peak payload values"
        return None


def _pad(rows: list[np.ndarray], dtype) -> np.ndarray:
    out = np.zeros((len(rows), max([len(r) for r in rows] + [1])), dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def draw_peak_batch(sim: PatternSimulator, crystals: list, rng: np.random.Generator, patterns_per_crystal: int = 1,
                    labels=None, noise_seed: int = 0, n_patterns: int | None = None) -> PeakBatch:
    """The payload of ``len(crystals) * patterns_per_crystal`` patterns (crystal i: patterns i*k .. i*k+k-1),
    or of the first ``n_patterns`` of them (the last crystal then gives fewer than k).

    Draws from ``rng`` in the order of ``sim.patterns(expanded crystals, rng)`` (k = 1: the same
    draws); with k > 1 the patterns of a crystal share one peak list (one strain and texture draw)
    and differ in everything else. ``labels``: (B,) int64 class indices (default: -1).
    """
    c = sim.config
    k = int(patterns_per_crystal)
    peaks, params = [], []
    for crystal in crystals:
        peaks.append(sim.peaks(crystal, rng))
        params.extend(sim.draw_profile(rng) for _ in range(k))
    expanded = [x for x in crystals for _ in range(k)]
    if n_patterns is not None:
        if not len(expanded) - k < n_patterns <= len(expanded):
            raise ValueError(f"n_patterns {n_patterns} needs {-(-n_patterns // k)} crystals at {k} per crystal, "
                             f"got {len(crystals)}")
        expanded, params = expanded[:n_patterns], params[:n_patterns]
    b, n = len(expanded), sim.grid.shape[0]
    partners = _next_other(expanded) if c.impurity.enabled else None
    gp = GPBackground(c.gp_background) if c.gp_background.enabled else None
    vecsei = VecseiBackground(c.vecsei_background) if c.vecsei_background.enabled else None
    gp_draws, vecsei_rows = [], np.zeros((b, VECSEI_FIELDS), np.float32)
    hump = np.tile(np.array([0.0, 1.0, 0.0], np.float32), (b, 1))
    partner, weight = np.full(b, -1, np.int32), np.zeros(b, np.float32)
    counts, noise = np.zeros(b, np.float32), np.zeros((b, 3), np.float32)
    window = np.tile(np.array([0, n - 1], np.int32), (b, 1))
    for i in range(b):  # the draws of PatternSimulator.imperfect, then draw_window
        if sim.draw_clean(rng):  # neutral draws: no impurity, backgrounds, hump, noise; the whole grid
            if gp is not None:
                gp_draws.append(GPDraw(float(sim.grid[0]), 1.0, np.zeros(0), 0.0))
            continue
        if partners is not None and partners[i] is not None:
            partner[i], weight[i] = partners[i], meas.uniform(rng, c.impurity.weight)
        if gp is not None:
            gp_draws.append(gp.draw(sim.grid, rng))
        if vecsei is not None:
            vecsei_rows[i] = _vecsei_row(vecsei.draw(rng))
        if c.hump.enabled and rng.random() < c.hump.probability:
            hump[i] = (meas.uniform(rng, c.hump.center), meas.uniform(rng, c.hump.fwhm), meas.uniform(rng, c.hump.height))
        if c.counting.enabled:
            counts[i] = meas.uniform(rng, c.counting.max_counts, log=True)
        if c.noise.enabled:
            noise[i] = (meas.uniform(rng, c.noise.additive_sd), meas.uniform(rng, c.noise.multiplicative_sd),
                        meas.uniform(rng, c.noise.uniform_amplitude))
        mask = sim.draw_window(rng)
        if mask is not None and mask.any():
            inside = np.flatnonzero(mask)
            window[i] = inside[0], inside[-1]
    out = PeakBatch(
        spec=RenderSpec.from_config(c),
        two_theta=np.concatenate([p.two_theta for p in peaks] + [np.zeros(0)]).astype(np.float64),
        intensity=np.concatenate([p.intensity for p in peaks] + [np.zeros(0)]).astype(np.float64),
        offsets=np.cumsum([0] + [len(p) for p in peaks]).astype(np.int32),
        crystal=np.repeat(np.arange(len(crystals), dtype=np.int32), k)[:b],
        profile=np.array([[q.crystallite_size_nm, q.caglioti_u, q.caglioti_v, q.caglioti_w, q.eta] for q in params],
                         np.float64).reshape(b, 5),
        shift=np.array([[q.zero_offset_deg, q.displacement_mm] for q in params], np.float64).reshape(b, 2),
        labels=np.full(b, -1, np.int64) if labels is None else np.asarray(labels, np.int64),
        space_groups=np.array([x.space_group for x in expanded], np.int16),
        log_volume=np.log(np.array([x.volume for x in expanded], np.float64)).astype(np.float32),
        cell_shape=cell_shapes(expanded),
        noise_seed=int(noise_seed),
    )
    if gp is not None:
        out.gp_knots = _pad([d.values for d in gp_draws], np.float32)
        out.gp_count = np.array([len(d.values) for d in gp_draws], np.int16)
        out.gp_step = np.array([d.step for d in gp_draws], np.float64)
        out.gp_scale = np.array([d.scale for d in gp_draws], np.float32)
    if vecsei is not None:
        out.vecsei = vecsei_rows
    if c.hump.enabled:
        out.hump = hump
    if partners is not None:
        out.impurity_partner, out.impurity_weight = partner, weight
    if c.counting.enabled:
        out.max_counts = counts
    if c.noise.enabled:
        out.noise = noise
    if c.window.enabled:
        out.window = window
    return out


def _vecsei_row(d: VecseiDraw) -> np.ndarray:
    row = np.zeros(VECSEI_FIELDS, np.float32)
    if d.step_up is not None:
        row[0:3] = d.step_up
    if d.step_down is not None:
        row[3:6] = d.step_down
    if d.polynomial is not None:
        row[6:6 + len(d.polynomial)] = d.polynomial
    if d.bump is not None:
        row[11:13] = d.bump
    return row


def _vecsei_draw(row: np.ndarray) -> VecseiDraw:
    r = row.astype(np.float64)
    return VecseiDraw(tuple(r[0:3]) if r[0] else None, tuple(r[3:6]) if r[3] else None,
                      r[6:11] if r[6:11].any() else None, tuple(r[11:13]) if r[11] else None)


def render_reference(batch: PeakBatch, sim: PatternSimulator, rng: np.random.Generator | None = None,
                     noise: bool = True) -> np.ndarray:
    """(B, N) float32 model inputs of ``batch`` rendered by the simulator's numpy/Numba functions.

    ``sim`` must have been built from the config the payload was drawn with. Counting and Gaussian
    noise (when the payload has them and ``noise``) are drawn from ``rng``.
    """
    b = len(batch)
    pures = []
    for i in range(b):
        lo, hi = batch.peak_range(i)
        peaks = SimpleNamespace(two_theta=batch.two_theta[lo:hi], intensity=batch.intensity[lo:hi],
                                wavelength=batch.spec.wavelength)
        size, u, v, w, eta = batch.profile[i]
        out = sim.render(peaks, ProfileParameters(size, u, v, w, eta, *batch.shift[i]))
        top = out.max()
        pures.append(out / top if top > 0 else out)
    grid = sim.grid
    result = np.empty((b, grid.shape[0]), np.float32)
    for i in range(b):
        x = pures[i]
        if batch.impurity_partner is not None and batch.impurity_partner[i] >= 0:
            a = float(batch.impurity_weight[i])
            imp = pures[batch.impurity_partner[i]]
            x = (1.0 - a) * _unit_max(x) + a * _unit_max(imp)
        if batch.gp_knots is not None and batch.gp_count[i] > 0:
            knots = batch.gp_knots[i, :batch.gp_count[i]].astype(np.float64)
            x = x + GPDraw(float(grid[0]), float(batch.gp_step[i]), knots, float(batch.gp_scale[i])).evaluate(grid)
        if batch.vecsei is not None:
            x = x + _vecsei_draw(batch.vecsei[i]).evaluate(grid)
        if batch.hump is not None and batch.hump[i, 2] > 0:
            x = x + meas.amorphous_hump(grid, *batch.hump[i].astype(np.float64))
        if noise and rng is not None:
            if batch.max_counts is not None and batch.max_counts[i] > 0:
                x = meas.counting_noise(x, float(batch.max_counts[i]), rng)
            if batch.noise is not None:
                lv = batch.noise[i].astype(np.float64)
                cfg = SimpleNamespace(additive_sd=[lv[0]] * 2, multiplicative_sd=[lv[1]] * 2,
                                      uniform_amplitude=[lv[2]] * 2)
                x = Noise(cfg)(x, grid, rng)
        mask = None
        if batch.window is not None:
            mask = np.zeros(grid.shape[0], bool)
            mask[batch.window[i, 0]:batch.window[i, 1] + 1] = True
        result[i] = preprocess(meas.fill_outside(x, mask), batch.spec.sqrt)
    return result


def _unit_max(x: np.ndarray) -> np.ndarray:
    top = float(np.max(x)) if x.size else 0.0
    return x / top if top > 0 else x


def clean_view(batch: PeakBatch, crystallite_size_nm: float | None = None) -> PeakBatch:
    """The same patterns without the measurement: no impurity, backgrounds, hump, noise, scan window or
    2-theta shifts, on the same grid (B, N). With ``crystallite_size_nm`` the peaks are also those of a
    pure pattern: Gaussian Scherrer peaks of that size, no instrument width, no K-alpha2; None keeps each
    pattern's drawn profile (size, Caglioti widths, eta, K-alpha2). The peak lists (after strain and
    texture) and labels are shared, not copied."""
    off = {f: None for f in ("gp_knots", "gp_count", "gp_step", "gp_scale", "vecsei", "hump", "impurity_partner",
                             "impurity_weight", "max_counts", "noise", "window")}
    spec, profile = batch.spec, batch.profile
    if crystallite_size_nm is not None:
        if not crystallite_size_nm > 0:
            raise ValueError(f"clean view: crystallite_size_nm must be > 0, got {crystallite_size_nm}")
        spec = replace(spec, width="scherrer", kalpha2=False)
        profile = np.zeros_like(batch.profile)
        profile[:, 0] = crystallite_size_nm
    return replace(batch, spec=spec, profile=profile, shift=np.zeros_like(batch.shift), **off)
