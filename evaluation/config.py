"""Structured config of scoring models on test sets (``conf/evaluation/*.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from generator.config import as_config, check

@dataclass
class EvaluationConfig:
    """Scoring the model on held-out data in parallel with training.

    Attributes:
        enabled: evaluate at all.
        backend: "ray" (evaluator actors, never blocking the trainer) or "local" (in-process,
            synchronous; tests and debugging).
        interval_steps: submit the current weights every this many training steps.
        num_evaluators: evaluator actors.
        evaluator_cpus: CPUs per evaluator actor (also its torch thread count).
        max_pending: submissions kept while every evaluator is busy (older ones are dropped).
        batch_size: patterns per forward pass.
        test_sets: names of the sets to build: "test_database" (held-out structure types,
            database labels), "test_spglib" (same crystals, spglib labels), "test_ordered"
            (spglib labels, crystals without partial occupancy), "statistics_real" (statistics-side
            real crystals), "synthetic" (a fixed fresh synthetic set), "randomised_coordinates",
            "randomised_lattice", "randomised_both" (held-out crystals re-randomised).
        max_test_crystals: cap per real set (None: all), chosen with the seed.
        synthetic_size: crystals in the fixed synthetic set.
        cache: keep simulated test patterns on disk (NPZ keyed by split hash and simulation config hash).
        cache_dir: their folder (None: ``test_patterns`` in the project cache, $CRYSTALSTREAM_CACHE or
            ~/.cache/crystalstream).
        dtype: dtype of cached and shipped test patterns.
        topk: the k of the top-k accuracies reported.
        gap_reference: real set that the synthetic-minus-real gap is computed against (the gap is
            also reported for every real set).
        seed: root seed of the test sets (simulation noise, subsets, the synthetic set).
        timeout_s: how long ``Evaluator.wait`` waits for outstanding evaluations at the end.
    """

    enabled: bool = True
    backend: str = "ray"
    interval_steps: int = 500
    num_evaluators: int = 1
    evaluator_cpus: float = 1.0
    max_pending: int = 1
    batch_size: int = 256
    test_sets: list[str] = field(
        default_factory=lambda: ["test_database", "test_spglib", "test_ordered", "statistics_real", "synthetic"]
    )
    max_test_crystals: Optional[int] = None
    synthetic_size: int = 2000
    cache: bool = True
    cache_dir: Optional[str] = None
    dtype: str = "float16"
    topk: list[int] = field(default_factory=lambda: [1, 5])
    gap_reference: str = "test_spglib"
    seed: int = 0
    timeout_s: float = 600.0

    def validate(self, prefix: str = "evaluation") -> "EvaluationConfig":
        """Raise ``ValueError`` naming the key of an impossible value; returns ``self``."""
        check(self.backend in ("ray", "local"), f"{prefix}.backend", f"must be ray or local, got {self.backend!r}")
        for key in ("interval_steps", "num_evaluators", "max_pending", "batch_size", "synthetic_size"):
            check(getattr(self, key) >= 1, f"{prefix}.{key}", f"must be >= 1, got {getattr(self, key)}")
        check(self.evaluator_cpus > 0, f"{prefix}.evaluator_cpus", f"must be > 0, got {self.evaluator_cpus}")
        check(self.max_test_crystals is None or self.max_test_crystals >= 1, f"{prefix}.max_test_crystals",
              f"must be null or >= 1, got {self.max_test_crystals}")
        check(all(k >= 1 for k in self.topk), f"{prefix}.topk", f"must hold values >= 1, got {self.topk}")
        check(self.timeout_s > 0, f"{prefix}.timeout_s", f"must be > 0, got {self.timeout_s}")
        return self


def to_dataclass(cls: type, cfg: Any):
    """A typed ``cls`` instance from a dataclass, an OmegaConf node or a dict (unknown keys are errors)."""
    return as_config(cls, cfg)
