"""Evaluation during training: the interface the loop talks to and the picklable model recipe.

The loop hands the current weights to an :class:`EvaluationHook` every ``trainer.eval_every``
steps and collects finished results whenever it logs; a hook must never block ``submit``.
``cluster.evaluators`` provides the implementations used in real runs (Ray evaluator actors, or
a synchronous local one), both scoring with :func:`evaluation.scoring.score`.
A result is a dict with "step" and "metrics" (flat name -> float), optionally "details".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch



class EvaluationHook(Protocol):
    def submit(self, state_dict: dict[str, torch.Tensor], step: int) -> Any:
        """Queue an evaluation of the weights (CPU tensors) taken at ``step``; returns at once."""

    def poll(self) -> list[dict]:
        """Finished evaluations ({"step", "metrics", ...}), oldest first; never blocks."""

    def wait(self, timeout: float) -> list[dict]:
        """Block until every submitted evaluation finished (or ``timeout`` s passed) and return them."""

    def close(self) -> None:
        """Free the evaluators."""


@dataclass
class ModelFactory:
    """Picklable recipe of a model (shipped to evaluator processes together with weights)."""

    model: dict
    n_classes: int
    input_length: int

    def __call__(self) -> torch.nn.Module:
        from trainer.models import build_model

        return build_model(self.model, self.n_classes, self.input_length)


def collect(results: list) -> list[tuple[int, dict[str, float], dict]]:
    """(step, flat metrics, details) of each result a hook returned: dicts {"step", "metrics",
    "seconds", "details"}, flat dicts with a "step", or (step, metrics) pairs."""
    out = []
    for r in results or []:
        if isinstance(r, tuple) and len(r) == 2:
            out.append((int(r[0]), dict(r[1]), {}))
        elif isinstance(r, dict) and "metrics" in r:
            metrics = dict(r["metrics"])
            if "seconds" in r:
                metrics["eval_seconds"] = float(r["seconds"])
            out.append((int(r.get("step", -1)), metrics, dict(r.get("details") or {})))
        elif isinstance(r, dict):
            r = dict(r)
            out.append((int(r.pop("step", -1)), r, {}))
        else:
            step = getattr(r, "step", -1)
            metrics = getattr(r, "metrics", None)
            if metrics is not None:
                out.append((int(step), dict(metrics), {}))
    return out
