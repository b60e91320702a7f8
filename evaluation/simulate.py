"""Simulating the crystals of a test set one after another from one seeded stream, each with an impurity
phase from another crystal of the same set when the simulator's impurity phase is enabled."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

__all__ = ["IMPURITY_RULE", "impurity_enabled", "impurity_key", "impurity_partners", "simulate_crystals"]

log = logging.getLogger(__name__)

# Part of the cache key of real patterns simulated with an impurity phase from another crystal of the set.
IMPURITY_RULE = "partner-from-set-1"
_IMPURITY_TRIES = 3


def impurity_enabled(simulator) -> bool:
    """Whether ``simulator`` (a representation) mixes in an impurity phase (only 2-theta patterns can)."""
    impurity = getattr(simulator.config, "impurity", None)
    return bool(impurity is not None and impurity.enabled)


def impurity_partners(n: int, rng: np.random.Generator, usable: Sequence[bool] | None = None,
                      tries: int = _IMPURITY_TRIES) -> list[list[int]]:
    """For each of ``n`` crystals, up to ``tries`` distinct indices of *other* usable crystals of the same
    set, in the order they are tried as its impurity phase (drawn with ``rng``; empty when no other
    crystal is usable)."""
    usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    out = []
    for i in range(n):
        candidates = np.flatnonzero(usable)
        candidates = candidates[candidates != i]
        k = min(int(tries), len(candidates))
        out.append(rng.choice(candidates, size=k, replace=False).tolist() if k else [])
    return out


def simulate_crystals(crystals: Sequence, simulator, rng: np.random.Generator, dtype: str = "float16",
                      variants: int = 1, impurity_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(len * variants, N) patterns of ``crystals`` (variant-major per crystal) and a (len,) bool mask of
    the crystals that simulated (a failure leaves zero rows and False). ``simulator``: a representation
    (``simulator.representation.make_representation``) or a ``PatternSimulator``; its ``patterns`` is called.

    With the simulator's impurity phase enabled and ``impurity_rng`` given, crystal i gets its impurity
    phase from another crystal of ``crystals`` (:func:`impurity_partners`, drawn with ``impurity_rng``;
    a partner that fails to simulate is replaced by the next one drawn); without ``impurity_rng`` a
    crystal gets no impurity phase."""
    n_points = simulator.grid.shape[0]
    out = np.zeros((len(crystals) * variants, n_points), np.dtype(dtype))
    ok = np.ones(len(crystals), bool)
    partners = None
    if impurity_rng is not None and impurity_enabled(simulator):
        partners = impurity_partners(len(crystals), impurity_rng, [c is not None for c in crystals])
    for i, crystal in enumerate(crystals):
        try:
            if crystal is None:
                raise ValueError("no crystal")
            if partners is None or not partners[i]:
                out[i * variants:(i + 1) * variants] = simulator.patterns([crystal] * variants, rng)
                continue
            for attempt, j in enumerate(partners[i]):
                try:
                    out[i * variants:(i + 1) * variants] = simulator.patterns([crystal] * variants, rng,
                                                                             impurities=[crystals[j]] * variants)
                    break
                except Exception:
                    if attempt == len(partners[i]) - 1:
                        raise
                    log.info("impurity partner %d of crystal %d failed; trying the next", j, i)
        except Exception as exc:  # a pathological real structure must not stop evaluation
            ok[i] = False
            if crystal is not None:
                log.warning("simulation failed for crystal %d: %s", i, exc)
    return out, ok


def impurity_key(simulator) -> str | None:
    """The impurity rule in the cache key of real patterns; None (left out of the key) without the impurity phase."""
    return IMPURITY_RULE if impurity_enabled(simulator) else None
