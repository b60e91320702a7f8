"""The inference config (``conf/inference/default.yaml``): using trained classifiers, the labelled
sets of ``python -m inference.evaluate`` and calibration, checked against structured dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from generator.config import conf_dir
from inference.calibration import CalibrationConfig
from inference.patterns import PatternConfig

CONF_DIR = conf_dir()  # conf/ of a checkout, or the installed crystalstream_conf package
DEFAULT_CONFIG = CONF_DIR / "inference" / "default.yaml"


@dataclass
class EvaluateConfig:
    """Labelled sets for ``python -m inference.evaluate`` (``conf/inference/default.yaml``: ``evaluate``)."""

    manifest: Optional[str] = None
    cif_dir: Optional[str] = None
    heldout: bool = False
    output_dir: str = "outputs/evaluate"
    max_k: int = 10
    thresholds: int = 21
    seed: int = 0
    limit: Optional[int] = None
    symprec: Optional[float] = None
    simulation: Optional[str] = None


@dataclass
class InferenceConfig:
    """Using trained classifiers (``conf/inference/default.yaml``)."""

    checkpoints: list[str] = field(default_factory=list)
    wavelength: Optional[float] = None
    top_k: int = 5
    refusal_threshold: float = 0.45
    crystal_system_threshold: Optional[float] = None
    device: str = "cpu"
    batch_size: int = 32
    pattern: PatternConfig = field(default_factory=PatternConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> InferenceConfig:
    """The inference config from ``path`` (default ``conf/inference/default.yaml``) checked against
    :class:`InferenceConfig`, with ``overrides`` (a nested dict) applied on top."""
    base = OmegaConf.structured(InferenceConfig)
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        merged = OmegaConf.merge(base, OmegaConf.load(path)) if path.exists() else base
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.create(overrides))
        cfg = OmegaConf.to_object(merged)
    except Exception as err:
        raise ValueError(f"{path}: invalid inference config: {err}") from err
    if not 0.0 <= cfg.refusal_threshold <= 1.0:
        raise ValueError(f"refusal_threshold must be in [0, 1], got {cfg.refusal_threshold}")
    if cfg.crystal_system_threshold is not None and not 0.0 <= cfg.crystal_system_threshold <= 1.0:
        raise ValueError(f"crystal_system_threshold must be in [0, 1] or null, got {cfg.crystal_system_threshold}")
    if cfg.top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {cfg.top_k}")
    try:
        cfg.calibration.validate()
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return cfg
