"""The top answer's probability calibrated on its own, inside its crystal system.

One temperature (:mod:`inference.calibration`) matches the mean confidence to the accuracy, but not the
shape: on real crystals of unseen structure types the temperature-scaled model is still right less often
than it says where it says most (answers shown at 0.8-1.0 right about 70 % of the time). A second,
three-parameter map fixes the top probability alone: beta calibration (Kull, Silva Filho & Flach 2017),

    q = sigmoid(a ln p - b ln(1 - p) + c),    a, b >= 0 (monotone in p),

fitted by maximum likelihood on whether the top answer was right (a pattern outside the model's classes
counts as wrong: a new sample may be one). The probability the top answer loses (or gains) moves to the
other space groups of *its crystal system*, in proportion to theirs, so the crystal-system sums that
``inference.predict`` lists (already well calibrated by the temperature) stay exactly as they were, and
the top answer stays on top (its new probability is held at or above every other class's).

The map is stored in ``calibration.json`` as ``"top_label": {"a": .., "b": .., "c": ..}`` and applied to
each ensemble member's temperature-scaled probabilities (:mod:`inference.predictor`). Beside it,
:func:`crystal_system_threshold` chooses when the crystal-system answer (the summed probabilities,
which the map leaves alone) is reliable enough to give when the space group is refused.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

_EPS = 1e-6
_MARGIN = 1e-9   # the top answer's lead over any other class after the map (keeps the ranking strict)


def beta_features(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ln p, ln(1 - p)) of top probabilities ``p`` (B,), clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p), np.log1p(-p)


def top_label_confidence(p: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """The map q(p) (B,) of top probabilities ``p`` (B,) for ``params`` {"a", "b", "c"}."""
    lp, l1 = beta_features(p)
    s = float(params["a"]) * lp - float(params["b"]) * l1 + float(params["c"])
    return 0.5 * (1.0 + np.tanh(0.5 * s))   # the logistic function without overflow


def fit_top_label_map(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """{"a", "b", "c"} of the beta calibration of top probabilities ``confidence`` (B,) against
    ``correct`` (B,) booleans, by maximum likelihood with a, b >= 0; the identity-like start a = 1,
    b = 1, c = 0 (q = p)."""
    from scipy.optimize import minimize

    lp, l1 = beta_features(confidence)
    y = np.asarray(correct, np.float64)
    if lp.ndim != 1 or len(lp) != len(y) or len(y) == 0:
        raise ValueError(f"need (B,) confidences and (B,) outcomes with B > 0, got {lp.shape} and {y.shape}")

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = w[0] * lp - w[1] * l1 + w[2]
        q = 0.5 * (1.0 + np.tanh(0.5 * s))
        g = q - y   # d(mean NLL)/ds per pattern
        return float(np.mean(np.logaddexp(0.0, s) - y * s)), np.array([np.mean(g * lp), -np.mean(g * l1), np.mean(g)])

    res = minimize(nll, np.array([1.0, 1.0, 0.0]), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None), (0.0, None), (None, None)])
    a, b, c = (float(v) for v in res.x)
    return {"a": a, "b": b, "c": c}


def check_top_label_map(params: Optional[Mapping], where: str) -> Optional[dict]:
    """``params`` as floats, or None when absent/empty; ``ValueError`` naming ``where`` when a, b or c
    is missing, not finite, or a or b is negative (the map would not be monotone)."""
    if not params:
        return None
    try:
        out = {k: float(params[k]) for k in ("a", "b", "c")}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: top_label must hold numbers a, b and c ({err})") from err
    if not all(math.isfinite(v) for v in out.values()) or out["a"] < 0 or out["b"] < 0:
        raise ValueError(f"{where}: top_label needs finite a >= 0, b >= 0 and c, got {dict(params)}")
    return out


def system_index(space_groups: Sequence[int]) -> np.ndarray:
    """(C,) integer crystal system of each class (the same integer: the same crystal system)."""
    from inference.space_groups import crystal_system_membership

    return crystal_system_membership(space_groups).argmax(axis=1)


def apply_top_label_map(probabilities: np.ndarray, params: Optional[Mapping[str, float]],
                        systems: np.ndarray) -> np.ndarray:
    """Probabilities (B, C) with each row's top entry mapped by ``params`` and the difference spread over
    the other classes of its crystal system (``systems``: (C,) from :func:`system_index`) in proportion
    to theirs. Rows still sum to one, crystal-system sums and the top class are unchanged. A row whose
    top class is alone in its system (nowhere to move the mass) is left as it is; None ``params``: the
    input, unchanged."""
    p = np.array(probabilities, np.float64, copy=True)
    if params is None or p.size == 0:
        return p
    rows = np.arange(len(p))
    top = p.argmax(axis=1)
    p1 = p[rows, top]
    in_system = systems[None, :] == systems[top][:, None]
    same = in_system.copy()
    same[rows, top] = False
    rest = np.where(same, p, 0.0).sum(axis=1)
    movable = rest > 1e-12
    q = top_label_confidence(p1, params)
    # the top stays on top: at least every class of another system (unchanged by the move), and at least
    # the largest class of its own system after that one is scaled by (rest + p1 - q) / rest
    others = np.where(in_system, -np.inf, p).max(axis=1)
    largest_same = np.where(same, p, 0.0).max(axis=1)
    floor_same = largest_same * (rest + p1) / np.maximum(rest + largest_same, 1e-300)
    q = np.maximum(q, np.maximum(np.maximum(others, 0.0), floor_same) + _MARGIN)
    q = np.minimum(q, p1 + rest)   # cannot take more than its system holds
    q = np.where(movable, q, p1)
    scale = np.where(movable, (rest + p1 - q) / np.where(movable, rest, 1.0), 1.0)
    p = np.where(same, p * scale[:, None], p)
    p[rows, top] = q
    return p


def crystal_system_threshold(probabilities: np.ndarray, space_groups: Sequence[int], true_space_groups: np.ndarray,
                             cfg) -> tuple[Optional[float], dict]:
    """The refusal threshold of the crystal-system answer: the smallest summed probability of the most
    probable crystal system at which the kept patterns' crystal systems reach
    ``cfg.crystal_system_target_accuracy`` (``cfg``: :class:`inference.calibration.CalibrationConfig`).
    probabilities (B, C) over ``space_groups``; true_space_groups (B,) numbers, 0 where unknown (left
    out). Returns (threshold, {"coverage", "accuracy", "n"}), or (None, {}) when the target is never reached.
    A pattern whose space group is refused often has a crystal system worth reporting."""
    from inference.ensemble import choose_refusal_threshold
    from inference.space_groups import crystal_system_membership

    truth = np.asarray(true_space_groups, np.int64)
    known = truth > 0
    if not known.any():
        return None, {}
    true_system = crystal_system_membership(truth[known]).argmax(axis=1)
    summed = (np.asarray(probabilities, np.float64) @ crystal_system_membership(space_groups))[known]
    threshold, reached = choose_refusal_threshold(summed, true_system, cfg.crystal_system_target_accuracy,
                                                  float("nan"), cfg.threshold_step, cfg.min_kept)
    if not reached:
        return None, {}
    kept = summed.max(axis=1) >= threshold
    return threshold, {"coverage": float(kept.mean()), "n": int(known.sum()),
                       "accuracy": float((summed[kept].argmax(axis=1) == true_system[kept]).mean())}
