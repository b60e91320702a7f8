"""Producers: the code that turns a seed into an endless series of batches.

The same producer runs inside a Ray generation actor (:class:`cluster.stream.RayStream`) and in
the trainer's own process (:class:`cluster.sources.LocalStream`). A producer is built by a
picklable *factory* called with a ``numpy.random.SeedSequence``, so each actor is seeded
independently from one root seed (see :func:`generator.seeding.seed_for`).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from cluster.batch import Batch, cell_shapes
from cluster.config import PAYLOADS, to_dataclass

class Producer(Protocol):
    def next_batch(self) -> Batch:
        """Build the next batch (blocking, CPU-bound)."""

    def stats(self) -> dict[str, Any]:
        """Cumulative counters: "crystals", "batches", "seconds" (busy time), "rejections" (reason -> count)."""


ProducerFactory = Callable[[np.random.SeedSequence], Producer]


class SyntheticProducer:
    """Synthetic crystals from a ``generator.CrystalSampler`` turned into model inputs by the representation
    of ``simulation_cfg`` (``simulator.representation``: the 2-theta pattern, the ideal 1/d profile or G(r)).

    ``payload="array"``: :class:`Batch` of (B, N) inputs; ``"peaks"`` (2-theta patterns only): a
    :class:`~cluster.peak_batch.PeakBatch` (peak lists and draws) that the consumer renders, with
    one peak list per crystal however many patterns it gets.
    """

    def __init__(self, statistics, generator_cfg, simulation_cfg, batch_size: int, dtype: str,
                 seed: np.random.SeedSequence, patterns_per_crystal: int = 1, payload: str = "array"):
        from generator import CrystalSampler
        from simulator.representation import make_representation

        if not 1 <= patterns_per_crystal <= batch_size:
            raise ValueError(f"patterns_per_crystal must be in 1..batch_size ({batch_size}), got {patterns_per_crystal}")
        if payload not in PAYLOADS:
            raise ValueError(f"cluster.payload must be one of {PAYLOADS}, got {payload!r}")
        self.simulator = make_representation(simulation_cfg)
        check_payload(payload, self.simulator)
        self.payload = payload
        sampler_seed, simulation_seed, noise_seed = seed.spawn(3)  # the first two as with spawn(2)
        self.noise_rng = np.random.default_rng(noise_seed)        # seeds of the consumer's noise (peaks)
        self.sampler = _make_sampler(CrystalSampler, statistics, generator_cfg, sampler_seed)
        self.rng = np.random.default_rng(simulation_seed)
        self.batch_size = int(batch_size)
        self.patterns_per_crystal = int(patterns_per_crystal)
        self.dtype = np.dtype(dtype)
        self.class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
        self._crystals = 0
        self._batches = 0
        self._seconds = 0.0
        self._sample_seconds = 0.0

    def next_batch(self) -> Batch:
        t0 = time.perf_counter()
        # a batch size that k does not divide: the last crystal gives fewer than k patterns
        n_crystals = -(-self.batch_size // self.patterns_per_crystal)
        crystals = self.sampler.sample_many(n_crystals)
        t1 = time.perf_counter()
        if self.payload == "peaks":
            return self._peak_batch(crystals, t0, t1)
        if self.patterns_per_crystal > 1:
            crystals = [c for c in crystals for _ in range(self.patterns_per_crystal)][:self.batch_size]
        patterns = np.asarray(self.simulator.patterns(crystals, self.rng))
        batch = crystal_batch(patterns.astype(self.dtype, copy=False), crystals, self.class_index)
        self._count(n_crystals, t0, t1)
        return batch

    def _peak_batch(self, crystals: list, t0: float, t1: float):
        from cluster.peak_batch import draw_peak_batch

        labels = np.repeat([self.class_index[int(c.space_group)] for c in crystals], self.patterns_per_crystal)
        batch = draw_peak_batch(self.simulator, crystals, self.rng, self.patterns_per_crystal,
                                labels[:self.batch_size], noise_seed=int(self.noise_rng.integers(1 << 62)),
                                n_patterns=self.batch_size)
        self._count(len(crystals), t0, t1)
        return batch

    def _count(self, n_crystals: int, t0: float, t1: float) -> None:
        """Add one batch of ``n_crystals`` to the counters: sampling took t0..t1, the batch t0..now."""
        self._crystals += n_crystals
        self._batches += 1
        self._sample_seconds += t1 - t0
        self._seconds += time.perf_counter() - t0

    def stats(self) -> dict[str, Any]:
        rejections = getattr(self.sampler, "rejections", {}) or {}
        return {"crystals": self._crystals, "batches": self._batches, "seconds": self._seconds,
                "sample_seconds": self._sample_seconds, "rejections": dict(Counter(rejections))}


def check_payload(payload: str, simulation_cfg) -> None:
    """Peak payloads carry 2-theta peak lists: any other representation must use ``cluster.payload=array``."""
    from simulator.representation import representation_kind

    kind = getattr(simulation_cfg, "kind", None) if not hasattr(simulation_cfg, "get") else None
    kind = kind if isinstance(kind, str) else representation_kind(simulation_cfg)
    if payload == "peaks" and kind != "two_theta":
        raise ValueError(f"cluster.payload=peaks sends 2-theta peak lists; simulation kind {kind!r} needs "
                         "cluster.payload=array")


def crystal_batch(patterns: np.ndarray, crystals: list, class_index: dict[int, int]) -> Batch:
    """A :class:`Batch` of ``patterns`` (B, ...) made from ``crystals`` (B,): class labels through
    ``class_index`` (space group -> class), space groups and natural-log cell volumes."""
    space_groups = np.array([c.space_group for c in crystals], np.int16)
    return Batch(
        patterns=patterns,
        labels=np.array([class_index[int(s)] for s in space_groups], np.int64),
        space_groups=space_groups,
        log_volume=np.log(np.array([c.volume for c in crystals], np.float64)).astype(np.float32),
        cell_shape=cell_shapes(crystals),
    )


def _make_sampler(cls, statistics, generator_cfg, seed: np.random.SeedSequence):
    """A ``CrystalSampler`` from a ``GeneratorConfig`` (or its Hydra node), seeded with ``seed``."""
    from generator import GeneratorConfig

    cfg = to_dataclass(GeneratorConfig, generator_cfg)
    return cls.from_config(statistics, cfg, seed=seed)


@dataclass
class SyntheticProducerFactory:
    """Picklable factory of :class:`SyntheticProducer` (what generation actors receive)."""

    statistics: Any
    generator_cfg: Any
    simulation_cfg: Any
    batch_size: int
    dtype: str = "float16"
    patterns_per_crystal: int = 1
    payload: str = "array"

    def __post_init__(self):
        # refuse an impossible payload here, in the trainer, before any generation actor starts
        check_payload(self.payload, self.simulation_cfg)

    def __call__(self, seed: np.random.SeedSequence) -> SyntheticProducer:
        return SyntheticProducer(self.statistics, self.generator_cfg, self.simulation_cfg, self.batch_size,
                                 self.dtype, seed, self.patterns_per_crystal, self.payload)


class NoiseProducer:
    """Random patterns with random labels: measures the plumbing alone (queue, serialisation).

    ``seconds_per_batch`` emulates generation cost by sleeping; ``fail_after`` makes ``next_batch``
    raise after that many batches (fault injection); ``fresh=False`` draws the patterns once and
    ships them again with new labels (the cost of the queue alone).
    """

    def __init__(self, seed: np.random.SeedSequence, batch_size: int, n_points: int, n_classes: int,
                 dtype: str = "float16", seconds_per_batch: float = 0.0, fail_after: int | None = None,
                 fresh: bool = True):
        self.fail_after = fail_after
        self.fresh = fresh
        self._patterns = None
        self.rng = np.random.default_rng(seed)
        self.batch_size, self.n_points, self.n_classes = int(batch_size), int(n_points), int(n_classes)
        self.dtype = np.dtype(dtype)
        self.seconds_per_batch = float(seconds_per_batch)
        self._batches = 0
        self._seconds = 0.0

    def next_batch(self) -> Batch:
        t0 = time.perf_counter()
        if self.fail_after is not None and self._batches >= self.fail_after:
            raise RuntimeError(f"producer failed after {self._batches} batches")
        if self.seconds_per_batch:
            time.sleep(self.seconds_per_batch)
        labels = self.rng.integers(0, self.n_classes, self.batch_size)
        if self.fresh or self._patterns is None:
            self._patterns = self.rng.random((self.batch_size, self.n_points), dtype=np.float32).astype(self.dtype)
        batch = Batch(
            patterns=self._patterns,
            labels=labels.astype(np.int64),
            space_groups=(labels + 1).astype(np.int16),
            log_volume=self.rng.normal(6.0, 1.0, self.batch_size).astype(np.float32),
        )
        self._batches += 1
        self._seconds += time.perf_counter() - t0
        return batch

    def stats(self) -> dict[str, Any]:
        return {"crystals": self._batches * self.batch_size, "batches": self._batches,
                "seconds": self._seconds, "rejections": {}}


@dataclass
class NoiseProducerFactory:
    """Picklable factory of :class:`NoiseProducer`."""

    batch_size: int
    n_points: int
    n_classes: int
    dtype: str = "float16"
    seconds_per_batch: float = 0.0
    fail_after: int | None = None
    fresh: bool = True

    def __call__(self, seed: np.random.SeedSequence) -> NoiseProducer:
        return NoiseProducer(seed, self.batch_size, self.n_points, self.n_classes, self.dtype, self.seconds_per_batch,
                             self.fail_after, self.fresh)
