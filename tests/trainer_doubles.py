"""Test doubles for the trainer: small in-memory batch sources built from random tensors."""
from __future__ import annotations

import numpy as np

from cluster.batch import Batch


class ToySource:
    """Seeded, learnable toy stream: class c has a bump at position c * spacing plus noise.

    Implements the BatchSource protocol and ``state_dict``/``load_state_dict`` (resumable).
    """

    def __init__(self, n_classes=4, length=512, batch_size=16, seed=0, dtype=np.float16):
        self.n_classes, self.length, self.batch_size, self.dtype = n_classes, length, batch_size, dtype
        self.rng = np.random.default_rng(seed)
        self.delivered = 0
        self.closed = False

    def get(self, timeout: float) -> Batch:
        labels = self.rng.integers(0, self.n_classes, self.batch_size)
        grid = np.arange(self.length)
        centres = (labels + 1) * self.length / (self.n_classes + 1)
        patterns = np.exp(-0.5 * ((grid[None, :] - centres[:, None]) / 6.0) ** 2)
        patterns = np.clip(patterns + 0.05 * self.rng.random((self.batch_size, self.length)), 0, 1)
        log_volume = np.log(100.0 + 50.0 * labels + self.rng.random(self.batch_size)).astype(np.float32)
        self.delivered += 1
        return Batch(patterns.astype(self.dtype), labels.astype(np.int64), (labels + 1).astype(np.int16), log_volume)

    def metrics(self) -> dict[str, float]:
        return {"queue_length": 0.0, "delivered": float(self.delivered)}

    def close(self) -> None:
        self.closed = True

    def state_dict(self) -> dict:
        import json

        return {"rng": json.dumps(self.rng.bit_generator.state), "delivered": self.delivered}

    def load_state_dict(self, state: dict) -> None:
        import json

        self.rng.bit_generator.state = json.loads(state["rng"])
        self.delivered = int(state["delivered"])


class FaultySource(ToySource):
    """Delivers bad batches (NaN, wrong shape, an exception) at the given get() calls."""

    def __init__(self, faults: dict[int, str], **kwargs):
        super().__init__(**kwargs)
        self.faults = faults
        self.calls = 0

    def get(self, timeout: float) -> Batch:
        self.calls += 1
        kind = self.faults.get(self.calls)
        if kind == "raise":
            raise RuntimeError("producer crashed")
        if kind == "timeout":
            raise TimeoutError("queue empty")
        batch = super().get(timeout)
        if kind == "nan":
            batch.patterns[0, 0] = np.nan
        elif kind == "shape":
            batch = Batch(batch.patterns[:, :-1], batch.labels, batch.space_groups, batch.log_volume)
        elif kind == "label":
            batch.labels[0] = self.n_classes + 3
        return batch


def local_evaluator(factory, sets: dict, gap_reference: str = "test_spglib"):
    """The production in-process evaluator (:class:`evaluation.scoring.LocalEvaluator`) over fixed named
    batches: "synthetic" is scored as the synthetic set, every other name as a real set."""
    from evaluation.config import EvaluationConfig
    from evaluation.scoring import LocalEvaluator
    from evaluation.testsets import TestSet

    test_sets = [TestSet(name, "synthetic" if name == "synthetic" else "real", b.patterns, b.labels, b.space_groups,
                         b.log_volume) for name, b in sets.items()]
    space_groups = list(range(1, factory.n_classes + 1))   # ToySource: class c is space group c + 1
    return LocalEvaluator(factory, test_sets, space_groups,
                          EvaluationConfig(backend="local", topk=[1, 5], gap_reference=gap_reference))
