"""Structured configuration of the simulator (Hydra / OmegaConf dataclasses).

``conf/simulation/default.yaml`` is the paper's pure pattern; ``conf/simulation/imperfections.yaml``
turns on the experimental imperfections of its SI S4.2. Ranges are ``[low, high]`` lists from which
one value per pattern is drawn uniformly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import OmegaConf

from generator.config import as_config

KALPHA1 = 1.540562  # A, Cu K-alpha1
KALPHA2 = 1.544390  # A, Cu K-alpha2


@dataclass
class GridConfig:
    """2-theta axis in degrees: ``two_theta_min + step * i`` up to ``two_theta_max`` inclusive."""

    two_theta_min: float = 5.0
    two_theta_max: float = 90.0
    step: float = 0.01


@dataclass
class ProfileConfig:
    """Peak shape and width.

    shape: "gaussian" or "pseudo_voigt" (same FWHM for both parts, one mixing ``eta`` per pattern).
    width: "scherrer" (crystallite size, K = ``scherrer_k``), "caglioti" (FWHM^2 = U tan^2 + V tan + W, deg^2)
        or "scherrer_caglioti" (both: FWHM^2 = Scherrer^2 + Caglioti^2, sample and instrument broadening).
    crystallite_size_log: draw the crystallite size log-uniformly (nanocrystals of a few nm as often as
        grains of tens of nm) instead of uniformly.
    kalpha2: add the K-alpha2 line (``kalpha2_wavelength``, ``kalpha2_ratio`` of the K-alpha1 intensity).
    cutoff: each peak is rendered only where it exceeds ``cutoff`` times the tallest peak's height.
    margin_deg: peaks up to this far outside the grid are simulated too (their tails reach into it).
    """

    shape: str = "gaussian"
    width: str = "scherrer"
    crystallite_size_nm: List[float] = field(default_factory=lambda: [20.0, 100.0])
    crystallite_size_log: bool = False
    scherrer_k: float = 0.9
    caglioti_u: List[float] = field(default_factory=lambda: [0.0, 0.01])
    caglioti_v: List[float] = field(default_factory=lambda: [0.0, 0.0])
    caglioti_w: List[float] = field(default_factory=lambda: [0.0, 0.01])
    eta: List[float] = field(default_factory=lambda: [0.0, 1.0])
    min_fwhm_deg: float = 0.02
    kalpha2: bool = False
    kalpha2_wavelength: float = KALPHA2
    kalpha2_ratio: float = 0.5
    cutoff: float = 1e-7
    margin_deg: float = 1.0


@dataclass
class GPBackgroundConfig:
    """Gaussian-process background (RBF kernel on 2-theta in degrees), scaled to sum ``scale`` over the grid.

    ``scale`` is drawn from a normal (mean ``scale_mean``, sd ``scale_sd``) truncated to ``scale_range``.
    The GP is sampled on knots ``length_scale / knots_per_length_scale`` apart and interpolated.
    """

    enabled: bool = False
    length_scale: List[float] = field(default_factory=lambda: [7.0, 40.0])
    amplitude: float = 1.0
    scale_mean: float = 0.0
    scale_sd: float = 75.0
    scale_range: List[float] = field(default_factory=lambda: [0.0, 150.0])
    knots_per_length_scale: float = 10.0


@dataclass
class VecseiBackgroundConfig:
    """Step-up, step-down, polynomial and bump backgrounds, each present with ``probability``.

    ``total_height`` is 0.1 in the paper; each chosen function gets T = total_height / (number chosen).
    """

    enabled: bool = False
    probability: float = 0.5
    total_height: float = 0.1
    step_steepness: List[float] = field(default_factory=lambda: [10.0, 60.0])
    step_width: float = 1.0 / 7.0
    polynomial_max_order: int = 4
    bump_steepness: List[float] = field(default_factory=lambda: [40.0, 70.0])


@dataclass
class NoiseConfig:
    """Additive Gaussian (sd), multiplicative Gaussian (mean 1, sd) and additive uniform noise (amplitude)."""

    enabled: bool = False
    additive_sd: List[float] = field(default_factory=lambda: [0.0, 0.02])
    multiplicative_sd: List[float] = field(default_factory=lambda: [0.0, 0.16])
    uniform_amplitude: List[float] = field(default_factory=lambda: [0.0, 0.0])


@dataclass
class ImpurityConfig:
    """Second phase mixed in as (1 - a) I_pure + a I_impurity."""

    enabled: bool = False
    weight: List[float] = field(default_factory=lambda: [0.0, 0.05])


@dataclass
class ShiftConfig:
    """Peak shifts of a laboratory scan: a zero offset (deg 2-theta) and a sample displacement (mm) on a
    Bragg-Brentano goniometer of ``goniometer_radius_mm`` (shift -2 s cos(theta) / R rad)."""

    enabled: bool = False
    zero_offset_deg: List[float] = field(default_factory=lambda: [-0.1, 0.1])
    displacement_mm: List[float] = field(default_factory=lambda: [-0.15, 0.15])
    goniometer_radius_mm: float = 240.0


@dataclass
class StrainConfig:
    """Lattice strain applied to the cell before the peaks are computed: ``isotropic`` relative change of
    every length, plus a symmetry-preserving anisotropic part with relative sd ``anisotropic_sd``."""

    enabled: bool = False
    isotropic: List[float] = field(default_factory=lambda: [-0.03, 0.01])
    anisotropic_sd: float = 0.01


@dataclass
class TextureConfig:
    """March-Dollase preferred orientation along a random low-index direction, on ``probability`` of the
    patterns, with the March parameter r drawn from ``march_r`` (1: none, < 1 platelets, > 1 needles)."""

    enabled: bool = False
    probability: float = 0.5
    march_r: List[float] = field(default_factory=lambda: [0.6, 1.4])


@dataclass
class HumpConfig:
    """Amorphous hump (glass, holder, capillary): a Gaussian of ``height`` (fraction of the strongest peak)
    at ``center`` deg with FWHM ``fwhm`` deg, on ``probability`` of the patterns."""

    enabled: bool = False
    probability: float = 0.3
    center: List[float] = field(default_factory=lambda: [15.0, 35.0])
    fwhm: List[float] = field(default_factory=lambda: [5.0, 20.0])
    height: List[float] = field(default_factory=lambda: [0.0, 0.3])


@dataclass
class CountingConfig:
    """Poisson counting noise: the pattern (peaks + background) is scaled to ``max_counts`` counts at its
    maximum (drawn log-uniformly) and each point drawn from a Poisson distribution."""

    enabled: bool = False
    max_counts: List[float] = field(default_factory=lambda: [300.0, 100000.0])


@dataclass
class WindowConfig:
    """Scans that cover only part of the grid: with ``probability`` the pattern is kept only between a start
    drawn from ``start`` and an end drawn from ``end`` (deg) and filled outside as a measured pattern is."""

    enabled: bool = False
    probability: float = 0.5
    start: List[float] = field(default_factory=lambda: [5.0, 30.0])
    end: List[float] = field(default_factory=lambda: [60.0, 90.0])


@dataclass
class SimulationConfig:
    """Everything that turns a crystal into a model input.

    wavelength: A (Cu K-alpha1 by default). min_peak_intensity: peaks below this fraction of the
    strongest are dropped. debye_waller_b: one isotropic B (A^2) for every atom, or None.
    sqrt: take the square root of the [0, 1]-scaled pattern (the ResNets' input).
    symmetry: enumerate one reflection per Laue orbit (same result, faster).
    clean_probability: the chance that a pattern skips the per-pattern degradations (impurity phase,
    backgrounds, hump, counting and Gaussian noise, scan window); its profile, shift, strain and texture
    are drawn as for every other. 0 (the default) draws nothing extra, so streams stay as they were.
    """

    wavelength: float = 1.5406
    grid: GridConfig = field(default_factory=GridConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    min_peak_intensity: float = 1e-5
    debye_waller_b: Optional[float] = None
    gp_background: GPBackgroundConfig = field(default_factory=GPBackgroundConfig)
    vecsei_background: VecseiBackgroundConfig = field(default_factory=VecseiBackgroundConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    impurity: ImpurityConfig = field(default_factory=ImpurityConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    strain: StrainConfig = field(default_factory=StrainConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    hump: HumpConfig = field(default_factory=HumpConfig)
    counting: CountingConfig = field(default_factory=CountingConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    sqrt: bool = True
    symmetry: bool = True
    clean_probability: float = 0.0

    @classmethod
    def from_any(cls, config=None) -> "SimulationConfig":
        """A validated config from None (defaults), a dataclass, a plain dict or a DictConfig."""
        cfg = as_config(cls, config)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path) -> "SimulationConfig":
        """Load and validate a YAML file (errors name the file)."""
        try:
            raw = OmegaConf.load(path)
            return cls.from_any(raw)
        except Exception as err:  # OmegaConf and validation errors alike
            raise ValueError(f"{path}: invalid simulation config: {err}") from err

    def validate(self) -> None:
        g = self.grid
        if not (0.0 <= g.two_theta_min < g.two_theta_max < 180.0) or g.step <= 0:
            raise ValueError(f"grid: need 0 <= two_theta_min < two_theta_max < 180 and step > 0, got {g}")
        if self.wavelength <= 0:
            raise ValueError(f"wavelength must be positive, got {self.wavelength}")
        p = self.profile
        if p.shape not in ("gaussian", "pseudo_voigt"):
            raise ValueError(f"profile.shape must be 'gaussian' or 'pseudo_voigt', got {p.shape!r}")
        if p.width not in ("scherrer", "caglioti", "scherrer_caglioti"):
            raise ValueError(f"profile.width must be 'scherrer', 'caglioti' or 'scherrer_caglioti', got {p.width!r}")
        ranges = {"profile.crystallite_size_nm": p.crystallite_size_nm, "profile.caglioti_u": p.caglioti_u,
                  "profile.caglioti_v": p.caglioti_v, "profile.caglioti_w": p.caglioti_w, "profile.eta": p.eta,
                  "gp_background.length_scale": self.gp_background.length_scale,
                  "gp_background.scale_range": self.gp_background.scale_range,
                  "vecsei_background.step_steepness": self.vecsei_background.step_steepness,
                  "vecsei_background.bump_steepness": self.vecsei_background.bump_steepness,
                  "noise.additive_sd": self.noise.additive_sd, "noise.multiplicative_sd": self.noise.multiplicative_sd,
                  "noise.uniform_amplitude": self.noise.uniform_amplitude, "impurity.weight": self.impurity.weight,
                  "shift.zero_offset_deg": self.shift.zero_offset_deg, "shift.displacement_mm": self.shift.displacement_mm,
                  "strain.isotropic": self.strain.isotropic, "texture.march_r": self.texture.march_r,
                  "hump.center": self.hump.center, "hump.fwhm": self.hump.fwhm, "hump.height": self.hump.height,
                  "counting.max_counts": self.counting.max_counts, "window.start": self.window.start,
                  "window.end": self.window.end}
        for name, r in ranges.items():
            if len(r) != 2 or r[0] > r[1]:
                raise ValueError(f"{name} must be [low, high] with low <= high, got {list(r)}")
        if p.crystallite_size_nm[0] <= 0:
            raise ValueError(f"profile.crystallite_size_nm must be positive, got {list(p.crystallite_size_nm)}")
        if not 0.0 <= p.eta[0] <= p.eta[1] <= 1.0:
            raise ValueError(f"profile.eta must lie in [0, 1], got {list(p.eta)}")
        for name, low in (("texture.march_r", self.texture.march_r[0]), ("hump.fwhm", self.hump.fwhm[0]),
                          ("counting.max_counts", self.counting.max_counts[0])):
            if low <= 0:
                raise ValueError(f"{name} must be positive, got low end {low}")
        for name, prob in (("texture.probability", self.texture.probability), ("hump.probability", self.hump.probability),
                           ("window.probability", self.window.probability),
                           ("clean_probability", self.clean_probability)):
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {prob}")
        if self.window.enabled and self.window.end[0] <= self.window.start[1]:
            raise ValueError(f"window.end {list(self.window.end)} must lie above window.start {list(self.window.start)}")
        if self.shift.goniometer_radius_mm <= 0 or self.strain.anisotropic_sd < 0:
            raise ValueError("shift.goniometer_radius_mm must be positive and strain.anisotropic_sd >= 0")
        if not 0.0 <= self.impurity.weight[0] <= self.impurity.weight[1] <= 1.0:
            raise ValueError(f"impurity.weight must lie in [0, 1], got {list(self.impurity.weight)}")

    @property
    def n_points(self) -> int:
        g = self.grid
        return int(round((g.two_theta_max - g.two_theta_min) / g.step)) + 1
