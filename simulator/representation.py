"""One interface for every input representation a model can be trained on.

A representation turns crystals into fixed-length 1D model inputs and a measured powder scan into
the same input. Three kinds, chosen by the ``kind`` key of a ``conf/simulation`` file:

- ``two_theta``: the 2-theta pattern, axis ``two_theta_deg``, :class:`PatternSimulator` (default,
  imperfections, measured: no ``kind`` key);
- ``ideal``: Ozaki's ideal profile, axis ``inverse_d_per_angstrom``, :class:`simulator.ideal.IdealProfile`
  (``ideal.yaml``);
- ``pdf``: Liu's G(r), axis ``r_angstrom``, :class:`simulator.pdf.PairDistribution` (``pdf.yaml``).

Every representation has ``kind``, ``config`` (its typed dataclass), ``grid`` / ``axis`` (values and
unit), ``shape`` = (channels, length), ``patterns(crystals, rng, impurities=None)`` -> (n, length)
float32 (raises when a crystal fails: what the stream calls), ``simulate(crystals, rng)`` -> (patterns,
ok) (a failed crystal gives a zero row and False), ``preprocess(on_grid, mask)`` (the training-time
scaling, also applied to measured inputs), ``prepare_measured(two_theta_deg, intensity, wavelength_A)``
and ``describe()`` (a JSON-able dict stored in checkpoints; :func:`from_description` rebuilds it).

Zone-axis images (``conf/representation/zone_axis.yaml``) are 2D and have their own producer and
entry point (``python -m trainer.zone_axis_run``); :func:`make_representation` refuses them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from generator.config import as_config
from simulator import measurement as meas
from simulator.config import SimulationConfig
from simulator.ideal import IdealProfile, IdealProfileConfig, lorentz_polarisation
from simulator.imperfections import preprocess as minmax_sqrt
from simulator.pattern import PatternSimulator
from simulator.pdf import PairDistribution, PDFConfig

KINDS = ("two_theta", "ideal", "pdf")
AXES = {"two_theta": "two_theta_deg", "ideal": "inverse_d_per_angstrom", "pdf": "r_angstrom"}
# The short axis names of inference.patterns.InputSpec for each axis.
SHORT_AXES = {"two_theta_deg": "two_theta", "inverse_d_per_angstrom": "inverse_d", "r_angstrom": "r"}

MEASURED_PDF_ERROR = ("a measured G(r) needs total-scattering data (a PDF measurement to high Q, e.g. "
                      "synchrotron or Ag/Mo K-alpha with Qmax >= 20 1/A, reduced with PDFgetX3 or similar); a "
                      "laboratory 2-theta scan cannot be turned into G(r), so this model answers simulated G(r) only")


class MeasuredDataError(ValueError):
    """A measured pattern cannot be brought onto this representation at all (not a problem of one file)."""


@dataclass(frozen=True)
class Axis:
    """The input axis: ``name`` says quantity and unit ("two_theta_deg", "inverse_d_per_angstrom",
    "r_angstrom"); ``values`` (length,) float64."""

    name: str
    values: np.ndarray

    @property
    def short(self) -> str:
        return SHORT_AXES[self.name]


@dataclass
class MeasuredInput:
    """A measured scan on a representation's axis: ``values`` (length,) float32 model input, ``mask``
    (length,) bool where the scan covers the axis, ``coverage`` the covered fraction."""

    values: np.ndarray
    mask: np.ndarray
    coverage: float


@runtime_checkable
class Representation(Protocol):
    kind: str
    config: Any
    grid: np.ndarray

    @property
    def axis(self) -> Axis: ...

    @property
    def shape(self) -> tuple[int, int]: ...

    def patterns(self, crystals, rng: np.random.Generator, impurities=None) -> np.ndarray: ...

    def simulate(self, crystals, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    def preprocess(self, intensity: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray: ...

    def prepare_measured(self, two_theta_deg, intensity, wavelength_A: float) -> MeasuredInput: ...

    def describe(self) -> dict: ...


# ------------------------------------------------------------------------------------- measured scans
def measured_on_axis(axis: str, two_theta_deg: np.ndarray, intensity: np.ndarray, wavelength: float,
                     model_wavelength: float | None = None, training_lp: bool = True,
                     correct_lp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A measured scan's positions on a model axis and its intensities, both (M,) float64.

    ``axis``: "two_theta" / "two_theta_deg": 2-theta at ``model_wavelength`` (through the d-spacing; with
    ``correct_lp`` and ``training_lp`` intensities get the ratio of the Lorentz-polarisation factors);
    "inverse_d" / "inverse_d_per_angstrom": 1/d = 2 sin(theta) / lambda, intensities divided by the
    Lorentz-polarisation factor when ``correct_lp`` and the training inputs carry none (``training_lp``
    False). Points beyond the limiting sphere of the model wavelength are dropped.
    """
    x = np.asarray(two_theta_deg, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64).copy()
    name = SHORT_AXES.get(axis, axis)
    if name == "two_theta":
        if model_wavelength is None:
            raise ValueError("a two_theta input axis needs the model's wavelength")
        if abs(wavelength - model_wavelength) <= 1e-6:
            return x, y
        s = 2.0 * np.sin(np.radians(x / 2.0)) / wavelength * model_wavelength / 2.0
        ok = (x > 0) & (s >= 0) & (s <= 1)
        x_model = np.full(x.shape, np.nan)
        x_model[ok] = np.degrees(2.0 * np.arcsin(s[ok]))
        if correct_lp and training_lp:
            y = np.where(ok, y, 0.0)
            y[ok] = y[ok] * lorentz_polarisation(x_model[ok]) / lorentz_polarisation(x[ok])
        return x_model[ok], y[ok]
    if name == "inverse_d":
        keep = x > 0
        inv_d = 2.0 * np.sin(np.radians(x[keep] / 2.0)) / wavelength
        y = y[keep]
        if correct_lp and not training_lp:
            y = y / lorentz_polarisation(x[keep])
        return inv_d, y
    if name == "r":
        raise MeasuredDataError(MEASURED_PDF_ERROR)
    raise ValueError(f"unknown input axis {axis!r}")


