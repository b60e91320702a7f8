"""Temperature scaling and a calibrated refusal threshold for a trained classifier.

A network trained with cross entropy is usually over-confident; dividing its logits by one
temperature T, fitted by minimising the negative log-likelihood on held-back patterns, fixes most
of that without changing any ranking (Guo et al. 2017). On ``n`` patterns, either fresh synthetic
ones (``source: synthetic``: a new :class:`generator.CrystalSampler` and the model's simulation) or
real crystals of the held-out structure types outside the evaluation draw (``source: heldout``,
:mod:`inference.calibration_sets`), this module fits T,
reports the expected calibration error (equal-width bins over the top probability) before and
after, and picks the refusal threshold: the smallest top probability at which the patterns kept
reach a target accuracy (Vecsei et al. 2019 refuse below 0.45).

The result is stored as ``calibration.json`` beside the checkpoint's ``meta.json``::

    {"temperature": T, "top_label": {"a": .., "b": .., "c": ..}, "ece_before": e0, "ece_after": e1,
     "refusal_threshold": t, "n": n, "simulation": "checkpoint" | NAME, "source": "synthetic" | "heldout", ...}

The temperature is fitted on the patterns whose space group the model classifies; the top answer's map
(:mod:`inference.top_label`, optional), the calibration errors and the refusal threshold count the
others as wrong answers, as ``inference.evaluate`` does: a new sample may be one of them.

and applied by :mod:`inference.predict` / :mod:`inference.evaluate` (``conf/inference/default.yaml``,
``calibration`` node). ``python -m inference.calibrate`` runs it on a checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inference.ensemble import choose_refusal_threshold
from inference.simulations import simulation_config

log = logging.getLogger(__name__)

CALIBRATION = "calibration.json"


@dataclass
class CalibrationConfig:
    """Fitting and using the temperature and refusal threshold (``calibration`` node of
    ``conf/inference/default.yaml``).

    Attributes:
        apply: divide logits by the stored temperature and use the stored refusal threshold when a
            checkpoint has a ``calibration.json``.
        n: patterns simulated for the fit.
        seed: root seed of the crystal sampler (or the held-out draw) and the simulator's random draws.
        source: "heldout" (real crystals of the held-out structure types of the checkpoint's split: a
            new sample is more like them than like the synthetic crystals the model trained on, and a
            temperature fitted on synthetic ones leaves it over-confident there) or "synthetic" (fresh
            synthetic crystals of the generation statistics).
        heldout_exclude_limit, heldout_exclude_seed: with ``source: heldout``, the crystals that
            ``inference.evaluate --heldout --limit L --seed S`` scores are kept out of the fit (0 or
            None: none kept out).
        simulation: a ``conf/simulation`` name for the patterns; None: the checkpoint's own simulation.
        statistics: "default" (the default database and split) or "run" (the checkpoint's run config).
        generator: ``conf/generator`` name of the sampler settings.
        target_accuracy: accuracy the kept (not refused) patterns must reach, in (0, 1].
        min_kept: fewest patterns that must be kept at a threshold for it to count.
        threshold_step: spacing of the candidate thresholds from 0 to 1.
        default_threshold: threshold stored when the target is never reached; None: the config's
            ``refusal_threshold``.
        bins: equal-width bins of the expected calibration error.
        temperature_bounds: [lowest, highest] temperature searched.
        top_label: also fit the top answer's own map (:mod:`inference.top_label`) on the temperature-scaled
            probabilities; its loss or gain of probability stays inside its crystal system.
        crystal_system_target_accuracy: accuracy the crystal systems kept at the crystal-system threshold
            (on the summed probabilities) must reach, in (0, 1].
        batch_size: patterns simulated and passed through the model at a time.
    """

    apply: bool = True
    n: int = 2000
    seed: int = 0
    source: str = "heldout"
    heldout_exclude_limit: Optional[int] = 2000
    heldout_exclude_seed: int = 0
    simulation: Optional[str] = None
    statistics: str = "default"
    generator: str = "default"
    target_accuracy: float = 0.8
    min_kept: int = 20
    threshold_step: float = 0.01
    default_threshold: Optional[float] = None
    bins: int = 15
    temperature_bounds: list[float] = field(default_factory=lambda: [0.05, 20.0])
    top_label: bool = True
    crystal_system_target_accuracy: float = 0.8
    batch_size: int = 128

    def validate(self) -> None:
        if self.n < 1:
            raise ValueError(f"calibration.n must be at least 1, got {self.n}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(f"calibration.target_accuracy must be in (0, 1], got {self.target_accuracy}")
        if not 0.0 < self.crystal_system_target_accuracy <= 1.0:
            raise ValueError(f"calibration.crystal_system_target_accuracy must be in (0, 1], "
                             f"got {self.crystal_system_target_accuracy}")
        if not 0.0 < self.threshold_step <= 1.0:
            raise ValueError(f"calibration.threshold_step must be in (0, 1], got {self.threshold_step}")
        if self.default_threshold is not None and not 0.0 <= self.default_threshold <= 1.0:
            raise ValueError(f"calibration.default_threshold must be in [0, 1], got {self.default_threshold}")
        lo, hi = (list(self.temperature_bounds) + [None, None])[:2]
        if lo is None or hi is None or not 0.0 < lo < hi:
            raise ValueError(f"calibration.temperature_bounds must be [low, high] with 0 < low < high, "
                             f"got {self.temperature_bounds}")
        if self.statistics not in ("default", "run"):
            raise ValueError(f"calibration.statistics must be 'default' or 'run', got {self.statistics!r}")
        if self.source not in ("synthetic", "heldout"):
            raise ValueError(f"calibration.source must be 'synthetic' or 'heldout', got {self.source!r}")
        if self.heldout_exclude_limit is not None and self.heldout_exclude_limit < 0:
            raise ValueError(f"calibration.heldout_exclude_limit must be >= 0 or null, "
                             f"got {self.heldout_exclude_limit}")
        if self.bins < 1:
            raise ValueError(f"calibration.bins must be at least 1, got {self.bins}")


# ------------------------------------------------------------------------------------ the maths


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL (nats) of the true class under softmax(logits / temperature); logits (B, C), labels (B,)."""
    y = np.asarray(labels, np.int64)
    lp = log_softmax(np.asarray(logits, np.float64) / float(temperature))
    return float(-lp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T), searched over log T in ``bounds``."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (B, C) logits and (B,) labels with B > 0, got {z.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError("labels must be class indices in [0, C)")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(lambda t: negative_log_likelihood(z, y, math.exp(t)), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: sum over equal-width bins of the top probability of |accuracy - mean confidence| x fraction
    of patterns in the bin. probabilities (B, C), labels (B,) (-1: a class the model cannot give)."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels)
    if len(y) == 0:
        return float("nan")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to the first bin
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = index == b
        if sel.any():
            total += sel.sum() / len(y) * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


@dataclass
class Calibration:
    """What ``calibration.json`` holds.

    Attributes:
        temperature: T; calibrated probabilities are softmax(logits / T), then ``top_label``.
        top_label: {"a", "b", "c"} of the top answer's map (:mod:`inference.top_label`); {}: none.
        ece_before, ece_after: expected calibration error of the raw softmax and of the calibrated
            probabilities (fractions; patterns outside the classes count as wrong).
        ece_temperature: the same with the temperature alone.
        refusal_threshold: refuse when the (calibrated) top probability is below this.
        crystal_system_threshold: the same for the most probable crystal system's summed probability
            (chosen for ``crystal_system_target_accuracy``); None when the target was never reached.
        crystal_system_kept: {"coverage", "accuracy"} of the crystal systems at that threshold.
        n: patterns used (those whose space group the model classifies).
        simulation: "checkpoint" (the model's own simulation config) or the conf/simulation name.
        source: "synthetic" (fresh synthetic crystals) or "heldout" (held-out real crystals).
        nll_before, nll_after: mean negative log-likelihood (nats) at T = 1 and at T.
        accuracy: top-1 accuracy on the patterns in the classes.
        target_accuracy: the accuracy the refusal threshold was chosen for.
        target_reached: False when no threshold reached it and the default was stored.
        coverage_at_threshold, accuracy_at_threshold: fraction of all patterns kept and their accuracy
            at the threshold.
        coverage_accuracy: {"thresholds", "coverage", "accuracy"} of the calibrated probabilities.
        synthetic: {"n", "top1", "top5", "crystal_system_accuracy"} on these patterns (fractions; the
            crystal system only when the class list was given), whichever their source.
        n_out_of_scope: simulated patterns whose space group is outside the model's classes (left out of
            the temperature fit and ``n``, counted as wrong elsewhere).
        statistics, seed, bins, step, created: provenance.
    """

    temperature: float
    ece_before: float
    ece_after: float
    refusal_threshold: float
    n: int
    simulation: str = "checkpoint"
    source: str = "synthetic"
    top_label: dict = field(default_factory=dict)
    ece_temperature: float = float("nan")
    crystal_system_threshold: Optional[float] = None
    crystal_system_target_accuracy: float = 0.8
    crystal_system_kept: dict = field(default_factory=dict)
    nll_before: float = float("nan")
    nll_after: float = float("nan")
    accuracy: float = float("nan")
    target_accuracy: float = 0.8
    target_reached: bool = False
    coverage_at_threshold: float = float("nan")
    accuracy_at_threshold: Optional[float] = None
    coverage_accuracy: dict = field(default_factory=dict)
    synthetic: dict = field(default_factory=dict)
    n_out_of_scope: int = 0
    excluded: dict = field(default_factory=dict)
    statistics: str = ""
    seed: int = 0
    bins: int = 15
    step: int = 0
    created: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        from trainer.checkpoint import atomic_write_text

        path = Path(directory) / CALIBRATION
        self.created = self.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write_text(path, json.dumps(_finite(self.to_dict()), indent=2))
        return path


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def calibrate_logits(logits: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig | None = None,
                     default_threshold: float = 0.45, simulation: str = "checkpoint",
                     space_groups: Optional[list[int]] = None,
                     true_space_groups: Optional[np.ndarray] = None) -> Calibration:
    """Fit T on the (B, C) logits whose (B,) labels are classes (-1: outside the classes), then, with
    ``cfg.top_label`` and the class list ``space_groups``, the top answer's map on all B patterns; measure
    the ECE before and after and choose the refusal threshold on the calibrated probabilities (patterns
    outside the classes count as wrong). ``space_groups`` also adds the crystal-system accuracy to the
    synthetic figures and, with the (B,) ``true_space_groups`` of all patterns (else only those in the
    classes count), the crystal-system refusal threshold."""
    from inference.ensemble import coverage_accuracy, softmax
    from inference.top_label import apply_top_label_map, fit_top_label_map, system_index

    cfg = cfg or CalibrationConfig()
    cfg.validate()
    z_all = np.asarray(logits, np.float64)
    y_all = np.asarray(labels, np.int64)
    inside = y_all >= 0
    z, y = z_all[inside], y_all[inside]
    if len(y) == 0:
        raise ValueError("no calibration pattern has a space group the model classifies")
    t = fit_temperature(z, y, tuple(cfg.temperature_bounds))
    scaled = softmax(z_all / t)
    top_label, after = {}, scaled
    if cfg.top_label and space_groups is not None:
        right = scaled.argmax(axis=1) == y_all
        top_label = fit_top_label_map(scaled.max(axis=1), right)
        after = apply_top_label_map(scaled, top_label, system_index(space_groups))
    default = cfg.default_threshold if cfg.default_threshold is not None else default_threshold
    threshold, reached = choose_refusal_threshold(after, y_all, cfg.target_accuracy, default, cfg.threshold_step,
                                                  cfg.min_kept)
    curve = coverage_accuracy(after, y_all, np.round(np.linspace(0.0, 1.0, 21), 10))
    kept = after.max(axis=1) >= threshold
    order = np.argsort(-z, axis=1, kind="stable")
    rank = (order == y[:, None]).argmax(axis=1)
    synthetic = {"n": int(len(y)), "top1": float((rank < 1).mean()), "top5": float((rank < 5).mean()),
                 "mean_confidence": float(after.max(axis=1).mean()),
                 "ece": expected_calibration_error(after, y_all, cfg.bins)}
    system_threshold, system_kept = None, {}
    if space_groups is not None:
        from inference.top_label import crystal_system_threshold

        systems = system_index(space_groups)
        synthetic["crystal_system_accuracy"] = float(np.mean(systems[z.argmax(axis=1)] == systems[y]))
        truth = (np.asarray(true_space_groups, np.int64) if true_space_groups is not None
                 else np.where(inside, np.asarray(space_groups)[np.maximum(y_all, 0)], 0))
        system_threshold, system_kept = crystal_system_threshold(after, space_groups, truth, cfg)
    return Calibration(
        temperature=t, top_label=top_label, crystal_system_threshold=system_threshold,
        crystal_system_target_accuracy=float(cfg.crystal_system_target_accuracy), crystal_system_kept=system_kept,
        ece_before=expected_calibration_error(softmax(z_all), y_all, cfg.bins),
        ece_temperature=expected_calibration_error(scaled, y_all, cfg.bins),
        ece_after=expected_calibration_error(after, y_all, cfg.bins), refusal_threshold=threshold, n=int(len(y)),
        simulation=simulation, nll_before=negative_log_likelihood(z, y), nll_after=negative_log_likelihood(z, y, t),
        accuracy=float((z.argmax(axis=1) == y).mean()), target_accuracy=float(cfg.target_accuracy),
        target_reached=reached, coverage_at_threshold=float(kept.mean()),
        accuracy_at_threshold=float((after[kept].argmax(axis=1) == y_all[kept]).mean()) if kept.any() else None,
        coverage_accuracy=curve.to_dict(), synthetic=synthetic, n_out_of_scope=int((~inside).sum()),
        seed=int(cfg.seed), bins=int(cfg.bins),
    )


def load_calibration(checkpoint: str | Path) -> Optional[dict]:
    """``calibration.json`` beside the checkpoint's ``meta.json`` (checked), or None when there is none."""
    from inference.top_label import check_top_label_map
    from trainer.checkpoint import resolve

    path = resolve(checkpoint) / CALIBRATION
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        t = float(data["temperature"])
        threshold = data.get("refusal_threshold")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a calibration file ({err})") from err
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{path}: temperature must be a positive number, got {data['temperature']!r}")
    for key, value in (("refusal_threshold", threshold), ("crystal_system_threshold", data.get("crystal_system_threshold"))):
        if value is not None and not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"{path}: {key} must be in [0, 1], got {value!r}")
    data["top_label"] = check_top_label_map(data.get("top_label"), str(path)) or {}
    data["path"] = str(path)
    return data


