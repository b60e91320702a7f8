"""Experimental imperfections as small composable transforms on a pattern over its 2-theta grid.

Every transform is built from its config section and called as ``transform(pattern, grid, rng)``,
returning a new float64 array (N,); all randomness comes from the numpy ``Generator`` passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import truncnorm

from simulator.config import GPBackgroundConfig, ImpurityConfig, NoiseConfig, VecseiBackgroundConfig
from simulator.measurement import uniform as _uniform


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """One draw of N(mean, sd) truncated to [lo, hi]: rejection while it accepts often (scipy's truncnorm
    costs ~2 ms a draw), scipy's inverse CDF when the interval holds little of the mass."""
    if sd <= 0 or hi <= lo:
        return float(np.clip(mean, lo, hi))
    for _ in range(32):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    return float(truncnorm.rvs((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd, random_state=rng))


@dataclass
class GPDraw:
    """One GP background draw: values (K,) at knots ``start + step * k`` (deg) and the sum ``scale`` of the
    background over the grid. :meth:`evaluate` interpolates, shifts to min 0 and scales to that sum."""

    start: float
    step: float
    values: np.ndarray
    scale: float

    def evaluate(self, grid: np.ndarray) -> np.ndarray:
        knots = self.start + self.step * np.arange(len(self.values))
        values = np.interp(grid, knots, self.values)
        values -= values.min()
        total = values.sum()
        return values / total * self.scale if total > 0 else values


@dataclass
class GPBackground:
    """Gaussian-process background (SI S4.2): an RBF-kernel GP sample over 2-theta (deg), minus its
    minimum, divided by its sum over the grid, times a truncated-normal scale; added to the pattern."""

    config: GPBackgroundConfig

    def draw(self, grid: np.ndarray, rng: np.random.Generator) -> "GPDraw":
        """The random part of :meth:`sample` (same draws from ``rng``): knot values and the scale."""
        c = self.config
        length = _uniform(rng, c.length_scale)
        # A stationary GP with the RBF kernel exp(-x^2 / (2 l^2)) is white noise convolved with a Gaussian of
        # sd l / sqrt(2). Sample it that way on knots l / knots_per_length_scale apart (4 l of padding on each
        # side) and interpolate linearly: O(knots) per draw instead of an eigen-decomposition (40 ms).
        # The amplitude drops out (the sample is shifted to min 0 and scaled to a drawn sum below).
        h = length / c.knots_per_length_scale
        sd_knots = c.knots_per_length_scale / np.sqrt(2.0)
        taps = np.arange(-int(np.ceil(4 * sd_knots)), int(np.ceil(4 * sd_knots)) + 1)
        kernel = np.exp(-0.5 * (taps / sd_knots) ** 2)
        n_knots = max(int(np.ceil((grid[-1] - grid[0]) / h)) + 1, 8)
        noise = rng.standard_normal(n_knots + 2 * taps[-1])
        sample = c.amplitude * np.convolve(noise, kernel, mode="valid")
        scale = _truncated_normal(rng, c.scale_mean, c.scale_sd, *c.scale_range)
        return GPDraw(float(grid[0]), float(h), sample, scale)

    def sample(self, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.draw(grid, rng).evaluate(grid)

    def __call__(self, pattern: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return pattern + self.sample(grid, rng)


@dataclass
class VecseiBackground:
    """Vecsei et al. (2019, appendix) background: smooth step-up, step-down, |polynomial| of order <= 4
    and a bump near the direct beam, each chosen with ``probability``; heights share T = 0.1 / (number chosen)."""

    config: VecseiBackgroundConfig

    def draw(self, rng: np.random.Generator) -> "VecseiDraw":
        """The random part of :meth:`sample` (same draws from ``rng``): which functions, and their parameters."""
        c = self.config
        chosen = rng.random(4) < c.probability
        d = VecseiDraw()
        if not chosen.any():
            return d
        t = c.total_height / chosen.sum()
        if chosen[0]:  # step up near the left edge
            h = _truncated_normal(rng, t / 3, t / 7, 0.0, t)
            a = _uniform(rng, c.step_steepness)
            d.step_up = (h, a, float(rng.uniform(0.0, c.step_width)))
        if chosen[1]:  # step down near the right edge
            h = _truncated_normal(rng, t / 3, t / 7, 0.0, t)
            a = _uniform(rng, c.step_steepness)
            d.step_down = (h, a, float(rng.uniform(1.0 - c.step_width, 1.0)))
        if chosen[2]:
            order = int(rng.integers(0, c.polynomial_max_order + 1))
            d.polynomial = np.where(rng.random(order + 1) < 0.5, 0.0,
                                    3 * t / (2 * (order + 1)) * rng.uniform(-1.0, 1.0, order + 1))
        if chosen[3]:
            h = _truncated_normal(rng, 2 * t / 5, 3 * t / 35, 0.0, 3 * t / 5)
            d.bump = (h, _uniform(rng, c.bump_steepness))
        return d

    def sample(self, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.draw(rng).evaluate(grid)

    def __call__(self, pattern: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return pattern + self.sample(grid, rng)


@dataclass
class VecseiDraw:
    """One Vecsei background draw, None for a function not chosen. On rel = (2-theta - first) / (last - first):
    step_up (h, a, pos): h / (1 + exp(a (rel - pos))); step_down (h, a, pos): h (1 - 1 / (1 + exp(a (rel - pos))));
    polynomial (order + 1,) coefficients, lowest first: |sum c_k rel^k|; bump (h, n): h (n rel)^2 exp(-n rel)."""

    step_up: tuple | None = None
    step_down: tuple | None = None
    polynomial: np.ndarray | None = None
    bump: tuple | None = None

    def evaluate(self, grid: np.ndarray) -> np.ndarray:
        rel = (grid - grid[0]) / (grid[-1] - grid[0])
        out = np.zeros_like(rel)
        if self.step_up is not None:
            h, a, pos = self.step_up
            out += h / (1.0 + np.exp(a * (rel - pos)))
        if self.step_down is not None:
            h, a, pos = self.step_down
            out += h * (1.0 - 1.0 / (1.0 + np.exp(a * (rel - pos))))
        if self.polynomial is not None:
            out += np.abs(np.polynomial.polynomial.polyval(rel, self.polynomial))
        if self.bump is not None:
            h, n = self.bump
            out += h * (n * rel) ** 2 * np.exp(-n * rel)
        return out


@dataclass
class Noise:
    """Additive Gaussian noise, then multiplicative Gaussian noise (mean 1) on the result (the order of the
    main paper's SI S4.2, steps 6 and 7), then additive uniform noise; each level drawn per pattern."""

    config: NoiseConfig

    def __call__(self, pattern: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        n = pattern.shape[0]
        out = pattern + _uniform(rng, c.additive_sd) * rng.standard_normal(n)
        out = out * (1.0 + _uniform(rng, c.multiplicative_sd) * rng.standard_normal(n))
        amp = _uniform(rng, c.uniform_amplitude)
        if amp > 0:
            out = out + amp * rng.random(n)
        return out


@dataclass
class ImpurityMix:
    """Second phase: (1 - a) I_pure + a I_impurity, a drawn per pattern; both patterns scaled to max 1 first."""

    config: ImpurityConfig

    def __call__(self, pattern: np.ndarray, impurity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = _uniform(rng, self.config.weight)
        return (1.0 - a) * _to_unit_max(pattern) + a * _to_unit_max(impurity)


def _to_unit_max(x: np.ndarray) -> np.ndarray:
    top = float(np.max(x)) if x.size else 0.0
    return x / top if top > 0 else x


def preprocess(intensity: np.ndarray, sqrt: bool) -> np.ndarray:
    """Training-time scaling of pattern(s) on the grid: min-max to [0, 1] per pattern, then optional sqrt.

    Works on (N,) or (B, N); returns float32. A flat pattern becomes all zeros.
    """
    x = np.asarray(intensity, np.float64)
    lo = x.min(axis=-1, keepdims=True)
    span = x.max(axis=-1, keepdims=True) - lo
    x = np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)
    if sqrt:
        x = np.sqrt(x)
    return x.astype(np.float32)
