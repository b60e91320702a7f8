"""The ensemble predictor: one or more classifiers answering for measured or simulated patterns,
and what it answers per pattern (top-k candidates, agreement, volume, refusal).

Each pattern is brought onto every member's input exactly as the training patterns were made (see
:mod:`inference.patterns`); the members' class probabilities, their logits divided by each member's
calibrated temperature, are averaged (:mod:`inference.ensemble`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from inference.config import InferenceConfig, load_config
from inference.ensemble import EnsemblePrediction, align_classes, combine, refused, softmax, top_k
from inference.members import Member, load_member
from inference.patterns import PreparedPattern, prepare_pattern
from inference.readers import MeasuredPattern, PatternError, read_pattern
from inference.space_groups import crystal_system, crystal_system_probabilities, space_group_symbol
from inference.top_label import apply_top_label_map, system_index


@dataclass
class Candidate:
    """One candidate space group of a prediction."""

    space_group: int
    symbol: str
    crystal_system: str
    probability: float


@dataclass
class CrystalSystemProbability:
    """One crystal system of a prediction: the summed probability of the model's space groups in it."""

    crystal_system: str
    probability: float


@dataclass
class PatternPrediction:
    """What the ensemble says about one pattern (or why it could not say anything).

    Attributes:
        source: the file (or a name for in-memory patterns).
        candidates: top-k space groups, most probable first (empty when ``error`` is set).
        crystal_systems: every crystal system among the model's classes with its summed probability,
            most probable first (empty when ``error`` is set).
        top_probability: ensemble probability of the first candidate.
        refused: True when ``top_probability`` is below the refusal threshold.
        crystal_system_refused: True when the most probable crystal system's summed probability is below
            the crystal-system threshold, False when it reaches it, None when there is no such threshold.
        agreement: members whose own top-1 is the ensemble's top-1.
        n_members: members in the ensemble.
        volume: predicted cell volume, A^3 (geometric mean over members with a volume head), or None.
        volume_spread: standard deviation of the members' natural-log volumes, or None.
        coverage: fraction of the model grid the measurement covers (smallest over members).
        wavelength: measurement wavelength used, A.
        wavelength_source: "option", "file" or "model" (assumed equal to the model's).
        error: the reason no prediction was made, else None.
        probabilities: (C,) ensemble probabilities over ``Predictor.space_groups`` (not in JSON).
        model_input: the pattern as the first member reads it (not in JSON; measured patterns only).
    """

    source: str
    candidates: list[Candidate] = field(default_factory=list)
    crystal_systems: list[CrystalSystemProbability] = field(default_factory=list)
    top_probability: Optional[float] = None
    refused: bool = False
    crystal_system_refused: Optional[bool] = None
    agreement: int = 0
    n_members: int = 0
    volume: Optional[float] = None
    volume_spread: Optional[float] = None
    coverage: Optional[float] = None
    wavelength: Optional[float] = None
    wavelength_source: Optional[str] = None
    error: Optional[str] = None
    probabilities: Optional[np.ndarray] = field(default=None, repr=False)
    model_input: Optional[PreparedPattern] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        d = asdict(replace(self, probabilities=None, model_input=None))  # the arrays stay out of JSON
        del d["probabilities"], d["model_input"]
        return d


