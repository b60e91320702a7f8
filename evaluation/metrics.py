"""Classification metrics of space-group predictions (pure numpy).

``scores`` are (n, C) logits or probabilities over the classes ``space_groups`` (the model's class
order, ``Statistics.space_groups``); ``labels`` are (n,) class indices. Crystals whose true space
group is not a class (out of scope) cannot be scored by index: :func:`summarize` is over the
in-class ones, :func:`scope_metrics` adds the figures with the out-of-scope ones counted wrong.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from generator.symmetry import CRYSTAL_SYSTEMS, crystal_system


def top_k_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(n,) bool: the true class is among the ``k`` highest scores (ties broken by class index)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be (n, C) with n = len(labels), got {scores.shape} and {labels.shape}")
    k = min(int(k), scores.shape[1])
    if k < 1:
        raise ValueError("k must be >= 1")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose true class is among the top ``k`` (NaN for an empty set)."""
    if len(labels) == 0:
        return float("nan")
    return float(top_k_correct(scores, labels, k).mean())


def per_class_recall(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) recall of each class (NaN where the class has no sample)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    support = np.bincount(labels, minlength=n_classes).astype(float)
    hits = np.bincount(labels[predictions == labels], minlength=n_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / support, np.nan)


def per_space_group_recall(predictions: np.ndarray, labels: np.ndarray, space_groups: Sequence[int]) -> dict[int, float]:
    """Space-group number -> recall, for the groups present in ``labels``."""
    recall = per_class_recall(predictions, labels, len(space_groups))
    return {int(sg): float(r) for sg, r in zip(space_groups, recall) if not np.isnan(r)}


def _systems(indices: np.ndarray, space_groups: Sequence[int]) -> np.ndarray:
    table = np.array([crystal_system(int(sg)) for sg in space_groups], dtype=object)
    return table[np.asarray(indices, np.int64)]


def accuracy_by_crystal_system(predictions: np.ndarray, labels: np.ndarray,
                               space_groups: Sequence[int]) -> dict[str, float]:
    """True crystal system -> space-group accuracy among its samples (systems present only)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    systems = _systems(labels, space_groups)
    out = {}
    for name in CRYSTAL_SYSTEMS:
        mask = systems == name
        if mask.any():
            out[name] = float((predictions[mask] == labels[mask]).mean())
    return out


def crystal_system_accuracy(predictions: np.ndarray, labels: np.ndarray, space_groups: Sequence[int]) -> float:
    """Fraction of samples whose predicted space group lies in the true crystal system (NaN if empty)."""
    if len(labels) == 0:
        return float("nan")
    return float((_systems(predictions, space_groups) == _systems(labels, space_groups)).mean())


def gap(synthetic_accuracy: float, real_accuracy: float) -> float:
    """Synthetic-minus-real accuracy: how much of the synthetic skill does not carry over to real crystals."""
    return float(synthetic_accuracy) - float(real_accuracy)


def summarize(scores: np.ndarray, labels: np.ndarray, space_groups: Sequence[int], topk: Sequence[int] = (1, 5),
              log_volume_pred: np.ndarray | None = None, log_volume_true: np.ndarray | None = None) -> dict:
    """Every metric of one test set.

    Returns a dict with the scalars "n", "top{k}" for each k, "crystal_system_accuracy",
    "balanced_accuracy" (mean per-space-group recall over the groups present), optionally
    "log_volume_mae"; and the details "per_space_group_recall" (number -> recall) and
    "accuracy_by_crystal_system" (system -> accuracy).
    """
    scores, labels = np.asarray(scores), np.asarray(labels, np.int64)
    predictions = np.argmax(scores, axis=1) if len(labels) else np.zeros(0, np.int64)
    out: dict = {"n": int(len(labels))}
    for k in topk:
        out[f"top{int(k)}"] = top_k_accuracy(scores, labels, int(k))
    recall = per_space_group_recall(predictions, labels, space_groups)
    out["balanced_accuracy"] = float(np.mean(list(recall.values()))) if recall else float("nan")
    out["crystal_system_accuracy"] = crystal_system_accuracy(predictions, labels, space_groups)
    if log_volume_pred is not None and log_volume_true is not None and len(labels):
        out["log_volume_mae"] = float(np.mean(np.abs(np.asarray(log_volume_pred) - np.asarray(log_volume_true))))
    out["per_space_group_recall"] = recall
    out["accuracy_by_crystal_system"] = accuracy_by_crystal_system(predictions, labels, space_groups)
    return out


def scope_metrics(summary: dict, n_out_of_scope: int, topk: Sequence[int]) -> dict[str, float]:
    """"n_out_of_scope" (alias "n_unclassified") and "top{k}_all" = top{k} * n / (n + n_out_of_scope):
    the accuracies with the crystals outside the classes counted wrong."""
    n, extra = int(summary["n"]), int(n_out_of_scope)
    out = {"n_out_of_scope": float(extra), "n_unclassified": float(extra)}
    for k in topk:
        acc = summary[f"top{int(k)}"]
        out[f"top{int(k)}_all"] = float(acc * n / (n + extra)) if n else (0.0 if extra else float("nan"))
    return out
