"""Bringing a measured powder pattern (read and checked by :mod:`inference.readers`) onto a model's input.

:func:`prepare_pattern`: optional baseline removal, conversion of the angles through the
d-spacing to the model's axis (2-theta at the model's wavelength, or 1/d), the
Lorentz-polarisation ratio between the two, interpolation onto the model's grid, masking of
the part of the grid the measurement does not cover, and finally the simulator's own
training-time preprocessing (scaling, square root), so that a measured pattern reaches the
network exactly as the simulated ones did during training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from inference.readers import MeasuredPattern, PatternError

# File suffixes read as delimited text by this module.
@dataclass
class PatternConfig:
    """How a measured pattern is brought onto a model's input (``conf/inference/default.yaml``: ``pattern``).

    Attributes:
        min_coverage: smallest fraction of the model's grid the measurement must cover.
        min_points: fewest measured points that must fall inside the model's grid.
        baseline: background removed before anything else: "none", "min" (subtract the minimum)
            or "snip" (statistics-sensitive non-linear iterative peak clipping).
        snip_window: half-width of the SNIP clipping window, degrees 2-theta.
        lorentz_polarisation: correct intensities by the ratio of Lorentz-polarisation factors
            when the angle axis changes (wavelength conversion), or divide by it for 1/d models
            whose training patterns carry none.
    """

    min_coverage: float = 0.2
    min_points: int = 50
    baseline: str = "min"
    snip_window: float = 2.0
    lorentz_polarisation: bool = True


@dataclass(frozen=True)
class InputSpec:
    """A model's input axis and the training-time preprocessing of its patterns.

    Attributes:
        grid: (N,) float64 axis values: 2-theta in degrees (``axis="two_theta"``) or 1/d in
            1/Angstrom (``axis="inverse_d"``).
        axis: "two_theta" or "inverse_d".
        wavelength: Angstrom, for "two_theta" axes.
        preprocess: maps intensities on the grid (N,) and the (N,) bool mask of the part the scan covers
            to model inputs (N,), exactly as in training (the simulator's ``preprocess``, which also
            prepares its randomly windowed patterns).
        lorentz_polarisation: whether the training patterns carry the Lorentz-polarisation factor.
        measured_error: why no measured scan can be brought onto this input (G(r) models need
            total-scattering data), else None.

    ``inference.predict.input_spec`` builds it from a checkpoint's representation
    (:mod:`simulator.representation`), whose axis conversion and interpolation are used here.
    """

    grid: np.ndarray
    axis: str = "two_theta"
    wavelength: float | None = 1.5406
    preprocess: Callable[..., np.ndarray] = field(default=lambda y, mask=None: y, compare=False)
    lorentz_polarisation: bool = True
    measured_error: str | None = None


@dataclass
class PreparedPattern:
    """A measured pattern on a model's input.

    Attributes:
        values: (N,) float32 model input.
        mask: (N,) bool, True where the measurement covers the grid (elsewhere the input is 0).
        coverage: fraction of the grid covered.
        wavelength: the measurement wavelength that was used, Angstrom.
    """

    values: np.ndarray
    mask: np.ndarray
    coverage: float
    wavelength: float


# ----------------------------------------------------------------------------------------- reading


def lorentz_polarisation(two_theta: np.ndarray) -> np.ndarray:
    """(1 + cos^2 2theta) / (sin^2 theta cos theta), the unpolarised-beam powder factor."""
    theta = np.radians(np.asarray(two_theta, dtype=np.float64) / 2.0)
    return (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


def two_theta_to_inverse_d(two_theta: np.ndarray, wavelength: float) -> np.ndarray:
    """1/d = 2 sin(theta) / lambda (Bragg), 1/Angstrom."""
    return 2.0 * np.sin(np.radians(np.asarray(two_theta, dtype=np.float64) / 2.0)) / wavelength


def inverse_d_to_two_theta(inverse_d: np.ndarray, wavelength: float) -> np.ndarray:
    """2-theta in degrees of reflections at 1/d; NaN where lambda/(2d) > 1 (beyond the limiting sphere)."""
    s = np.asarray(inverse_d, dtype=np.float64) * wavelength / 2.0
    out = np.full(s.shape, np.nan)
    ok = (s >= 0) & (s <= 1)
    out[ok] = np.degrees(2.0 * np.arcsin(s[ok]))
    return out


def convert_wavelength(two_theta: np.ndarray, from_wavelength: float, to_wavelength: float) -> np.ndarray:
    """2-theta measured at ``from_wavelength`` -> 2-theta of the same d-spacing at ``to_wavelength``.

    NaN where the d-spacing is not reachable at the new wavelength.
    """
    if from_wavelength <= 0 or to_wavelength <= 0:
        raise ValueError(f"wavelengths must be positive, got {from_wavelength} and {to_wavelength}")
    return inverse_d_to_two_theta(two_theta_to_inverse_d(two_theta, from_wavelength), to_wavelength)


def snip_baseline(intensity: np.ndarray, half_window: int) -> np.ndarray:
    """SNIP background (Ryan et al. 1988) on the log-log-sqrt scale with a window of ``half_window`` points."""
    y = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, None)
    v = np.log(np.log(np.sqrt(y + 1.0) + 1.0) + 1.0)
    n = v.size
    for p in range(1, max(1, int(half_window)) + 1):
        if 2 * p >= n:
            break
        mid = 0.5 * (v[: n - 2 * p] + v[2 * p:])
        v[p: n - p] = np.minimum(v[p: n - p], mid)
    return (np.exp(np.exp(v) - 1.0) - 1.0) ** 2 - 1.0


def remove_baseline(pattern: MeasuredPattern, cfg: PatternConfig) -> np.ndarray:
    """Intensity of ``pattern`` with the configured baseline removed (not clipped)."""
    y = pattern.intensity
    if cfg.baseline == "none":
        return y.copy()
    if cfg.baseline == "min":
        return y - y.min()
    if cfg.baseline == "snip":
        step = float(np.median(np.diff(pattern.two_theta)))
        return y - snip_baseline(y, int(round(cfg.snip_window / max(step, 1e-9))))
    raise ValueError(f"unknown baseline {cfg.baseline!r}: expected 'none', 'min' or 'snip'")


# ----------------------------------------------------------------------------------- onto the grid


def prepare_pattern(pattern: MeasuredPattern, spec: InputSpec, cfg: PatternConfig,
                    wavelength: float | None = None) -> PreparedPattern:
    """Bring a checked measured pattern onto a model's input.

    Args:
        wavelength: measurement wavelength in Angstrom; None: the file's, else the model's
            (for 1/d models without a wavelength of their own a wavelength must be known).

    Raises:
        PatternError: when the pattern covers too little of the model's grid.
    """
    from simulator.representation import MeasuredDataError, measured_on_axis, onto_grid

    src = pattern.source
    if spec.measured_error:
        raise PatternError(src, spec.measured_error)
    wl = wavelength if wavelength is not None else pattern.wavelength
    if wl is None:
        wl = spec.wavelength
    if wl is None:
        raise PatternError(src, "the measurement wavelength is unknown: give it with --wavelength")
    y = remove_baseline(pattern, cfg)
    grid = np.asarray(spec.grid, dtype=np.float64)
    try:  # through the d-spacing onto the model's axis (the representation's own conversion)
        x, y = measured_on_axis(spec.axis, pattern.two_theta, y, float(wl), spec.wavelength,
                                spec.lorentz_polarisation, cfg.lorentz_polarisation)
    except MeasuredDataError as err:
        raise PatternError(src, str(err)) from err
    inside = (x >= grid[0]) & (x <= grid[-1])
    n_inside = int(inside.sum())
    if n_inside < cfg.min_points:
        raise PatternError(src, f"only {n_inside} measured points fall inside the model's range "
                                f"{_axis_range(spec)} (at least {cfg.min_points} needed)")
    mask = (grid >= x.min()) & (grid <= x.max())
    coverage = float(mask.mean())
    if coverage < cfg.min_coverage:
        lo, hi = (pattern.two_theta[0], pattern.two_theta[-1])
        raise PatternError(src, f"the measured range {lo:g}..{hi:g} deg 2-theta covers {coverage:.0%} of the "
                                f"model's range {_axis_range(spec)} (at least {cfg.min_coverage:.0%} needed)")
    on_grid, mask = onto_grid(grid, x, y)
    if not on_grid.any():
        raise PatternError(src, "no signal inside the model's range after baseline removal")
    if not np.isfinite(on_grid).all():
        raise PatternError(src, "overflow while bringing the intensities onto the model's grid (values too large)")
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(spec.preprocess(on_grid, mask), dtype=np.float32)
    if values.shape != grid.shape:
        raise ValueError(f"{src}: preprocessing returned {values.shape} values, expected {grid.shape}")
    if not np.isfinite(values).all():
        raise PatternError(src, "overflow in scaling: preprocessing gave non-finite values (intensities too large)")
    return PreparedPattern(values=values, mask=mask, coverage=coverage, wavelength=float(wl))


def _axis_range(spec: InputSpec) -> str:
    unit = {"two_theta": "deg 2-theta", "inverse_d": "1/A", "r": "A"}.get(spec.axis, spec.axis)
    return f"{spec.grid[0]:g}..{spec.grid[-1]:g} {unit}"