class Predictor:
    """An ensemble of one or more classifiers answering for measured or simulated patterns."""

    def __init__(self, members: Sequence[Member], cfg: InferenceConfig | None = None,
                 refusal_threshold: Optional[float] = None):
        """``refusal_threshold``: the user's threshold; None: the members' calibrated one, else the config's."""
        if not members:
            raise ValueError("no checkpoints given")
        if refusal_threshold is not None and not 0.0 <= refusal_threshold <= 1.0:
            raise ValueError(f"refusal threshold must be in [0, 1], got {refusal_threshold}")
        self.members = list(members)
        self.cfg = cfg if cfg is not None else load_config()
        self.threshold_override = refusal_threshold
        order: list[int] = []
        for m in self.members:
            order += [s for s in m.space_groups if s not in order]
        same = all(m.space_groups == self.members[0].space_groups for m in self.members)
        self.space_groups: list[int] = list(self.members[0].space_groups) if same else sorted(order)
        self.spec_keys = {id(m): json.dumps(m.simulation, sort_keys=True, default=str) if m.simulation
                           else f"spec-{id(m.spec)}" for m in self.members}

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], cfg: InferenceConfig | None = None,
                         refusal_threshold: Optional[float] = None) -> "Predictor":
        cfg = cfg if cfg is not None else load_config()
        return cls([load_member(p, cfg.device, cfg.calibration.apply) for p in paths], cfg, refusal_threshold)

    def _calibrated(self, key: str) -> Optional[float]:
        """``key`` of the members' calibration files (their mean for an ensemble), or None unless every
        member has one."""
        values = [m.calibration.get(key) if m.calibration else None for m in self.members]
        if not values or any(v is None for v in values):
            return None
        return float(np.mean([float(v) for v in values]))

    @property
    def calibrated_threshold(self) -> Optional[float]:
        """The refusal threshold of the members' calibration files (their mean for an ensemble), or
        None unless every member has one."""
        return self._calibrated("refusal_threshold")

    @property
    def crystal_system_threshold(self) -> Optional[float]:
        """The crystal-system refusal threshold of the members' calibration files (their mean), else the
        config's ``crystal_system_threshold`` (None: the crystal-system answer is not judged)."""
        calibrated = self._calibrated("crystal_system_threshold")
        return calibrated if calibrated is not None else self.cfg.crystal_system_threshold

    @property
    def threshold_source(self) -> str:
        """Where the refusal threshold comes from: "option", "calibration" or "config"."""
        if self.threshold_override is not None:
            return "option"
        if self.calibrated_threshold is not None:
            return "calibration"
        return "config"

    @property
    def refusal_threshold(self) -> float:
        """The user's threshold, else the calibrated one, else ``cfg.refusal_threshold``."""
        if self.threshold_override is not None:
            return float(self.threshold_override)
        calibrated = self.calibrated_threshold
        return calibrated if calibrated is not None else float(self.cfg.refusal_threshold)

    @property
    def temperatures(self) -> list[float]:
        return [float(m.temperature) for m in self.members]

    @property
    def top_label_maps(self) -> list[Optional[dict]]:
        """Each member's top-answer map {"a", "b", "c"} (:mod:`inference.top_label`), None where it has none."""
        return [dict(m.top_label) if m.top_label else None for m in self.members]

    @property
    def device(self) -> torch.device:
        return next(self.members[0].model.parameters()).device

    # -- raw model outputs ------------------------------------------------------------------
    @torch.no_grad()
    def member_logits(self, member: Member, inputs: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Raw logits (B, C_member) over ``member.space_groups`` (not divided by the temperature)
        and log volumes (B,) or None of one member."""
        device = next(member.model.parameters()).device
        logits, logv = [], []
        bs = max(1, int(self.cfg.batch_size))
        for i in range(0, len(inputs), bs):
            x = torch.as_tensor(np.asarray(inputs[i:i + bs], dtype=np.float32), device=device)
            out = member.model(x)
            logits.append(out["logits"].float().cpu().numpy().astype(np.float64))
            if "log_volume" in out and member.volume_norm is not None:
                z = out["log_volume"].float().cpu().numpy().reshape(-1)
                logv.append(member.volume_norm["mean"] + member.volume_norm["std"] * z)
        z = np.concatenate(logits) if logits else np.zeros((0, len(member.space_groups)))
        return z, (np.concatenate(logv) if logv else None)

    def member_outputs(self, member: Member, inputs: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities (B, C) over ``self.space_groups`` (softmax of the logits divided by the
        member's temperature, then its top-answer map if it has one: :mod:`inference.top_label`) and
        log volumes (B,) or None of one member."""
        z, logv = self.member_logits(member, inputs)
        p = softmax(z / member.temperature) if len(z) else z
        if member.top_label and len(p):
            p = apply_top_label_map(p, member.top_label, system_index(member.space_groups))
        if member.space_groups != self.space_groups:
            p = align_classes(p, member.space_groups, self.space_groups)
        return p, logv

    def ensemble(self, inputs: Sequence[np.ndarray]) -> EnsemblePrediction:
        """Combine the members on prepared inputs: ``inputs[m]`` is (B, N_m) for member m."""
        outs = [self.member_outputs(m, x) for m, x in zip(self.members, inputs)]
        return combine([o[0] for o in outs], [o[1] for o in outs])

    # -- patterns ---------------------------------------------------------------------------
    def predict_patterns(self, patterns: Sequence[MeasuredPattern | PatternError],
                         wavelength: float | None = None) -> list[PatternPrediction]:
        """Predictions for measured patterns; a :class:`PatternError` in the list (a file that could
        not be read) or a pattern that cannot be prepared gets an error entry instead."""
        wavelength = wavelength if wavelength is not None else self.cfg.wavelength
        results: list[PatternPrediction] = []
        prepared_rows: list[list[np.ndarray]] = []
        good: list[int] = []
        for pattern in patterns:
            if isinstance(pattern, PatternError):
                results.append(PatternPrediction(source=pattern.source, error=pattern.problem,
                                                 n_members=len(self.members)))
                continue
            source = str(pattern.source)
            if wavelength is not None:
                wl_source = "option"
            elif pattern.wavelength is not None:
                wl_source = "file"
            else:
                wl_source = "model"
            try:
                per_member, cov, wl_used = [], 1.0, None
                cache: dict[str, Any] = {}  # members trained on the same simulation share one preparation
                for m in self.members:
                    key = self.spec_keys[id(m)]
                    if key not in cache:
                        cache[key] = prepare_pattern(pattern, m.spec, self.cfg.pattern, wavelength=wavelength)
                    prep = cache[key]
                    per_member.append(prep.values)
                    cov = min(cov, prep.coverage)
                    wl_used = prep.wavelength
            except (ValueError, ArithmeticError) as err:  # PatternError, or anything else this one file caused
                problem = err.problem if isinstance(err, PatternError) else f"cannot be prepared ({err})"
                results.append(PatternPrediction(source=source, error=problem, n_members=len(self.members),
                                                 wavelength_source=wl_source))
                continue
            results.append(PatternPrediction(source=source, coverage=cov, wavelength=wl_used,
                                             wavelength_source=wl_source, n_members=len(self.members),
                                             model_input=cache[self.spec_keys[id(self.members[0])]]))
            prepared_rows.append(per_member)
            good.append(len(results) - 1)
        if good:
            self.fill_predictions(results, good,
                                  [np.stack([row[m] for row in prepared_rows]) for m in range(len(self.members))])
        return results

    def predict_files(self, paths: Sequence[str | Path], wavelength: float | None = None) -> list[PatternPrediction]:
        """Read each file (errors are reported per file) and predict."""
        patterns: list[MeasuredPattern | PatternError] = []
        for p in paths:
            try:
                patterns.append(read_pattern(p))
            except PatternError as err:
                patterns.append(err)
            except (ValueError, ArithmeticError, OSError) as err:  # one bad file must not stop the others
                patterns.append(PatternError(p, f"cannot be read ({err})"))
        return self.predict_patterns(patterns, wavelength=wavelength)

    def fill_predictions(self, results: list[PatternPrediction], rows: Sequence[int],
                         inputs: Sequence[np.ndarray]) -> None:
        """Combine the members on prepared ``inputs`` (``inputs[m]`` is (B, N_m) for member m, its row
        j for ``results[rows[j]]``) and fill those results in place."""
        ens = self.ensemble(inputs)
        for j, i in enumerate(rows):
            self.fill_prediction(results[i], ens, j)

    def fill_prediction(self, result: PatternPrediction, ens: EnsemblePrediction, j: int) -> None:
        """Fill ``result`` with row ``j`` of ``ens``: top-k candidates, crystal systems, refusal, agreement,
        volume."""
        probs = ens.probabilities[j]
        idx, val = top_k(probs[None, :], self.cfg.top_k)
        result.candidates = [
            Candidate(space_group=self.space_groups[int(c)], symbol=space_group_symbol(self.space_groups[int(c)]),
                      crystal_system=crystal_system(self.space_groups[int(c)]), probability=float(p))
            for c, p in zip(idx[0], val[0])
        ]
        result.crystal_systems = [CrystalSystemProbability(system, p)
                                  for system, p in crystal_system_probabilities(probs, self.space_groups)]
        result.top_probability = float(val[0, 0])
        result.refused = bool(refused(probs[None, :], self.refusal_threshold)[0])
        system_threshold = self.crystal_system_threshold
        if system_threshold is not None and result.crystal_systems:
            result.crystal_system_refused = bool(result.crystal_systems[0].probability < system_threshold)
        result.agreement = int(ens.agreement[j])
        result.n_members = ens.n_members
        if ens.log_volume is not None:
            result.volume = float(math.exp(ens.log_volume[j]))
            result.volume_spread = float(ens.log_volume_std[j])
        result.probabilities = probs