def onto_grid(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of (x, y) (x increasing) onto ``grid``: (values (N,) float64 clipped at 0, zero
    outside the covered range; mask (N,) bool of the covered range)."""
    grid = np.asarray(grid, dtype=np.float64)
    mask = (grid >= x.min()) & (grid <= x.max()) if len(x) else np.zeros(grid.shape, bool)
    on_grid = np.zeros(grid.shape, dtype=np.float64)
    on_grid[mask] = np.interp(grid[mask], x, y)
    return np.clip(on_grid, 0.0, None), mask


# ------------------------------------------------------------------------------------ implementations
class _Common:
    """What every representation shares: axis, shape, per-crystal simulation with failures, measured input."""

    kind: str = ""
    grid: np.ndarray
    wavelength: float | None = None  # the model's wavelength (A) for 2-theta axes
    training_lp: bool = True  # whether training inputs carry the Lorentz-polarisation factor
    impurity_enabled: bool = False
    measured_error: str | None = None  # why no measured scan can be prepared (None: they can)

    @property
    def axis(self) -> Axis:
        return Axis(AXES[self.kind], np.asarray(self.grid, dtype=np.float64))

    @property
    def shape(self) -> tuple[int, int]:
        return 1, int(len(self.grid))

    def simulate(self, crystals: Sequence, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(n, length) float32 inputs and (n,) bool ok: the whole batch at once (exactly :meth:`patterns`);
        when it fails, crystal by crystal, a failure leaving a zero row and False."""
        crystals = list(crystals)
        try:
            return np.asarray(self.patterns(crystals, rng), np.float32), np.ones(len(crystals), bool)
        except Exception:  # one pathological crystal: find it
            out = np.zeros((len(crystals), self.shape[1]), np.float32)
            ok = np.zeros(len(crystals), bool)
            for i, c in enumerate(crystals):
                try:
                    out[i] = self.patterns([c], rng)[0]
                    ok[i] = True
                except Exception:
                    pass
            return out, ok

    def prepare_measured(self, two_theta_deg, intensity, wavelength_A: float) -> MeasuredInput:
        """A measured 2-theta scan (deg, counts, measured at ``wavelength_A``) on this axis, scaled as the
        training inputs (no baseline removal or coverage checks: ``inference.patterns.prepare_pattern``
        adds the configured ones)."""
        x, y = measured_on_axis(self.axis.name, two_theta_deg, intensity, float(wavelength_A), self.wavelength,
                                self.training_lp)
        on_grid, mask = onto_grid(self.grid, x, y)
        if not mask.any():
            raise ValueError(f"the measured scan does not reach the model's axis {self.grid[0]:g}..{self.grid[-1]:g} "
                             f"({self.axis.name})")
        return MeasuredInput(self.preprocess(on_grid, mask), mask, float(mask.mean()))

    def describe(self) -> dict:
        """``{"kind", "axis", "shape", "config"}``, JSON-able; ``from_description`` rebuilds the representation."""
        return {"kind": self.kind, "axis": self.axis.name, "shape": list(self.shape),
                "config": dataclasses.asdict(self.config)}


class TwoThetaPattern(_Common, PatternSimulator):
    """The 2-theta powder pattern: :class:`PatternSimulator` itself (same draws, same bytes) plus the interface."""

    kind = "two_theta"
    training_lp = True

    def __init__(self, config=None):
        PatternSimulator.__init__(self, config)
        self.wavelength = float(self.config.wavelength)
        self.impurity_enabled = bool(self.config.impurity.enabled)


class IdealInverseD(_Common):
    """Ozaki's wavelength-free ideal profiles on the 1/d grid (delta peaks, no Lorentz-polarisation, max 1)."""

    kind = "ideal"
    training_lp = False

    def __init__(self, config: IdealProfileConfig | Any = None):
        self.config = as_config(IdealProfileConfig, config)
        if self.config.kind != "ideal":
            raise ValueError(f"ideal profile config with kind {self.config.kind!r}")
        self.profile = IdealProfile(self.config)
        self.grid = self.profile.grid

    def patterns(self, crystals, rng: np.random.Generator, impurities=None) -> np.ndarray:
        """(n, length) float32; deterministic (``rng`` and ``impurities`` unused: an ideal profile has no draws)."""
        crystals = list(crystals)
        out = np.empty((len(crystals), self.shape[1]), np.float32)
        for i, c in enumerate(crystals):
            out[i] = self.preprocess(self.profile(c))
        return out

    def preprocess(self, intensity: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Outside ``mask`` filled with the lowest value inside, then min-max to [0, 1] (no square root: the
        simulated profiles are already min 0, max 1, so they pass unchanged)."""
        return minmax_sqrt(meas.fill_outside(np.asarray(intensity), mask), False)


class PairDistributionFunction(_Common):
    """Liu's G(r) on the r grid, min-max normalised; measured scans are refused (:data:`MEASURED_PDF_ERROR`)."""

    kind = "pdf"
    measured_error = MEASURED_PDF_ERROR

    def __init__(self, config: PDFConfig | Any = None):
        self.config = as_config(PDFConfig, config)
        if self.config.kind != "pdf":
            raise ValueError(f"pdf config with kind {self.config.kind!r}")
        self.pdf = PairDistribution(self.config)
        self.grid = self.pdf.grid

    def patterns(self, crystals, rng: np.random.Generator, impurities=None) -> np.ndarray:
        """(n, length) float32; deterministic (``rng`` and ``impurities`` unused)."""
        crystals = list(crystals)
        out = np.empty((len(crystals), self.shape[1]), np.float32)
        for i, c in enumerate(crystals):
            out[i] = self.pdf(c)
        return out

    def preprocess(self, intensity: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Min-max to [0, 1] when the config normalises (as the simulated G(r)), else float32 as is."""
        x = meas.fill_outside(np.asarray(intensity), mask)
        return minmax_sqrt(x, False) if self.config.normalise else x.astype(np.float32)

    def prepare_measured(self, two_theta_deg, intensity, wavelength_A: float) -> MeasuredInput:
        raise MeasuredDataError(MEASURED_PDF_ERROR)


_CLASSES = {"two_theta": TwoThetaPattern, "ideal": IdealInverseD, "pdf": PairDistributionFunction}


# -------------------------------------------------------------------------------------------- factory
def representation_kind(config: Any) -> str:
    """The ``kind`` of a simulation config (dataclass, DictConfig, dict or None); no key: "two_theta"."""
    if config is None or isinstance(config, SimulationConfig):
        return "two_theta"
    if isinstance(config, (IdealProfileConfig, PDFConfig)):
        return config.kind
    kind = config.get("kind") if hasattr(config, "get") else getattr(config, "kind", None)
    kind = "two_theta" if kind is None else str(kind)
    if kind == "zone_axis":
        raise ValueError("simulation kind 'zone_axis' makes 2D images: train it with python -m trainer.zone_axis_run "
                         "(conf/representation/zone_axis.yaml), not as a 1D representation")
    if kind not in KINDS:
        raise ValueError(f"simulation.kind must be one of {KINDS}, got {kind!r} (conf/simulation/*.yaml)")
    return kind


def representation_config(config: Any) -> tuple[str, Any]:
    """(kind, typed and validated config) of a simulation config; a 2-theta config has no ``kind`` field,
    so its typed form (and the hashes and checkpoints made of it) is what it was before kinds existed."""
    kind = representation_kind(config)
    if kind == "two_theta":
        if config is not None and not isinstance(config, SimulationConfig) and hasattr(config, "get") \
                and config.get("kind") is not None:
            config = {k: v for k, v in dict(config).items() if k != "kind"}
        return kind, SimulationConfig.from_any(config)
    cls = IdealProfileConfig if kind == "ideal" else PDFConfig
    return kind, as_config(cls, config)


def make_representation(config: Any = None):
    """The representation a simulation config asks for (a representation is returned as it is)."""
    if isinstance(config, _Common):
        return config
    if isinstance(config, PatternSimulator):  # a bare simulator: same config, with the interface
        return TwoThetaPattern(config.config)
    kind, typed = representation_config(config)
    return _CLASSES[kind](typed)


def from_description(description: dict | None, simulation: dict | None = None):
    """The representation of a checkpoint: its ``describe()`` dict, else (older checkpoints) the 2-theta
    pattern of its ``simulation`` config."""
    if description:
        config = dict(description.get("config") or {})
        if description.get("kind", "two_theta") != "two_theta":
            config["kind"] = description["kind"]
        return make_representation(config)
    return make_representation(SimulationConfig.from_any(simulation or None))
