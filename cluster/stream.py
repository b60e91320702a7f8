"""The Ray stream: generation actors feeding a bounded queue, and the consumer the trainer pulls from.

``RayStream``: generation actors, each owning a producer (a ``CrystalSampler`` and a
``PatternSimulator``), put whole :class:`~cluster.batch.Batch` objects into a bounded queue of
``cluster.queue_shards`` shard actors (:mod:`cluster.queue`: batches cross it by object
reference; actor i puts into shard i mod K). A full shard blocks its producers (backpressure). A
dead actor is replaced by a fresh one with a new seed from the same tree (its batches still queued
are lost with it and skipped), and ``get`` raises ``TimeoutError`` with a diagnosis instead of hanging.

The consumer's end (prefetching, timeouts, the picklable :class:`~cluster.consumer.QueueConsumer`
that ``RayStream`` extends) is :mod:`cluster.consumer`; the generation actor class and
:func:`~cluster.generation_actors.resolve_num_actors` are :mod:`cluster.generation_actors`. Their
names are importable from here too.

The other sources (in-process, fixed arrays) and ``make_source`` are in :mod:`cluster.sources`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from cluster.batch import Batch
from cluster.config import ClusterConfig, to_dataclass
from cluster.connect import init_ray
# _WaitClock: re-exported for the in-process sources (cluster.sources), which keep the same wait clock
from cluster.consumer import QueueConsumer, _WaitClock, failure_reason  # noqa: F401
from cluster.generation_actors import ActorSlot, generation_actor_class, resolve_num_actors
from cluster.producer import ProducerFactory
from cluster.queue import ShardedQueue
from generator.seeding import GENERATION, seed_for

log = logging.getLogger(__name__)


class RayStream(QueueConsumer):
    """Generation actors feeding a bounded sharded queue; see the module docstring."""

    def __init__(self, factory: ProducerFactory, cfg: ClusterConfig | Any = None, *, reserved_cpus: float = 0.0):
        import ray

        cfg = to_dataclass(ClusterConfig, cfg).validate()  # an impossible value names its key before Ray starts
        self.cfg = cfg
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if cfg.address is None and cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
            init_ray(cfg.address, **kwargs)
            self._owns_ray = True
        try:  # more actors than Ray can place fail here, before anything waits on them
            self.num_actors = resolve_num_actors(cfg, reserved_cpus)
        except ValueError:
            if self._owns_ray:
                ray.shutdown()
            raise
        self.factory = factory
        self._factory_ref = ray.put(factory)      # owned by the driver: survives any actor
        # the queue shards live on the driver's node: losing a generation node never loses the queue;
        # a shard without a producer would only cost gets, so there are at most num_actors of them
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        queue = ShardedQueue.create(cfg.queue_size, min(cfg.queue_shards, self.num_actors),
                                    actor_options={"scheduling_strategy": here},
                                    concurrency=cfg.shard_concurrency)
        super().__init__(queue, cfg.poll_s, cfg.prefetch, cfg.get_max_items)
        self._actor_cls = generation_actor_class()
        self.replacements = 0
        self.deaths: list[str] = []
        self._dead_stats: list[dict] = []
        self._closed = False
        self._last_health = 0.0
        self._health_lock = threading.Lock()
        self._watchdog: threading.Thread | None = None
        self._stop_watchdog = threading.Event()
        self.slots = [self._spawn(i, 0) for i in range(self.num_actors)]
        log.info("stream: %d generation actors, queue of %d batches in %d shards", self.num_actors,
                 cfg.queue_size, len(queue.shards))

    # -- actors --------------------------------------------------------------------------------

    def _spawn(self, index: int, incarnation: int) -> ActorSlot:
        actor = self._actor_cls.options(num_cpus=self.cfg.actor_cpus, max_restarts=0).remote(
            self._factory_ref, seed_for(self.cfg.seed, GENERATION, index, incarnation), self.queue,
            self.queue.shard_for(index), self.cfg.put_timeout_s)
        return ActorSlot(index, incarnation, actor, actor.run.remote())

    def check_actors(self) -> int:
        """Replace generation actors whose ``run`` ended (death or error); returns how many were replaced."""
        with self._health_lock:
            return self._check_actors()

    def _check_actors(self) -> int:
        import ray

        if self._closed:
            return 0
        refs = [s.run_ref for s in self.slots]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        replaced = 0
        for ref in done:
            slot = next(s for s in self.slots if s.run_ref == ref)
            try:
                ray.get(ref)
                reason = "run ended"
            except Exception as exc:  # RayActorError, an exception raised by the producer, ...
                reason = failure_reason(exc)
            self.deaths.append(f"actor {slot.index}.{slot.incarnation}: {reason}")
            if slot.last_stats:
                self._dead_stats.append(slot.last_stats)
            if self.replacements >= self.cfg.max_replacements:
                raise RuntimeError(f"generation actors died {len(self.deaths)} times, more than "
                                   f"max_replacements={self.cfg.max_replacements}; last: {self.deaths[-1]}")
            log.warning("generation actor %d.%d ended (%s); replacing it", slot.index, slot.incarnation, reason)
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
            self.slots[self.slots.index(slot)] = self._spawn(slot.index, slot.incarnation + 1)
            self.replacements += 1
            replaced += 1
        self._last_health = time.monotonic()
        return replaced

    def start_watchdog(self, interval_s: float | None = None) -> None:
        """Check (and replace) the generation actors every ``interval_s`` seconds (default 10 x
        ``poll_s``) in a background thread: for runs whose batches are pulled by other processes
        (``consumer()``), where no ``get`` here would notice a dead actor. Stopped by ``close``."""
        if self._watchdog is not None:
            return
        interval = 10 * self.poll_s if interval_s is None else float(interval_s)

        def watch():
            while not self._stop_watchdog.wait(interval):
                try:
                    self.check_actors()
                except Exception as exc:  # too many deaths: the consumers' timeouts report it
                    log.error("generation actor watchdog stopped: %s", exc)
                    return

        self._watchdog = threading.Thread(target=watch, name="generation-watchdog", daemon=True)
        self._watchdog.start()

    def _on_empty(self) -> None:
        self.check_actors()

    def _diagnosis(self) -> str:
        import ray

        msg = (f"{len(self.slots)} generation actors, {self.replacements} replaced, queue length "
               f"{self.queue.qsize(self.cfg.stats_timeout_s)}, CPUs free/total {ray.available_resources().get('CPU', 0)}/"
               f"{ray.cluster_resources().get('CPU', 0)} ({self.cfg.actor_cpus} per actor). The producers are "
               f"slower than the timeout, cannot be scheduled, or keep dying")
        if self.deaths:
            msg += f"; last death: {self.deaths[-1]}"
        return msg

    def get(self, timeout: float | None = None) -> Batch:
        if self._closed:
            raise RuntimeError("the stream is closed")
        if time.monotonic() - self._last_health > 10 * self.poll_s:
            self.check_actors()
        return super().get(self.cfg.get_timeout_s if timeout is None else timeout)

    def consumer(self) -> QueueConsumer:
        """A picklable handle for consumers in other processes."""
        return QueueConsumer(self.queue, self.poll_s, self.prefetch, self.get_max_items)

    # -- metrics -------------------------------------------------------------------------------

    def actor_stats(self, timeout: float | None = None) -> list[dict]:
        """Each live actor's counters (the last known ones for an actor that does not answer in time)."""
        import ray

        refs = [s.actor.stats.remote() for s in self.slots]
        ray.wait(refs, num_returns=len(refs), timeout=self.cfg.stats_timeout_s if timeout is None else timeout)
        out = []
        for slot, ref in zip(self.slots, refs):
            try:
                slot.last_stats = ray.get(ref, timeout=0)
            except Exception:
                pass
            if slot.last_stats:
                out.append(slot.last_stats)
        return out

    def metrics(self) -> dict[str, float]:
        stats = self.actor_stats() + self._dead_stats
        elapsed = max(time.monotonic() - self._clock.started, 1e-9)
        crystals = sum(s["crystals"] for s in stats)
        busy = sum(s["seconds"] for s in stats)
        rejections: Counter = Counter()
        for s in stats:
            rejections.update(s.get("rejections", {}))
        out = {
            "queue_length": float(self.queue.qsize()),
            "queue_shards": float(len(self.queue.shards)),
            "batches_lost": float(self._puller.lost),
            "prefetched": float(self._local.qsize() if self._local is not None else 0),
            "actors_alive": float(len(self.slots)),
            "replacements": float(self.replacements),
            "crystals": float(crystals),
            "crystals_per_s": crystals / elapsed,
            "crystals_per_actor_s": crystals / busy if busy > 0 else 0.0,
            "producer_blocked_s": float(sum(s.get("put_blocked_s", 0.0) for s in stats)),
            **self._clock.metrics(),
        }
        out.update({f"rejections/{k}": float(v) for k, v in rejections.items()})
        return out

    # -- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        import ray

        if self._closed:
            return
        self._stop_watchdog.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=30.0)
        self._closed = True
        self._stop_prefetch()
        if not ray.is_initialized():
            return
        for s in self.slots:
            try:
                s.actor.stop.remote()
            except Exception:
                pass
        ray.wait([s.run_ref for s in self.slots], num_returns=len(self.slots),
                 timeout=self.cfg.put_timeout_s + 2.0)
        for s in self.slots:
            try:
                ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self.queue.shutdown()
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
