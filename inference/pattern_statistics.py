"""Statistics of a powder pattern that a simulator should reproduce: peak widths, background,
noise, zero offset, lattice stretching and relative peak heights.

Every function takes a pattern as (x, y): x (N,) 2-theta in degrees, strictly increasing (not
necessarily uniform), y (N,) intensities in any linear unit (counts for measurements, the [0, 1]
scale for simulated patterns). Widths, positions and offsets are in degrees 2-theta; levels are
fractions of the pattern's range max(y) - min(y) unless a name says otherwise. Values that
cannot be determined (too few peaks, no peak-free region) are None, so they pass into JSON.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.signal import find_peaks, savgol_coeffs, savgol_filter

from inference.patterns import snip_baseline

FWHM_BINS = (("low", 0.0, 40.0), ("mid", 40.0, 65.0), ("high", 65.0, 180.0))  # deg 2-theta
SCHERRER_K = 0.9
KALPHA2_OVER_KALPHA1 = 1.544390 / 1.540562  # Cu wavelength ratio


@dataclass
class Sticks:
    """Reference peak positions: two_theta (P,) degrees and integrated intensity (P,) of one crystal at
    ``wavelength`` (A)."""

    two_theta: np.ndarray
    intensity: np.ndarray
    wavelength: float


def _step(x: np.ndarray) -> float:
    return float(np.median(np.diff(x)))


def _odd(n: float, at_least: int = 5) -> int:
    n = max(int(round(n)), at_least)
    return n if n % 2 else n + 1


def smooth(x: np.ndarray, y: np.ndarray, window_deg: float = 0.3) -> np.ndarray:
    """Savitzky-Golay (order 2) smoothing over about ``window_deg`` degrees (at least 7 points)."""
    return savgol_filter(y, min(_odd(window_deg / _step(x), 7), len(y) - 1 + len(y) % 2), 2)


def baseline(x: np.ndarray, y: np.ndarray, window_deg: float = 2.0) -> np.ndarray:
    """SNIP background (N,) of the smoothed pattern (so that noise does not pull it down) with a
    clipping half-window of ``window_deg`` degrees."""
    return snip_baseline(smooth(x, y), max(int(round(window_deg / _step(x))), 1))


def kalpha2_position(two_theta):
    """2-theta (deg) of the Cu K-alpha2 line of a K-alpha1 reflection at ``two_theta``."""
    s = np.sin(np.radians(np.asarray(two_theta, float) / 2.0)) * KALPHA2_OVER_KALPHA1
    return np.degrees(2.0 * np.arcsin(np.minimum(s, 1.0)))


def pseudo_voigt(x, height, center, fwhm, eta, b0, b1, kalpha2_ratio=0.0):
    """Pseudo-Voigt of peak ``height`` (same FWHM for both parts) on a linear background b0 + b1 (x - center),
    plus a K-alpha2 copy of ``kalpha2_ratio`` times the height."""
    out = b0 + b1 * (x - center)
    for c, h in ((center, height), (kalpha2_position(center), kalpha2_ratio * height)):
        if h:
            d = (x - c) / fwhm
            out = out + h * (eta / (1.0 + 4.0 * d * d) + (1.0 - eta) * np.exp(-4.0 * math.log(2.0) * d * d))
    return out


def fit_peak(x: np.ndarray, y: np.ndarray, center: float, fwhm_guess: float, kalpha2_ratio: float = 0.0) -> dict | None:
    """Least-squares pseudo-Voigt (with its K-alpha2 copy when ``kalpha2_ratio`` > 0) on a linear background
    within 2.5 FWHM of ``center`` (and of its K-alpha2 line).

    Returns {"two_theta", "fwhm", "eta", "height"} (deg, deg, 1, y units) of the K-alpha1 peak, or None when
    the fit fails or lands outside the window.
    """
    half = 2.5 * max(fwhm_guess, 2.0 * _step(x))
    right = float(kalpha2_position(center)) if kalpha2_ratio > 0 else center
    sel = (x >= center - half) & (x <= right + half)
    if sel.sum() < 6:
        return None
    xs, ys = x[sel], y[sel]
    b0 = float(min(ys[0], ys[-1]))
    p0 = [float(ys.max() - b0), center, fwhm_guess, 0.3, b0, 0.0]
    lo = [0.0, center - half / 2, 0.25 * fwhm_guess, 0.0, -np.inf, -np.inf]
    hi = [np.inf, center + half / 2, 4.0 * fwhm_guess, 1.0, np.inf, np.inf]
    model = lambda xx, *p: pseudo_voigt(xx, *p, kalpha2_ratio=kalpha2_ratio)  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(model, xs, ys, p0=p0, bounds=(lo, hi), maxfev=2000)
    except (RuntimeError, ValueError):
        return None
    if not (xs[0] < p[1] < xs[-1]) or p[0] <= 0 or p[2] < 1.5 * _step(x):
        return None
    return {"two_theta": float(p[1]), "fwhm": float(p[2]), "eta": float(p[3]), "height": float(p[0])}


def noise_sd(x: np.ndarray, y: np.ndarray, peak_free: np.ndarray | None = None, window_deg: float = 0.3) -> float:
    """Standard deviation of white noise on ``y``: the Savitzky-Golay (order 2) residual over ``peak_free``
    points, corrected for the filter's own share of the noise (residual variance = sd^2 (1 - h0))."""
    w = _odd(window_deg / _step(x), 7)
    w = min(w, len(y) - 1 if len(y) % 2 == 0 else len(y))
    res = y - savgol_filter(y, w, 2)
    h0 = float(savgol_coeffs(w, 2)[w // 2])
    r = res[peak_free] if peak_free is not None else res
    if r.size < 10:
        return math.nan
    return float(np.std(r) / math.sqrt(1.0 - h0))


def _robust_sd(x: np.ndarray, y: np.ndarray, window_deg: float = 0.3) -> float:
    w = _odd(window_deg / _step(x), 7)
    res = y - savgol_filter(y, w, 2)
    h0 = float(savgol_coeffs(w, 2)[w // 2])
    return float(1.4826 * np.median(np.abs(res - np.median(res))) / math.sqrt(1.0 - h0))


def _light_smooth(x: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Savitzky-Golay over about 0.1 deg (at least 5 points): keeps sharp peaks, removes lone noise spikes."""
    w = _odd(0.1 / _step(x), 5)
    return savgol_filter(signal, w, 2) if len(signal) > w else signal


def find_strong_peaks(x: np.ndarray, signal: np.ndarray, sd: float, min_fraction: float = 0.03,
                      min_relative_prominence: float = 0.25, max_peaks: int = 30) -> np.ndarray:
    """Indices of peaks of the baseline-free ``signal`` (lightly smoothed) above ``min_fraction`` of its
    maximum and 6 sd, with at least half that prominence and ``min_relative_prominence`` of their own height,
    strongest first (at most ``max_peaks``)."""
    step = _step(x)
    smoothed = _light_smooth(x, signal)
    top = float(smoothed.max())
    height = max(min_fraction * top, 6.0 * sd if np.isfinite(sd) else 0.0)
    idx, props = find_peaks(smoothed, height=height, prominence=0.5 * height, distance=max(int(round(0.1 / step)), 1))
    keep = props["prominences"] >= min_relative_prominence * props["peak_heights"]  # not bumps on a broad peak
    idx, heights = idx[keep], props["peak_heights"][keep]
    return idx[np.argsort(heights)[::-1][:max_peaks]]


def peak_width_statistics(x: np.ndarray, signal: np.ndarray, peaks: np.ndarray, wavelength: float,
                          kalpha2_ratio: float = 0.0, max_fits: int = 15) -> dict:
    """Pseudo-Voigt fits of the strongest well-separated peaks of a baseline-free ``signal``.

    A peak is well separated when no other found peak above 10 % of its height lies within 3 of its
    half-maximum widths, other than its own K-alpha2 line (fitted with it when ``kalpha2_ratio`` > 0).
    Returns the fitted peaks, median FWHM (deg) in the low/mid/high 2-theta bins
    of :data:`FWHM_BINS`, the median eta and the implied Scherrer crystallite size (nm, K = 0.9, no
    instrument correction, so a lower bound on the true size).
    """
    step = _step(x)
    smoothed = _light_smooth(x, signal)
    fits = []
    for i in peaks:
        h = smoothed[i]
        left = np.flatnonzero(smoothed[:i] < h / 2)
        right = np.flatnonzero(smoothed[i:] < h / 2)
        if not left.size or not right.size:
            continue
        guess = max((i + right[0] - left[-1]) * step, 2 * step)
        partner = float(kalpha2_position(x[i])) if kalpha2_ratio > 0 else math.inf
        near = [j for j in peaks if j != i and abs(x[j] - x[i]) < 3 * guess and smoothed[j] > 0.1 * h
                and abs(x[j] - partner) > max(0.25 * guess, 2 * step)]
        if near:
            continue
        fit = fit_peak(x, signal, float(x[i]), guess, kalpha2_ratio)
        if fit is not None and all(abs(f["two_theta"] - fit["two_theta"]) > 0.5 * fit["fwhm"] for f in fits):
            fits.append(fit)
        if len(fits) >= max_fits:
            break
    fits.sort(key=lambda f: f["two_theta"])
    out: dict = {"n_fitted_peaks": len(fits),
                 "fitted_peaks": [[round(f["two_theta"], 4), round(f["fwhm"], 4)] for f in fits]}
    for name, lo, hi in FWHM_BINS:
        w = [f["fwhm"] for f in fits if lo <= f["two_theta"] < hi]
        out[f"fwhm_{name}"] = float(np.median(w)) if w else None
    out["fwhm_median"] = float(np.median([f["fwhm"] for f in fits])) if fits else None
    out["eta_median"] = float(np.median([f["eta"] for f in fits])) if fits else None
    sizes = [scherrer_size_nm(f["two_theta"], f["fwhm"], wavelength) for f in fits]
    out["scherrer_size_nm"] = float(np.median(sizes)) if sizes else None
    return out


def scherrer_size_nm(two_theta: float, fwhm_deg: float, wavelength: float, k: float = SCHERRER_K) -> float:
    """L = K lambda / (beta cos theta), beta in radians, lambda in A -> nm."""
    return float(k * wavelength / (math.radians(fwhm_deg) * math.cos(math.radians(two_theta / 2.0))) / 10.0)


def background_statistics(x: np.ndarray, y: np.ndarray, base: np.ndarray) -> dict:
    """Level and shape of the baseline ``base`` of ``y``, as fractions of max(y) - min(y) above min(y).

    slope and curvature are the linear and quadratic coefficients of a quadratic fit against 2-theta
    mapped onto [-1, 1] over the pattern's range (same units as the level).
    """
    lo, span = float(y.min()), float(y.max() - y.min())
    b = (base - lo) / span if span > 0 else np.zeros_like(base)
    u = 2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0
    c2, c1, _ = np.polyfit(u, b, 2)
    n = len(b)
    return {"background_median": float(np.median(b)), "background_start": float(np.median(b[: max(n // 20, 1)])),
            "background_end": float(np.median(b[-max(n // 20, 1):])), "background_slope": float(c1),
            "background_curvature": float(c2),
            "offset_over_max": float(np.min(base) / y.max()) if y.max() > 0 else None}


def peak_free_mask(x: np.ndarray, signal: np.ndarray, sd: float, fwhm: float) -> np.ndarray:
    """True where the smoothed baseline-free ``signal`` is further than 2 FWHM from any point more than
    6 times the smoothed noise's sd (``sd`` is the raw noise sd) above its median."""
    w = _odd(0.3 / _step(x), 7)
    s = smooth(x, signal)
    hot = s - np.median(s) > 6.0 * sd * math.sqrt(float(savgol_coeffs(w, 2)[w // 2]))
    radius = max(int(round(2.0 * fwhm / _step(x))), 1)
    grown = np.convolve(hot.astype(float), np.ones(2 * radius + 1), mode="same") > 0
    return ~grown


def noise_statistics(x: np.ndarray, y: np.ndarray, base: np.ndarray, peak_free: np.ndarray,
                     counts: bool, n_bins: int = 8) -> dict:
    """Noise in peak-free regions: sd relative to max(y) - min(y); for counts, sd / sqrt(level) (1 for
    Poisson); and the exponent b of sd ~ level^b across 2-theta bins (0 additive, 0.5 Poisson, 1
    multiplicative; None when the background levels span less than a factor 1.5)."""
    span = float(y.max() - y.min())
    sd = noise_sd(x, y, peak_free)
    out = {"noise_sd": sd / span if np.isfinite(sd) and span > 0 else None,
           "peak_free_fraction": float(peak_free.mean()), "noise_over_sqrt_counts": None, "noise_exponent": None}
    levels, sds = [], []
    for part in np.array_split(np.arange(len(y)), n_bins):
        m = np.zeros(len(y), bool)
        m[part] = True
        m &= peak_free
        if m.sum() >= 30:
            s = noise_sd(x[part], y[part], peak_free[part])
            level = float(np.mean(base[m]))
            if np.isfinite(s) and s > 0 and level > 0:
                levels.append(level)
                sds.append(s)
    if counts and levels:
        out["noise_over_sqrt_counts"] = float(np.median(np.array(sds) / np.sqrt(levels)))
    if len(levels) >= 3 and max(levels) / min(levels) >= 1.5:
        out["noise_exponent"] = float(np.polyfit(np.log(levels), np.log(sds), 1)[0])
    return out


def render_sticks(grid: np.ndarray, sticks: Sticks, fwhm: float, kalpha2_ratio: float = 0.0,
                  d_scale: float = 1.0) -> np.ndarray:
    """Gaussian peaks of one ``fwhm`` (deg) at the sticks' positions on a uniform ``grid``, d-spacings
    multiplied by ``d_scale``, with a K-alpha2 copy of ``kalpha2_ratio`` times the intensity."""
    s = np.sin(np.radians(sticks.two_theta / 2.0)) / d_scale
    centers, inten = [], []
    for ratio, factor in ((1.0, 1.0), (kalpha2_ratio, KALPHA2_OVER_KALPHA1)):
        ok = s * factor < 1.0
        if ratio > 0:
            centers.append(np.degrees(2.0 * np.arcsin(s[ok] * factor)))
            inten.append(ratio * sticks.intensity[ok])
    c, a = np.concatenate(centers), np.concatenate(inten)
    keep = (c > grid[0] - 5 * fwhm) & (c < grid[-1] + 5 * fwhm)
    c, a = c[keep], a[keep]
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out = np.zeros_like(grid)
    step = grid[1] - grid[0]
    half = int(5 * sigma / step) + 1
    for ci, ai in zip(c, a):
        i = int(round((ci - grid[0]) / step))
        lo, hi = max(i - half, 0), min(i + half + 1, len(grid))
        if lo < hi:
            out[lo:hi] += ai * np.exp(-0.5 * ((grid[lo:hi] - ci) / sigma) ** 2)
    return out


def best_shift(a: np.ndarray, b: np.ndarray, step: float, max_shift: float) -> tuple[float, float]:
    """Shift s (deg) maximising the normalised cross-correlation of a(x) and b(x - s) on one uniform grid
    (a positive shift moves ``b`` to higher angles), refined to sub-step by a parabola; returns (s, r)."""
    a = a - a.mean()
    b = b - b.mean()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0:
        return math.nan, math.nan
    n = len(a)
    size = 1 << int(math.ceil(math.log2(2 * n)))
    cc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    k = int(round(max_shift / step))
    lags = np.arange(-k, k + 1)
    vals = cc[lags % size] / norm
    j = int(np.argmax(vals))
    frac = 0.0
    if 0 < j < len(vals) - 1:
        den = vals[j - 1] - 2 * vals[j] + vals[j + 1]
        frac = 0.5 * (vals[j - 1] - vals[j + 1]) / den if den < 0 else 0.0
    return float((lags[j] + frac) * step), float(vals[j])


def on_uniform(x: np.ndarray, y: np.ndarray, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``y`` linearly interpolated onto a uniform grid of ``step`` degrees over x's range."""
    grid = np.arange(x[0], x[-1] + step / 2, step)
    return grid, np.interp(grid, x, y)


def position_statistics(x: np.ndarray, signal: np.ndarray, sticks: Sticks, fwhm: float, kalpha2_ratio: float,
                        max_shift: float = 1.0, max_strain: float = 0.01, strain_step: float = 5e-4) -> dict:
    """Zero offset (deg) against the sticks rendered at the pattern's ``fwhm``; then the best d-spacing scale
    with its own offset (a lattice stretching: > 1 means larger measured d), both on sqrt intensities."""
    grid, a = on_uniform(x, np.sqrt(np.clip(signal, 0, None)))
    step = grid[1] - grid[0]
    ref = np.sqrt(render_sticks(grid, sticks, fwhm, kalpha2_ratio))
    offset, r = best_shift(a, ref, step, max_shift)
    best = (-math.inf, 1.0, offset)
    for scale in np.arange(1.0 - max_strain, 1.0 + max_strain + strain_step / 2, strain_step):
        s, rs = best_shift(a, np.sqrt(render_sticks(grid, sticks, fwhm, kalpha2_ratio, scale)), step, max_shift)
        if rs > best[0]:
            best = (rs, float(scale), s)
    return {"zero_offset": offset, "zero_offset_at_limit": bool(abs(offset) >= max_shift - step),
            "zero_offset_correlation": r, "d_scale": best[1],
            "zero_offset_with_d_scale": best[2], "d_scale_correlation": best[0],
            "d_scale_at_limit": bool(abs(best[1] - 1.0) >= max_strain - strain_step / 2)}


def intensity_statistics(x: np.ndarray, signal: np.ndarray, peaks: np.ndarray, sticks: Sticks, fwhm: float,
                         kalpha2_ratio: float, offset: float) -> dict:
    """Heights of the found ``peaks`` of ``signal`` against the reference (sticks at ``fwhm``, shifted by
    ``offset``) at the same places: Pearson and Spearman correlation; and the fraction of the reference's
    peaks above 10 % of its maximum that have a found peak within 2 FWHM."""
    from scipy.stats import pearsonr, spearmanr

    grid, _ = on_uniform(x, signal)
    ref = render_sticks(grid - offset, sticks, fwhm, kalpha2_ratio)
    out = {"n_matched_peaks": int(len(peaks)), "intensity_pearson": None, "intensity_spearman": None,
           "strong_reference_peaks_found": None}
    if ref.max() <= 0:
        return out
    ref_on_x = np.interp(x, grid, ref) / ref.max()
    half = max(fwhm / 2, _step(x))
    ref_heights = np.array([ref_on_x[(x > x[i] - half) & (x < x[i] + half)].max() for i in peaks]) if len(peaks) else []
    if len(peaks) >= 3 and np.ptp(ref_heights) > 0 and np.ptp(signal[peaks]) > 0:
        out["intensity_pearson"] = float(pearsonr(signal[peaks], ref_heights)[0])
        out["intensity_spearman"] = float(spearmanr(signal[peaks], ref_heights)[0])
    ref_peaks, _ = find_peaks(ref / ref.max(), height=0.1)
    found = x[peaks] if len(peaks) else np.array([])
    if len(ref_peaks):
        hit = [bool(found.size and np.min(np.abs(found - grid[j])) < 2 * fwhm) for j in ref_peaks]
        out["strong_reference_peaks_found"] = float(np.mean(hit))
    return out


def pattern_statistics(x: np.ndarray, y: np.ndarray, sticks: Sticks | None, counts: bool,
                       kalpha2_ratio: float = 0.5, baseline_window_deg: float = 2.0) -> dict:
    """All statistics of one pattern (see the module docstring); ``sticks``: the reference peaks of its
    crystal (None skips positions and intensities); ``counts``: y is in counts (Poisson check)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    base = baseline(x, y, baseline_window_deg)
    signal = y - base
    sd0 = _robust_sd(x, signal)
    peaks = find_strong_peaks(x, signal, sd0)
    wavelength = sticks.wavelength if sticks is not None else 1.5406
    out = peak_width_statistics(x, signal, peaks, wavelength, kalpha2_ratio)
    fwhm = out["fwhm_median"] or max(0.1, 2 * _step(x))
    out.update(background_statistics(x, y, base))
    out.update(noise_statistics(x, y, base, peak_free_mask(x, signal, sd0, fwhm), counts))
    if sticks is not None and len(sticks.two_theta):
        out.update(position_statistics(x, signal, sticks, fwhm, kalpha2_ratio))
        out.update(intensity_statistics(x, signal, peaks, sticks, fwhm, kalpha2_ratio, out["zero_offset"]))
    return out
