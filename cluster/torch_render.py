"""Render a :class:`~cluster.peak_batch.PeakBatch` into (B, N) model inputs with torch, on any device.

The physics of ``simulator.PatternSimulator.patterns``, vectorised over the batch:

1. Per peak (host, numpy float64, O(peaks)): shifted positions (zero offset, sample displacement),
   the K-alpha2 doublet, FWHM (Scherrer, Caglioti or both in quadrature, at least ``min_fwhm_deg``),
   area-normalised Gaussian and Lorentzian heights and the windows where each exceeds ``cutoff`` x
   the tallest peak's height: the same formulas as ``simulator.profiles.render_peaks``, so every
   profile covers exactly the grid points the Numba renderer fills.
2. Profiles (device, O(peaks x window)): every (pattern, peak, Gaussian/Lorentzian part) is one
   row of a padded (rows, W) block, rows grouped by kind and window length (quarter octaves) and cut
   into blocks of at most ``chunk_elements`` values, added into the flat (B * N) output with ``index_add_``. Pure
   patterns are scaled to max 1.
3. Imperfections (device, O(B x N)): impurity mixing with a partner pattern of the batch, GP
   background (linear interpolation of knots, shifted to min 0, scaled to its drawn sum), Vecsei
   background, amorphous hump, Poisson counting noise, additive/multiplicative/uniform noise
   (drawn from a ``torch.Generator`` seeded with the batch's ``noise_seed``), the scan-window fill
   of ``simulator.measurement.fill_outside``, min-max scaling and the optional sqrt of
   ``simulator.imperfections.preprocess``.

Noise streams differ from numpy's and between CPU and CUDA; everything else matches the
simulator to float32 rounding (``tests/test_torch_render.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cluster.peak_batch import PeakBatch, RenderSpec

FOUR_LN2 = 4.0 * math.log(2.0)
GAUSS_NORM = 2.0 * math.sqrt(math.log(2.0) / math.pi)
LORENTZ_NORM = 2.0 / math.pi


@dataclass
class _Rows:
    """Profile rows (host arrays, one per rendered Gaussian or Lorentzian part of a peak)."""

    flat_start: np.ndarray   # (R,) int64 index into the flat (B * N) output of the window's first point
    length: np.ndarray       # (R,) int64 points in the window
    u0: np.ndarray           # (R,) float64 2-theta of the first point minus the centre, deg
    height: np.ndarray       # (R,) float64 peak height of the part
    coef: np.ndarray         # (R,) float64 Gaussian: 4 ln2 / w^2; Lorentzian: 4 / w^2
    lorentz: np.ndarray      # (R,) bool


def profile_rows(batch: PeakBatch) -> _Rows:
    """The windows and parameters of every profile part of ``batch`` (numpy float64, as Numba computes them).

    Works on the flat list of the batch's peaks (pattern-major, K-alpha1 lines before K-alpha2 ones):
    padding every pattern to the longest peak list cost ten times the work on measured-looking
    batches, where one pattern can hold 2,800 peaks and the mean is 210."""
    s = batch.spec
    b = len(batch)
    counts = np.diff(batch.offsets)[batch.crystal]                     # peaks per pattern
    pat = np.repeat(np.arange(b), counts)                               # (M,) pattern of each peak
    first = np.cumsum(counts) - counts
    idx = batch.offsets[batch.crystal][pat] + (np.arange(len(pat)) - first[pat])
    tt, inten = batch.two_theta[idx], batch.intensity[idx]
    zero, disp = batch.shift[pat, 0], batch.shift[pat, 1]
    theta = np.radians(tt / 2.0)
    centers = np.where((zero != 0) | (disp != 0),
                       tt + zero - np.degrees(2.0 * disp * np.cos(theta) / s.goniometer_radius_mm), tt)
    if s.kalpha2 and len(pat):
        sin2 = np.sin(np.radians(centers / 2.0)) * s.kalpha2_wavelength / s.wavelength
        ok = sin2 < 1.0
        order = np.argsort(np.concatenate([pat, pat[ok]]), kind="stable")  # each pattern's K-alpha2 after its K-alpha1
        centers = np.concatenate([centers, np.degrees(2.0 * np.arcsin(sin2[ok]))])[order]
        inten = np.concatenate([inten, s.kalpha2_ratio * inten[ok]])[order]
        pat = np.concatenate([pat, pat[ok]])[order]
    size, u, v, w, eta = (batch.profile[pat, k] for k in range(5))
    th = np.radians(centers / 2.0)
    sq = 0.0
    if s.width in ("scherrer", "scherrer_caglioti"):
        sq = np.degrees(s.scherrer_k * s.wavelength / (size * 10.0 * np.cos(th))) ** 2
    if s.width in ("caglioti", "scherrer_caglioti"):
        t = np.tan(th)
        sq = sq + np.sqrt(np.maximum(u * t * t + v * t + w, 0.0)) ** 2
    fwhm = np.maximum(np.sqrt(sq), s.min_fwhm_deg)
    hg = (1.0 - eta) * inten * GAUSS_NORM / fwhm
    hl = eta * inten * LORENTZ_NORM / fwhm
    top = np.zeros(b)
    np.maximum.at(top, pat, inten / fwhm * ((1.0 - eta) * GAUSS_NORM + eta * LORENTZ_NORM))
    floor = s.cutoff * top[pat]
    keep = (top[pat] > 0) & (hg + hl > floor)
    rows = [_part_rows(keep & (hg > floor), pat, centers, fwhm, hg, floor, FOUR_LN2 / fwhm ** 2, False, s),
            _part_rows(keep & (hl > floor), pat, centers, fwhm, hl, floor, 4.0 / fwhm ** 2, True, s)]
    return _Rows(*(np.concatenate([getattr(r, f) for r in rows]) for f in _Rows.__dataclass_fields__))


def _part_rows(sel, pat, centers, fwhm, height, floor, coef, lorentz: bool, s: RenderSpec) -> _Rows:
    bi, c, w, h, f, cf = pat[sel], centers[sel], fwhm[sel], height[sel], floor[sel], coef[sel]
    if lorentz:
        half = 0.5 * w * np.sqrt(h / f - 1.0)
    else:
        half = w * np.sqrt(np.log(h / f) / FOUR_LN2)
    lo = np.maximum(0, np.ceil((c - half - s.grid_start) / s.grid_step)).astype(np.int64)
    hi = np.minimum(s.n_points - 1, np.floor((c + half - s.grid_start) / s.grid_step)).astype(np.int64)
    ok = hi >= lo
    lo, hi, bi, c, h, cf = lo[ok], hi[ok], bi[ok], c[ok], h[ok], cf[ok]
    return _Rows(bi.astype(np.int64) * s.n_points + lo, hi - lo + 1, s.grid_start + lo * s.grid_step - c, h, cf,
                 np.full(len(lo), lorentz))


class TorchRenderer:
    """Renders peak payloads on ``device`` (float32 by default; ``dtype=torch.float64`` for checks).

    ``chunk_elements`` bounds the values of one profile block (memory: about 16 bytes each).
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 chunk_elements: int = 1 << 22):
        self.device = torch.device(device)
        self.dtype = dtype
        self.chunk_elements = int(chunk_elements)

    def _t(self, x, dtype=None) -> torch.Tensor:
        x = np.asarray(x)
        if not x.flags.writeable:  # arrays from Ray's object store are read-only
            x = x.copy()
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype or self.dtype, device=self.device)

    # -- pure patterns ---------------------------------------------------------------------------
    def pure(self, batch: PeakBatch) -> torch.Tensor:
        """(B, N) profile sums scaled to max 1 (zeros for a pattern without peaks)."""
        s = batch.spec
        b, n = len(batch), s.n_points
        out = torch.zeros(b * n, dtype=self.dtype, device=self.device)
        r = profile_rows(batch)
        if len(r.length):
            # blocks of one profile kind and lengths within a quarter octave (padding wastes < 19 %),
            # and each block evaluates only its own formula (Lorentzian tails hold most of the values)
            bucket = np.ceil(4.0 * np.log2(r.length)).astype(np.int64) * 2 + r.lorentz
            order = np.lexsort((r.length, bucket))                        # by block, then by length
            bucket = bucket[order]
            # two uploads per batch, then device slices: a copy per block would wait on the device each time
            ints = self._t(np.stack([r.length[order], r.flat_start[order]]), torch.int64)
            floats = self._t(np.stack([r.u0[order], r.height[order], r.coef[order]]))
            ends = np.append(np.flatnonzero(np.diff(bucket)) + 1, len(bucket))
            for a0, b0 in zip(np.r_[0, ends[:-1]], ends):
                width = int(r.length[order[b0 - 1]])                   # the block's longest row
                per = max(1, self.chunk_elements // width)
                for a in range(int(a0), int(b0), per):
                    self._add_block(out, ints[:, a:min(a + per, b0)], floats[:, a:min(a + per, b0)], width,
                                    s.grid_step, bool(bucket[a0] % 2))
        out = out.view(b, n)
        top = out.amax(dim=1, keepdim=True)
        return torch.where(top > 0, out / torch.where(top > 0, top, 1.0), out)

    def _add_block(self, out: torch.Tensor, ints: torch.Tensor, floats: torch.Tensor, width: int, step: float,
                   lorentz: bool) -> None:
        """Add the rows of one block: ``ints`` (2, R) window lengths and flat starts, ``floats`` (3, R) first
        point's offset from the centre, height and coefficient (device tensors)."""
        j = torch.arange(width, device=self.device)
        length, start = ints[0][:, None], ints[1][:, None]
        u = floats[0][:, None] + j.to(self.dtype)[None, :] * step
        h, coef = floats[1][:, None], floats[2][:, None]
        val = u.square_().mul_(coef)                                   # uu, in place
        val = h / val.add_(1.0) if lorentz else val.neg_().exp_().mul_(h)
        val.masked_fill_(j[None, :] >= length, 0.0)                    # padding adds zeros
        index = (start + j[None, :]).clamp_(max=out.numel() - 1)
        out.index_add_(0, index.reshape(-1), val.reshape(-1))

    # -- whole patterns --------------------------------------------------------------------------
    def intensities(self, batch: PeakBatch, noise: bool = True) -> torch.Tensor:
        """(B, N) patterns before the window fill and scaling (``PatternSimulator.imperfect``'s output)."""
        s = batch.spec
        b, n = len(batch), s.n_points
        pure = self.pure(batch)
        x = pure
        if batch.impurity_partner is not None:
            partner = self._t(batch.impurity_partner, torch.int64)
            mixed = partner >= 0
            if bool(mixed.any()):
                a = self._t(batch.impurity_weight)[:, None]
                unit = _unit_max(pure)
                mix = (1.0 - a) * unit + a * unit[partner.clamp(min=0)]
                x = torch.where(mixed[:, None], mix, x)
        i = torch.arange(n, device=self.device)
        if batch.gp_knots is not None:
            x = x + self._gp(batch, i)
        if batch.vecsei is not None:
            x = x + self._vecsei(batch, i, n)
        if batch.hump is not None:
            c, fw, hgt = (self._t(batch.hump[:, k])[:, None] for k in range(3))
            grid = (s.grid_start + s.grid_step * i.to(torch.float64)).to(self.dtype)
            x = x + torch.where(hgt > 0, hgt * torch.exp(-FOUR_LN2 * ((grid[None, :] - c) / fw) ** 2), 0.0)
        if noise and (batch.max_counts is not None or batch.noise is not None):
            x = self._noise(batch, x)
        return x

    def _gp(self, batch: PeakBatch, i: torch.Tensor) -> torch.Tensor:
        s = batch.spec
        knots = self._t(batch.gp_knots)
        count = self._t(batch.gp_count, torch.int64)[:, None]
        t = i.to(torch.float64)[None, :] * self._t(s.grid_step / batch.gp_step, torch.float64)[:, None]
        k = torch.clamp(torch.floor(t).to(torch.int64), min=0)
        k = torch.minimum(k, (count - 2).clamp(min=0))
        frac = (t - k.to(torch.float64)).clamp(max=1.0).to(self.dtype)
        y0 = torch.gather(knots, 1, k)
        y1 = torch.gather(knots, 1, torch.minimum(k + 1, (count - 1).clamp(min=0)))
        values = y0 + (y1 - y0) * frac
        values = values - values.amin(dim=1, keepdim=True)
        total = values.sum(dim=1, keepdim=True)
        scale = self._t(batch.gp_scale)[:, None]
        bg = torch.where(total > 0, values / torch.where(total > 0, total, 1.0) * scale, values)
        return torch.where(count > 0, bg, 0.0)

    def _vecsei(self, batch: PeakBatch, i: torch.Tensor, n: int) -> torch.Tensor:
        p = self._t(batch.vecsei)
        rel = (i.to(torch.float64) / (n - 1)).to(self.dtype)[None, :]
        col = [p[:, k:k + 1] for k in range(p.shape[1])]
        out = col[0] / (1.0 + torch.exp(col[1] * (rel - col[2])))
        out = out + col[3] * (1.0 - 1.0 / (1.0 + torch.exp(col[4] * (rel - col[5]))))
        poly = col[10]
        for c in (col[9], col[8], col[7], col[6]):      # Horner, as numpy's polyval
            poly = poly * rel + c
        out = out + poly.abs()
        return out + col[11] * (col[12] * rel) ** 2 * torch.exp(-col[12] * rel)

    def _noise(self, batch: PeakBatch, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(batch.noise_seed) % (1 << 63))
        if batch.max_counts is not None:
            counts = self._t(batch.max_counts)[:, None]
            top = x.amax(dim=1, keepdim=True)
            on = (counts > 0) & (top > 0)
            scale = torch.where(on, counts / torch.where(top > 0, top, 1.0), 1.0)
            drawn = torch.poisson(x.clamp(min=0.0) * scale, generator=gen) / scale
            x = torch.where(on, drawn, x)
        if batch.noise is not None:
            add, mul, amp = (self._t(batch.noise[:, k])[:, None] for k in range(3))
            x = x + add * torch.randn(x.shape, generator=gen, device=self.device, dtype=self.dtype)
            x = x * (1.0 + mul * torch.randn(x.shape, generator=gen, device=self.device, dtype=self.dtype))
            x = x + amp * torch.rand(x.shape, generator=gen, device=self.device, dtype=self.dtype)
        return x

    def __call__(self, batch: PeakBatch, noise: bool = True) -> torch.Tensor:
        """(B, N) float32 model inputs in [0, 1] on the renderer's device."""
        x = self.intensities(batch, noise)
        n = x.shape[1]
        if batch.window is not None:
            w = self._t(batch.window, torch.int64)
            i = torch.arange(n, device=self.device)[None, :]
            mask = (i >= w[:, 0:1]) & (i <= w[:, 1:2])
            lo = torch.where(mask, x, torch.inf).amin(dim=1, keepdim=True)
            x = torch.where(mask, x, lo)
        lo = x.amin(dim=1, keepdim=True)
        span = x.amax(dim=1, keepdim=True) - lo
        x = torch.where(span > 0, (x - lo) / torch.where(span > 0, span, 1.0), 0.0)
        if batch.spec.sqrt:
            x = torch.sqrt(x)
        return x.float()


def _unit_max(x: torch.Tensor) -> torch.Tensor:
    top = x.amax(dim=1, keepdim=True)
    return torch.where(top > 0, x / torch.where(top > 0, top, 1.0), x)


_RENDERERS: dict = {}


def render_batch(batch: PeakBatch, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, N) float32 model inputs of ``batch`` rendered on ``device`` (one cached renderer per device)."""
    key = str(torch.device(device))
    if key not in _RENDERERS:
        _RENDERERS[key] = TorchRenderer(device)
    return _RENDERERS[key](batch)
