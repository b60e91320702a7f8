"""Scoring a model on test sets: one function for the evaluator actors, the in-process evaluator and
``python -m inference.evaluate``.

:func:`score` scores a model's weights on every test set; :class:`LocalEvaluator` does it synchronously
in-process with the interface of the Ray evaluator actors (:mod:`cluster.evaluators`).

A result is a dict: "step", "seconds", "metrics" (flat "set/metric" -> float, including
"gap/<real set>" = synthetic top-1 minus that set's top-1 and "gap" against ``gap_reference``),
and "details" (set -> per-space-group recall and accuracy by crystal system).

Per set, the rule ``python -m inference.evaluate`` follows too (see :mod:`evaluation.testsets`):
"<set>/n" scored (in-class) crystals, "<set>/n_out_of_scope" crystals whose label is outside the
classes ("<set>/n_unclassified": the same number, its former name), "<set>/top{k}" over the scored
crystals and "<set>/top{k}_all" over scored plus out-of-scope ones (those counted wrong).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from evaluation.config import EvaluationConfig, to_dataclass
from evaluation.metrics import gap, scope_metrics, summarize
from evaluation.testsets import TestSet


def to_numpy_state(state_dict) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as CPU numpy arrays (cheap to ship, no CUDA tensors in the object store)."""
    out = {}
    for k, v in state_dict.items():
        if hasattr(v, "detach"):
            v = v.detach().to("cpu")
            if str(v.dtype) == "torch.bfloat16":
                v = v.float()
            v = v.numpy()
        out[k] = np.asarray(v)
    return out


def _logits_and_volume(output):
    if isinstance(output, dict):
        return output["logits"], output.get("log_volume")
    return output, None


def score(model, weights: dict[str, np.ndarray] | None, test_sets: Sequence[TestSet], space_groups: Sequence[int],
          batch_size: int = 256, topk: Sequence[int] = (1, 5), gap_reference: str | None = None) -> dict:
    """Scores of ``model`` (weights loaded if given) on every test set; see the module docstring."""
    import torch

    if weights is not None:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    model.eval()
    metrics: dict[str, float] = {}
    details: dict[str, dict] = {}
    with torch.no_grad():
        for ts in test_sets:
            logits, volumes = [], []
            for i in range(0, len(ts), batch_size):
                x = torch.from_numpy(np.asarray(ts.patterns[i:i + batch_size], np.float32))
                lg, lv = _logits_and_volume(model(x))
                logits.append(lg.float().cpu().numpy())
                if lv is not None:
                    volumes.append(lv.float().cpu().numpy().reshape(-1))
            scores = np.concatenate(logits) if logits else np.zeros((0, len(space_groups)), np.float32)
            vol = np.concatenate(volumes) if volumes else None
            s = summarize(scores, ts.labels, space_groups, topk, vol, ts.log_volume if vol is not None else None)
            details[ts.name] = {"per_space_group_recall": s.pop("per_space_group_recall"),
                                "accuracy_by_crystal_system": s.pop("accuracy_by_crystal_system")}
            for key, value in s.items():
                metrics[f"{ts.name}/{key}"] = float(value)
            for key, value in scope_metrics(s, getattr(ts, "n_out_of_scope", 0), topk).items():
                metrics[f"{ts.name}/{key}"] = float(value)
    synthetic = [t.name for t in test_sets if t.kind == "synthetic"]
    if synthetic:
        syn = metrics[f"{synthetic[0]}/top1"]
        for ts in test_sets:
            if ts.kind == "real":
                metrics[f"gap/{ts.name}"] = gap(syn, metrics[f"{ts.name}/top1"])
        if gap_reference and f"gap/{gap_reference}" in metrics:
            metrics["gap"] = metrics[f"gap/{gap_reference}"]
    return {"metrics": metrics, "details": details}


class LocalEvaluator:
    """Synchronous in-process evaluation with the :class:`Evaluator` interface."""

    def __init__(self, model_factory: Callable[[], Any], test_sets: Sequence[TestSet], space_groups: Sequence[int],
                 cfg: EvaluationConfig | Any = None):
        self.cfg = to_dataclass(EvaluationConfig, cfg)
        self.model = model_factory()
        self.test_sets, self.space_groups = list(test_sets), [int(s) for s in space_groups]
        self._results: list[dict] = []
        self.submitted = 0
        self.dropped = 0

    def submit(self, state_dict, step: int) -> bool:
        t0 = time.perf_counter()
        out = score(self.model, to_numpy_state(state_dict), self.test_sets, self.space_groups, self.cfg.batch_size,
                    self.cfg.topk, self.cfg.gap_reference)
        self._results.append({"step": int(step), "seconds": time.perf_counter() - t0, **out})
        self.submitted += 1
        return True

    def poll(self) -> list[dict]:
        out, self._results = self._results, []
        return out

    def wait(self, timeout: float | None = None) -> list[dict]:
        return self.poll()

    @property
    def busy(self) -> int:
        return 0

    def close(self) -> None:
        pass
