"""Structured configs of the stream (``conf/cluster/*.yaml``); the evaluation config is :mod:`evaluation.config`.

Every knob of :mod:`cluster` lives here; the YAML files only set values. Use :func:`to_dataclass`
to turn a Hydra/OmegaConf node (or a plain dict) into the typed dataclass, which rejects unknown
keys and wrong types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from generator.config import as_config, check  # noqa: F401 (check re-exported)

PAYLOADS = ("array", "peaks")  # what a synthetic producer sends (cluster.payload)



@dataclass
class RealSourceConfig:
    """The stream over simulated real structures (baseline: train on the statistics side directly).

    Attributes:
        variants: patterns simulated per structure (independent crystallite sizes / imperfections),
            simulated once and cached; batches are drawn from them in shuffled epochs.
        max_structures: use at most this many structures (None: all), chosen with the root seed.
    """

    variants: int = 2
    max_structures: Optional[int] = None

    def validate(self, prefix: str = "cluster.real") -> "RealSourceConfig":
        """Raise ``ValueError`` naming the key of an impossible value; returns ``self``."""
        check(self.variants >= 1, f"{prefix}.variants", f"must be >= 1, got {self.variants}")
        check(self.max_structures is None or self.max_structures >= 1, f"{prefix}.max_structures",
              f"must be null or >= 1, got {self.max_structures}")
        return self


@dataclass
class ClusterConfig:
    """Where and how the diffractogram stream runs.

    Attributes:
        source: "ray" (generation actors feeding a bounded Ray queue), "local" (the same producer
            code in the trainer's process, for tests and CPU debugging), "process" (producers in local
            worker processes, no Ray) or "real" (simulated statistics-side real structures, the baseline).
        address: Ray address to connect to (None: start a local Ray instance, "auto": the cluster
            this machine belongs to, e.g. after ``ray up``).
        num_cpus: CPUs of a local Ray instance started by the stream (None: all of the machine).
        num_actors: generation actors (None: the CPUs Ray sees minus ``trainer_cpus`` and the
            evaluators' CPUs, at least 1).
        actor_cpus: CPUs reserved per generation actor.
        trainer_cpus: CPUs left to the trainer when ``num_actors`` is derived.
        batch_size: patterns per batch (whole batches cross the queue).
        patterns_per_crystal: patterns simulated per synthetic crystal (independent crystallite
            sizes; the paper's parkCNN used 2), so a batch holds batch_size / this crystals.
        queue_size: batches the queue holds before producers block (backpressure), in all: split
            evenly over the queue shards (at least one each).
        queue_shards: queue actors the batches are spread over (:mod:`cluster.queue`; generation
            actor i puts into shard i mod K, the consumer pulls from all). At most ``num_actors`` are
            made. One actor serves a few hundred calls/s; more shards lift that ceiling where there
            are cores to run them (figures: ``benchmarks/bench_stream.py --payloads``).
        prefetch: batches a consumer's background thread pulls ahead from the queue (0: none), so
            the transfer overlaps with the training step. That many queue gets are in flight (at least
            one per shard), each taking up to ``get_max_items`` queued batches; with more than one get
            in flight on a shard, Ray may serve them in any order, so one actor's batches can arrive
            swapped.
        get_max_items: batches one prefetching queue get takes at most: when the queue is backlogged
            (the trainer is the slower side) one call hands over several, so the consumer pays one
            call per several batches. Besides ``queue_size`` queued batches a consumer then holds up
            to this many per get in flight. Without prefetch a get takes one batch.
        shard_concurrency: calls one queue shard actor serves at once (its producers' blocking puts,
            the consumers' blocking gets, the odd qsize); a threaded actor keeps one thread per call
            in progress, so it must exceed the producers plus gets in flight on one shard, or a call
            waits for a free thread.
        dtype: dtype of the patterns crossing the queue ("float16" halves the payload).
        payload: what synthetic producers send: "array" (rendered (B, N) patterns of ``dtype``) or
            "peaks" (peak lists and per-pattern draws, :class:`cluster.peak_batch.PeakBatch`, rendered
            by the trainer on its device with :mod:`cluster.torch_render`; a few kB per pattern, and
            with ``patterns_per_crystal`` > 1 one peak list serves all of a crystal's patterns).
        get_timeout_s: how long the trainer waits for one batch before ``TimeoutError``.
        poll_s: slice of a blocking wait; actor health is checked between slices.
        put_timeout_s: slice of a producer's blocking put; a stop request is seen between slices.
        max_replacements: dead generation actors replaced before the stream gives up.
        stats_timeout_s: how long ``metrics()`` waits for actors' counters.
        seed: root seed; actor i gets ``SeedSequence(seed).spawn`` child (0, i, incarnation).
        real: options of the "real" source.
    """

    source: str = "ray"
    address: Optional[str] = None
    num_cpus: Optional[int] = None
    num_actors: Optional[int] = None
    actor_cpus: float = 1.0
    trainer_cpus: float = 1.0
    batch_size: int = 145
    patterns_per_crystal: int = 1
    queue_size: int = 16
    queue_shards: int = 2
    prefetch: int = 2
    get_max_items: int = 8
    shard_concurrency: int = 64
    dtype: str = "float16"
    payload: str = "array"
    get_timeout_s: float = 300.0
    poll_s: float = 1.0
    put_timeout_s: float = 1.0
    max_replacements: int = 100
    stats_timeout_s: float = 2.0
    seed: int = 0
    real: RealSourceConfig = field(default_factory=RealSourceConfig)

    def validate(self, prefix: str = "cluster") -> "ClusterConfig":
        """Raise ``ValueError`` naming the key of an impossible value (before Ray or data start); returns ``self``."""
        check(self.source in ("ray", "local", "process", "real"), f"{prefix}.source",
              f"must be one of ray, local, process, real, got {self.source!r}")
        check(self.batch_size > 0, f"{prefix}.batch_size", f"must be > 0, got {self.batch_size}")
        check(self.patterns_per_crystal >= 1, f"{prefix}.patterns_per_crystal",
              f"must be >= 1, got {self.patterns_per_crystal}")
        check(self.patterns_per_crystal <= self.batch_size, f"{prefix}.patterns_per_crystal",
              f"({self.patterns_per_crystal}) must not exceed {prefix}.batch_size ({self.batch_size})")
        check(self.queue_size >= 1, f"{prefix}.queue_size", f"must be >= 1, got {self.queue_size}")
        check(self.queue_shards >= 1, f"{prefix}.queue_shards", f"must be >= 1, got {self.queue_shards}")
        check(self.prefetch >= 0, f"{prefix}.prefetch", f"must be >= 0, got {self.prefetch}")
        check(self.get_max_items >= 1, f"{prefix}.get_max_items", f"must be >= 1, got {self.get_max_items}")
        check(self.shard_concurrency >= 1, f"{prefix}.shard_concurrency",
              f"must be >= 1, got {self.shard_concurrency}")
        check(self.num_actors is None or self.num_actors >= 1, f"{prefix}.num_actors",
              f"must be null (derived from the CPUs) or >= 1, got {self.num_actors}")
        check(self.num_cpus is None or self.num_cpus >= 1, f"{prefix}.num_cpus",
              f"must be null or >= 1, got {self.num_cpus}")
        check(self.actor_cpus > 0, f"{prefix}.actor_cpus", f"must be > 0, got {self.actor_cpus}")
        check(self.trainer_cpus >= 0, f"{prefix}.trainer_cpus", f"must be >= 0, got {self.trainer_cpus}")
        check(self.payload in PAYLOADS, f"{prefix}.payload", f"must be one of {PAYLOADS}, got {self.payload!r}")
        check(self.dtype in ("float16", "float32", "float64", "uint8"), f"{prefix}.dtype",
              f"must be float16, float32, float64 or uint8, got {self.dtype!r}")
        for key in ("get_timeout_s", "poll_s", "put_timeout_s", "stats_timeout_s"):
            check(getattr(self, key) > 0, f"{prefix}.{key}", f"must be > 0, got {getattr(self, key)}")
        check(self.max_replacements >= 0, f"{prefix}.max_replacements",
              f"must be >= 0, got {self.max_replacements}")
        self.real.validate(f"{prefix}.real")
        return self




def to_dataclass(cls: type, cfg: Any):
    """A typed ``cls`` instance from a dataclass, an OmegaConf node or a dict (unknown keys are errors)."""
    return as_config(cls, cfg)
