"""Evaluation during training: the interface the loop talks to, and a minimal in-process scorer.

The loop hands the current weights to an :class:`EvaluationHook` every ``trainer.eval_every``
steps and collects finished results whenever it logs; a hook must never block ``submit``.
``cluster.evaluation`` provides the implementations used in real runs (Ray evaluator actors, or
a synchronous local one); :class:`InProcessEvaluator` scores fixed batches (tests, debugging).
A result is a dict with "step" and "metrics" (flat name -> float), optionally "details".
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from cluster.batch import Batch
from cluster.metrics import gap


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


def topk_accuracies(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """Fraction of samples whose label is among the k highest logits, per k."""
    order = np.argsort(-logits, axis=1)
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hit = (order[:, :k_eff] == labels[:, None]).any(axis=1)
        out[f"top{k}"] = float(hit.mean()) if len(labels) else float("nan")
    return out


def predict(model: torch.nn.Module, patterns: np.ndarray, batch_size: int = 256,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Model outputs over an array of patterns, in eval mode and without gradients."""
    model.eval()
    outs: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for i in range(0, len(patterns), batch_size):
            x = torch.as_tensor(np.asarray(patterns[i:i + batch_size], np.float32), device=device)
            for k, v in model(x).items():
                outs.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


class InProcessEvaluator:
    """Scores fixed named batches synchronously inside ``submit`` (results come back by ``poll``).

    Metrics per set: ``<set>/top1``, ``<set>/top5``, ``<set>/n``; with a "synthetic" set, the keys
    :func:`cluster.evaluation.score` writes: ``gap/<set>`` = synthetic top-1 minus the set's top-1
    for every other set, and ``gap`` for ``gap_reference`` when it is among them.
    """

    def __init__(self, factory: Callable[[], torch.nn.Module], sets: dict[str, Batch], batch_size: int = 256,
                 ks=(1, 5), gap_reference: Optional[str] = "test_spglib"):
        self.factory = factory
        self.gap_reference = gap_reference
        self.sets = sets
        self.batch_size = batch_size
        self.ks = tuple(ks)
        self._done: list[dict] = []
        self._model: Optional[torch.nn.Module] = None

    def submit(self, weights: dict[str, torch.Tensor], step: int) -> bool:
        if self._model is None:
            self._model = self.factory()
        self._model.load_state_dict(weights)
        t0 = time.perf_counter()
        metrics: dict[str, float] = {}
        for name, batch in self.sets.items():
            out = predict(self._model, batch.patterns, self.batch_size)
            for k, v in topk_accuracies(out["logits"], np.asarray(batch.labels), self.ks).items():
                metrics[f"{name}/{k}"] = v
            metrics[f"{name}/n"] = float(len(batch))
        if "synthetic" in self.sets:
            for name in self.sets:
                if name != "synthetic":
                    metrics[f"gap/{name}"] = gap(metrics["synthetic/top1"], metrics[f"{name}/top1"])
            if self.gap_reference and f"gap/{self.gap_reference}" in metrics:
                metrics["gap"] = metrics[f"gap/{self.gap_reference}"]
        self._done.append({"step": int(step), "seconds": time.perf_counter() - t0, "metrics": metrics})
        return True

    def poll(self) -> list[dict]:
        done, self._done = self._done, []
        return done

    def wait(self, timeout: float) -> list[dict]:
        return self.poll()

    def close(self) -> None:
        self._model = None


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
