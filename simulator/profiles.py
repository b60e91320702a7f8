"""Peak widths and windowed rendering of stick patterns onto a uniform 2-theta grid.

Profiles are area-normalised (the peak intensities are integrated intensities). Each peak is
evaluated only inside the window where it exceeds ``cutoff`` times the tallest peak's height; the
Gaussian inside the window is built by a two-multiplication recurrence instead of one exp per point.
"""
from __future__ import annotations

import math

import numba
import numpy as np

FOUR_LN2 = 4.0 * math.log(2.0)
GAUSS_NORM = 2.0 * math.sqrt(math.log(2.0) / math.pi)  # height of a unit-area Gaussian times its FWHM
LORENTZ_NORM = 2.0 / math.pi  # height of a unit-area Lorentzian times its FWHM


def scherrer_fwhm(two_theta_deg: np.ndarray, wavelength: float, size_nm: float, k: float = 0.9) -> np.ndarray:
    """Scherrer FWHM in degrees 2-theta: beta = K lambda / (L cos theta) radians (lambda in A, L in nm)."""
    theta = np.radians(np.asarray(two_theta_deg, float) / 2.0)
    return np.degrees(k * wavelength / (size_nm * 10.0 * np.cos(theta)))


def caglioti_fwhm(two_theta_deg: np.ndarray, u: float, v: float, w: float) -> np.ndarray:
    """Caglioti FWHM in degrees: sqrt(U tan^2 theta + V tan theta + W) (U, V, W in deg^2), negative squares -> 0."""
    t = np.tan(np.radians(np.asarray(two_theta_deg, float) / 2.0))
    return np.sqrt(np.maximum(u * t * t + v * t + w, 0.0))


def doublet_positions(two_theta_deg: np.ndarray, wavelength1: float, wavelength2: float) -> np.ndarray:
    """2-theta (deg) of the same d-spacings at ``wavelength2`` for peaks measured at ``wavelength1``
    (NaN where the reflection leaves the limiting sphere)."""
    s = np.sin(np.radians(np.asarray(two_theta_deg, float) / 2.0)) * wavelength2 / wavelength1
    out = np.full(s.shape, np.nan)
    ok = s < 1.0
    out[ok] = np.degrees(2.0 * np.arcsin(s[ok]))
    return out


@numba.njit(cache=True)
def render_peaks(out, start, step, centers, intensities, fwhm, eta, cutoff):
    """Add area-normalised pseudo-Voigt peaks (eta = 0: Gaussian) to ``out`` (N,) in place.

    out[i] is the profile at 2-theta = start + i * step (deg); centers, intensities, fwhm (P,) deg.
    """
    n = out.shape[0]
    p = centers.shape[0]
    top = 0.0
    for j in range(p):
        h = intensities[j] / fwhm[j] * ((1.0 - eta) * GAUSS_NORM + eta * LORENTZ_NORM)
        top = max(top, h)
    if top <= 0.0:
        return
    floor = cutoff * top
    for j in range(p):
        w = fwhm[j]
        hg = (1.0 - eta) * intensities[j] * GAUSS_NORM / w
        hl = eta * intensities[j] * LORENTZ_NORM / w
        if hg + hl <= floor:
            continue
        a = FOUR_LN2 / (w * w)
        if hg > floor:
            # Gaussian window: where hg exp(-a u^2) falls to the floor
            half = w * math.sqrt(math.log(hg / floor) / FOUR_LN2)
            lo = max(0, int(math.ceil((centers[j] - half - start) / step)))
            hi = min(n - 1, int(math.floor((centers[j] + half - start) / step)))
            # g_i = exp(-a u_i^2), u_i = x_i - c: g_{i+1} = g_i r_i, r_{i+1} = r_i q
            u = start + lo * step - centers[j]
            g = hg * math.exp(-a * u * u)
            r = math.exp(-a * (2.0 * u * step + step * step))
            q = math.exp(-2.0 * a * step * step)
            for i in range(lo, hi + 1):
                out[i] += g
                g *= r
                r *= q
        if hl > floor:
            half = 0.5 * w * math.sqrt(hl / floor - 1.0)
            lo = max(0, int(math.ceil((centers[j] - half - start) / step)))
            hi = min(n - 1, int(math.floor((centers[j] + half - start) / step)))
            c4 = 4.0 / (w * w)
            for i in range(lo, hi + 1):
                u = start + i * step - centers[j]
                out[i] += hl / (1.0 + c4 * u * u)
