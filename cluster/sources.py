"""Every batch source the trainer can pull from, and the one registry that builds them by name.

``LocalStream``: the producer code of the Ray stream in the calling process (slot 0, incarnation 0:
its batches equal those of actor 0 of a one-actor :class:`cluster.stream.RayStream` with the same seed).

``ArraySource``: shuffled epochs over a fixed set of simulated patterns (the baseline trained on
statistics-side real structures).

``make_source(cfg, statistics, ...)`` builds the one that ``cluster.source`` names ("ray", "local",
"process" (local worker processes, no Ray: ``cluster.process_stream``), "real"; more with
:func:`register_source`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.batch import Batch
from cluster.config import ClusterConfig, to_dataclass
from cluster.producer import PAYLOADS, ProducerFactory, SyntheticProducerFactory
from generator.seeding import GENERATION, REAL_SOURCE, seed_for
from cluster.stream import RayStream, _WaitClock

log = logging.getLogger(__name__)


class LocalStream:
    """The producer of generation slot 0 running synchronously in the calling process."""

    def __init__(self, factory: ProducerFactory, seed: int = 0):
        self.producer = factory(seed_for(seed, GENERATION, 0, 0))
        self._clock = _WaitClock()

    def get(self, timeout: float | None = None) -> Batch:
        """The next batch, built now in this process (``timeout`` is not needed: nothing is waited for)."""
        t0 = time.perf_counter()
        batch = self.producer.next_batch()
        self._clock.add(time.perf_counter() - t0)
        return batch

    def metrics(self) -> dict[str, float]:
        stats = self.producer.stats()
        elapsed = max(time.monotonic() - self._clock.started, 1e-9)
        out = {"queue_length": 0.0, "actors_alive": 1.0, "replacements": 0.0,
               "crystals": float(stats["crystals"]), "crystals_per_s": stats["crystals"] / elapsed,
               **self._clock.metrics()}
        out.update({f"rejections/{k}": float(v) for k, v in stats.get("rejections", {}).items()})
        return out

    def close(self) -> None:
        pass


class ArraySource:
    """Endless shuffled epochs over fixed arrays of patterns (e.g. simulated real structures)."""

    def __init__(self, patterns: np.ndarray, labels: np.ndarray, space_groups: np.ndarray, log_volume: np.ndarray,
                 batch_size: int, seed: int = 0):
        if len(patterns) < 1:
            raise ValueError("ArraySource needs at least one pattern")
        self.patterns, self.labels = patterns, np.asarray(labels, np.int64)
        self.space_groups, self.log_volume = np.asarray(space_groups, np.int16), np.asarray(log_volume, np.float32)
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed_for(seed, REAL_SOURCE, 0))
        self._order = np.empty(0, np.int64)
        self.epochs = 0
        self._clock = _WaitClock()

    def get(self, timeout: float | None = None) -> Batch:
        t0 = time.perf_counter()
        while len(self._order) < self.batch_size:
            self._order = np.concatenate([self._order, self.rng.permutation(len(self.labels))])
            self.epochs += 1
        idx, self._order = self._order[: self.batch_size], self._order[self.batch_size:]
        batch = Batch(self.patterns[idx], self.labels[idx], self.space_groups[idx], self.log_volume[idx])
        self._clock.add(time.perf_counter() - t0)
        return batch

    def metrics(self) -> dict[str, float]:
        return {"queue_length": 0.0, "epochs": float(self.epochs), "patterns_in_set": float(len(self.labels)),
                **self._clock.metrics()}

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Ray


@dataclass(frozen=True)
class SourceInputs:
    """What :func:`make_source` was given besides ``cfg`` and ``statistics`` (see its arguments)."""

    generator_cfg: Any = None
    simulation_cfg: Any = None
    prepared: Any = None
    reserved_cpus: float = 0.0
    factory: ProducerFactory | None = None
    cache_dir: str | None = None
    shuffle_seed: int | None = None


# ``cluster.source`` name -> builder (cfg: ClusterConfig, statistics, inputs: SourceInputs) -> batch source.
_SOURCES: dict[str, Callable[[ClusterConfig, Any, SourceInputs], Any]] = {}


def register_source(name: str):
    """Decorator registering a batch-source builder under the ``cluster.source`` value ``name``."""

    def register(builder):
        if name in _SOURCES:
            raise ValueError(f"cluster.source {name!r} is registered twice")
        _SOURCES[name] = builder
        return builder

    return register


def _producer_factory(cfg: ClusterConfig, statistics, inputs: SourceInputs) -> ProducerFactory:
    """The given factory, else the zone-axis one for a ``kind: zone_axis`` representation, else the synthetic one."""
    from cluster.zone_axis_producer import ZoneAxisProducerFactory, is_zone_axis

    if inputs.factory is not None:
        return inputs.factory
    if is_zone_axis(inputs.simulation_cfg):
        return ZoneAxisProducerFactory(statistics, inputs.generator_cfg, inputs.simulation_cfg, cfg.batch_size,
                                       cfg.dtype)
    return SyntheticProducerFactory(statistics, inputs.generator_cfg, inputs.simulation_cfg, cfg.batch_size,
                                    cfg.dtype, cfg.patterns_per_crystal, cfg.payload)


@register_source("ray")
def _ray_source(cfg: ClusterConfig, statistics, inputs: SourceInputs) -> RayStream:
    return RayStream(_producer_factory(cfg, statistics, inputs), cfg, reserved_cpus=inputs.reserved_cpus)


@register_source("local")
def _local_source(cfg: ClusterConfig, statistics, inputs: SourceInputs) -> LocalStream:
    return LocalStream(_producer_factory(cfg, statistics, inputs), cfg.seed)


@register_source("process")
def _process_source(cfg: ClusterConfig, statistics, inputs: SourceInputs):
    from cluster.process_stream import ProcessStream

    return ProcessStream(_producer_factory(cfg, statistics, inputs), cfg, reserved_cpus=inputs.reserved_cpus)


@register_source("real")
def _real_source(cfg: ClusterConfig, statistics, inputs: SourceInputs) -> ArraySource:
    if inputs.prepared is None:
        raise ValueError("cluster.source=real needs the prepared database and split")
    from cluster.real_source import real_training_arrays

    cache_dir = inputs.cache_dir
    if cache_dir is None:
        from generator.config import default_cache_dir

        cache_dir = default_cache_dir() / "train_patterns"
    arrays = real_training_arrays(inputs.prepared, statistics, inputs.simulation_cfg, cfg, cache_dir=cache_dir)
    seed = cfg.seed if inputs.shuffle_seed is None else inputs.shuffle_seed
    return ArraySource(*arrays, batch_size=cfg.batch_size, seed=seed)


def make_source(cfg: ClusterConfig | Any, statistics, *, generator_cfg=None, simulation_cfg=None, prepared=None,
                reserved_cpus: float = 0.0, factory: ProducerFactory | None = None, cache_dir: str | None = None,
                shuffle_seed: int | None = None):
    """The batch source that ``cfg.source`` names (one of the builders registered with :func:`register_source`).

    Args:
        cfg: ``conf/cluster`` node (or :class:`ClusterConfig`).
        statistics: ``generator.Statistics`` (its ``space_groups`` is the class order).
        generator_cfg: ``GeneratorConfig`` of the crystal sampler ("ray"/"local").
        simulation_cfg: ``simulator.SimulationConfig``, or a ``simulator.zone_axis.ZoneAxisConfig`` (any
            config whose ``kind`` is "zone_axis") for (B, 3, H, W) zone-axis image batches.
        prepared: ``generator.pipeline.PreparedData`` ("real": its statistics-side structures).
        reserved_cpus: CPUs the evaluators take, left out when the number of actors is derived.
        factory: a producer factory replacing the synthetic one ("ray"/"local").
        cache_dir: where simulated real patterns are cached ("real"; None: ``train_patterns`` in the
            project cache, $CRYSTALSTREAM_CACHE or ~/.cache/crystalstream).
        shuffle_seed: seed of the order of the "real" patterns (None: ``cfg.seed``, which also seeds
            their simulation and the choice of ``real.max_structures``).
    """
    cfg = to_dataclass(ClusterConfig, cfg)
    if cfg.payload not in PAYLOADS:
        raise ValueError(f"cluster.payload must be one of {PAYLOADS}, got {cfg.payload!r}")
    builder = _SOURCES.get(cfg.source)
    if builder is None:
        raise ValueError(f"unknown cluster.source {cfg.source!r} ({', '.join(_SOURCES)})")
    inputs = SourceInputs(generator_cfg, simulation_cfg, prepared, reserved_cpus, factory, cache_dir, shuffle_seed)
    return builder(cfg, statistics, inputs)