def calibrate_checkpoint(checkpoint: str | Path, cfg: CalibrationConfig | None = None,
                         default_threshold: float = 0.45, statistics=None, write: bool = True,
                         device: str = "cpu") -> tuple[Calibration, Optional[Path]]:
    """Simulate ``cfg.n`` patterns (``cfg.source``), fit the checkpoint's temperature and refusal
    threshold and (with ``write``) store ``calibration.json`` beside its ``meta.json``. ``statistics``
    overrides ``cfg.statistics`` for synthetic crystals (tests pass small hand-made statistics)."""
    from inference import calibration_sets
    from trainer.checkpoint import load_for_inference, resolve

    cfg = cfg or CalibrationConfig()
    cfg.validate()
    directory = resolve(checkpoint)
    model, meta = load_for_inference(directory, device=device)
    simulation, label = simulation_config(cfg.simulation, meta)
    if simulation.shape[-1] != meta.input_length:
        raise ValueError(f"simulation {label!r} gives {simulation.shape[-1]} points, the model at {directory} "
                         f"expects {meta.input_length}")
    classes = [int(s) for s in meta.space_groups]
    excluded = {}
    if cfg.source == "heldout":
        sets = calibration_sets.heldout_logits(model, classes, meta.config, simulation, cfg.n, cfg.seed,
                                               cfg.heldout_exclude_limit, cfg.heldout_exclude_seed, cfg.batch_size)
        stats_label = "run split, held-out side"
        excluded = {"limit": cfg.heldout_exclude_limit, "seed": cfg.heldout_exclude_seed}
    else:
        stats_label = "given"
        if statistics is None:
            statistics = calibration_sets.load_statistics(cfg.statistics, meta.config)
            stats_label = cfg.statistics
        sets = calibration_sets.synthetic_logits(model, classes, statistics, simulation, cfg.n, cfg.seed,
                                                 calibration_sets.generator_config(cfg.generator), cfg.batch_size)
    result = calibrate_logits(sets.logits, sets.labels, cfg, default_threshold, label, classes, sets.space_groups)
    result.statistics, result.step, result.source, result.excluded = stats_label, int(meta.step), cfg.source, excluded
    path = result.save(directory) if write else None
    return result, path
