"""Ensembles of classifiers and refusal when unsure.

Several networks (different seeds, architectures or input grids) vote by averaging their class
probabilities (Ozaki et al.: 6 seeds; Vecsei et al.: 10 networks). A prediction whose averaged
top probability is below a threshold is refused (Vecsei et al.: 0.45); the coverage-accuracy
curve shows what a threshold buys: the fraction of patterns answered and the accuracy on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EnsemblePrediction:
    """Combined output of M members for B patterns over C classes.

    Attributes:
        probabilities: (B, C) float64 mean of the members' class probabilities.
        member_top1: (M, B) int64 each member's top-1 class index.
        agreement: (B,) int64 members whose top-1 equals the ensemble's top-1.
        log_volume: (B,) float64 mean predicted natural-log cell volume of the members with a
            volume head, or None when none has one.
        log_volume_std: (B,) float64 spread of that prediction across members (0 for one member), or None.
    """

    probabilities: np.ndarray
    member_top1: np.ndarray
    agreement: np.ndarray
    log_volume: np.ndarray | None = None
    log_volume_std: np.ndarray | None = None

    @property
    def n_members(self) -> int:
        return int(self.member_top1.shape[0])

    @property
    def top1(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def top_probability(self) -> np.ndarray:
        return self.probabilities.max(axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def combine(member_probabilities: list[np.ndarray], member_log_volumes: list[np.ndarray | None] | None = None
            ) -> EnsemblePrediction:
    """Average the (B, C) probabilities of each member and count agreement on the top-1.

    All members must share the class list (same C, same order); ``member_log_volumes`` holds one
    (B,) array per member, or None for members without a volume head.
    """
    if not member_probabilities:
        raise ValueError("an ensemble needs at least one member")
    probs = [np.asarray(p, dtype=np.float64) for p in member_probabilities]
    shape = probs[0].shape
    if len(shape) != 2:
        raise ValueError(f"member probabilities must be (B, C), got {shape}")
    for i, p in enumerate(probs):
        if p.shape != shape:
            raise ValueError(f"member {i} gives probabilities of shape {p.shape}, member 0 {shape}")
    stacked = np.stack(probs)  # (M, B, C)
    mean = stacked.mean(axis=0)
    member_top1 = stacked.argmax(axis=2)
    agreement = (member_top1 == mean.argmax(axis=1)[None, :]).sum(axis=0)
    log_volume = log_volume_std = None
    if member_log_volumes is not None:
        if len(member_log_volumes) != len(probs):
            raise ValueError(f"{len(member_log_volumes)} volume predictions for {len(probs)} members")
        vols = [np.asarray(v, dtype=np.float64) for v in member_log_volumes if v is not None]
        if vols:
            v = np.stack(vols)
            log_volume, log_volume_std = v.mean(axis=0), v.std(axis=0)
    return EnsemblePrediction(probabilities=mean, member_top1=member_top1.astype(np.int64),
                              agreement=agreement.astype(np.int64), log_volume=log_volume,
                              log_volume_std=log_volume_std)


def align_classes(probabilities: np.ndarray, classes: list[int], target: list[int]) -> np.ndarray:
    """(B, C) probabilities over ``classes`` re-indexed onto ``target`` (classes not predicted get 0)."""
    index = {c: i for i, c in enumerate(target)}
    out = np.zeros((probabilities.shape[0], len(target)), dtype=np.float64)
    for j, c in enumerate(classes):
        if c not in index:
            raise ValueError(f"class {c} is not in the target class list")
        out[:, index[c]] = probabilities[:, j]
    return out


def refused(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """(B,) bool: True where the top probability is below ``threshold`` (the answer is withheld)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"refusal threshold must be in [0, 1], got {threshold}")
    return np.asarray(probabilities).max(axis=1) < threshold


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (B, k) and probabilities (B, k) of the k most probable classes, best first (stable ties)."""
    p = np.asarray(probabilities)
    k = max(1, min(int(k), p.shape[1]))
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(p, idx, axis=1)


@dataclass
class CoverageCurve:
    """Accuracy of the answered patterns against the fraction answered, over refusal thresholds.

    Attributes:
        thresholds: (T,) refusal thresholds.
        coverage: (T,) fraction of patterns whose top probability reaches the threshold.
        accuracy: (T,) top-1 accuracy on those (NaN where none is kept).
        n_kept: (T,) number of patterns kept.
    """

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray
    n_kept: np.ndarray

    def at(self, threshold: float) -> tuple[float, float]:
        """(coverage, accuracy) at the threshold closest to ``threshold``."""
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        return float(self.coverage[i]), float(self.accuracy[i])

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds.tolist(), "coverage": self.coverage.tolist(),
                "accuracy": [None if np.isnan(a) else float(a) for a in self.accuracy],
                "n_kept": self.n_kept.tolist()}


def coverage_accuracy(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None
                      ) -> CoverageCurve:
    """Coverage and accuracy of the kept predictions for each threshold.

    Args:
        probabilities: (B, C) class probabilities.
        labels: (B,) true class indices; -1 marks a label outside the model's classes (always wrong).
        thresholds: (T,) thresholds; default 0, 0.05, ..., 1.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 21)
    t = np.asarray(thresholds, dtype=np.float64)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    kept = conf[None, :] >= t[:, None]  # (T, B)
    n_kept = kept.sum(axis=1)
    n = max(len(y), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_kept > 0, (kept & correct[None, :]).sum(axis=1) / np.maximum(n_kept, 1), np.nan)
    return CoverageCurve(thresholds=t, coverage=n_kept / n, accuracy=acc, n_kept=n_kept.astype(np.int64))


def choose_refusal_threshold(probabilities: np.ndarray, labels: np.ndarray, target_accuracy: float,
                             default: float, step: float = 0.01, min_kept: int = 20) -> tuple[float, bool]:
    """The smallest threshold on the grid 0, step, ..., 1 at which the patterns whose top probability
    reaches it (at least ``min_kept`` of them) have top-1 accuracy >= ``target_accuracy``;
    ``(default, False)`` when no threshold does. Returns (threshold, reached)."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    for t in np.round(np.arange(0.0, 1.0 + step / 2, step), 10):
        kept = conf >= t
        n_kept = int(kept.sum())
        if n_kept >= max(1, min_kept) and correct[kept].mean() >= target_accuracy - 1e-12:
            return float(t), True
    return float(default), False
