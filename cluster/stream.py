"""The Ray stream: generation actors feeding a bounded queue, and the consumer the trainer pulls from.

``RayStream``: generation actors, each owning a producer (a ``CrystalSampler`` and a
``PatternSimulator``), put whole :class:`~cluster.batch.Batch` objects into a bounded queue of
``cluster.queue_shards`` shard actors (:mod:`cluster.queue`: batches cross it by object
reference; actor i puts into shard i mod K). A full shard blocks its producers (backpressure). A
dead actor is replaced by a fresh one with a new seed from the same tree (its batches still queued
are lost with it and skipped), and ``get`` raises ``TimeoutError`` with a diagnosis instead of hanging.

Transport: a consumer with ``prefetch`` > 0 keeps ``prefetch`` queue gets in flight (at least one
per shard), each taking up to ``cluster.get_max_items`` queued batches, so the latency of one
call to a shard overlaps the others' and a backlog crosses in few calls.

The other sources (in-process, fixed arrays) and ``make_source`` are in :mod:`cluster.sources`.
"""
from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.batch import Batch
from cluster.config import ClusterConfig, to_dataclass
from cluster.connect import init_ray
from cluster.producer import ProducerFactory
from cluster.queue import Puller, ShardedQueue
from generator.seeding import GENERATION, seed_for

log = logging.getLogger(__name__)


def _writable(batch: Batch) -> Batch:
    """Arrays deserialised from Ray's object store are read-only views; give the trainer its own copy."""
    if not hasattr(batch, "patterns"):  # a PeakBatch: only read by its renderer
        return batch
    if not batch.patterns.flags.writeable:
        batch = Batch(np.array(batch.patterns), np.array(batch.labels), np.array(batch.space_groups),
                      np.array(batch.log_volume))
    return batch


class _WaitClock:
    """Trainer-side wait times of the last ``window`` gets."""

    def __init__(self, window: int = 100):
        self.waits: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0
        self.started = time.monotonic()

    def add(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.total += seconds
        self.count += 1

    def metrics(self) -> dict[str, float]:
        return {
            "batches_delivered": float(self.count),
            "wait_s_last": float(self.waits[-1]) if self.waits else 0.0,
            "wait_s_mean": float(np.mean(self.waits)) if self.waits else 0.0,
            "wait_s_total": float(self.total),
        }


# --------------------------------------------------------------------------------------------
# In-process


def _generation_actor_class():
    import ray

    @ray.remote(max_concurrency=3)
    class GenerationActor:
        """Owns one producer; ``run`` loops put-ing batches until ``stop`` (threaded actor)."""

        def __init__(self, factory, seed, out_queue, shard, put_timeout_s: float):
            import os

            self.pid = os.getpid()
            self.producer = factory(seed)
            self.queue, self.shard = out_queue, shard
            self.put_timeout_s = float(put_timeout_s)
            self._stop = threading.Event()
            self.put_blocked_s = 0.0
            self.put_batches = 0
            self._blocked_since = None

        def run(self) -> int:
            while not self._stop.is_set():
                item = self.queue.item(self.producer.next_batch())
                t0 = self._blocked_since = time.perf_counter()
                while not self._stop.is_set():
                    if self.queue.offer(self.shard, item, self.put_timeout_s):
                        self.put_batches += 1
                        break
                self._blocked_since = None
                self.put_blocked_s += time.perf_counter() - t0
            return self.put_batches

        def stats(self) -> dict:
            since = self._blocked_since
            blocked = self.put_blocked_s + (time.perf_counter() - since if since is not None else 0.0)
            return {**self.producer.stats(), "put_batches": self.put_batches, "put_blocked_s": blocked,
                    "pid": self.pid}

        def getpid(self) -> int:
            return self.pid

        def node_id(self) -> str:
            import ray

            return ray.get_runtime_context().get_node_id()

        def stop(self) -> None:
            self._stop.set()

    return GenerationActor


@dataclass
class _Slot:
    index: int
    incarnation: int
    actor: Any
    run_ref: Any
    last_stats: dict | None = None


class QueueConsumer:
    """A picklable view of a stream's queue, for consumers in other processes (e.g. Ray Train workers).

    With ``prefetch`` > 0 a background thread keeps up to that many batches in the consumer's
    process, so the transfer from the queue shards overlaps with training; each of its gets takes up
    to ``get_max_items`` queued batches (None: ``ClusterConfig``'s default). Only ``get`` pulls;
    producers, health checks and replacement stay with the owning ``RayStream``.
    """

    def __init__(self, queue: ShardedQueue, poll_s: float = 1.0, prefetch: int = 2,
                 get_max_items: int | None = None):
        self.queue = queue
        self.poll_s = float(poll_s)
        self.prefetch = int(prefetch)
        self.get_max_items = int(ClusterConfig.get_max_items if get_max_items is None else get_max_items)
        if self.get_max_items < 1:
            raise ValueError(f"cluster.get_max_items must be >= 1, got {self.get_max_items}")
        self._clock = _WaitClock()
        # prefetch 0: one get in flight per shard, one batch at a time, pulled by ``get`` itself
        self._puller = Puller(queue, self.prefetch, self.get_max_items if self.prefetch > 0 else 1, self.poll_s)
        self._local: stdqueue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop_pull = threading.Event()
        self._pull_error: BaseException | None = None

    def __getstate__(self):
        return {"queue": self.queue, "poll_s": self.poll_s, "prefetch": self.prefetch,
                "get_max_items": self.get_max_items}

    def __setstate__(self, state):
        QueueConsumer.__init__(self, state["queue"], state["poll_s"], state.get("prefetch", 2),
                               state.get("get_max_items"))

    def _pull(self) -> None:
        # Several gets in flight (the shards serve them concurrently): one round trip's latency
        # overlaps the others' instead of adding up, which bounded one queue at ~100 gets/s.
        while not self._stop_pull.is_set():
            try:
                batch = self._puller.next(self.poll_s)
                if batch is None:
                    continue
            except BaseException as exc:  # a queue shard is gone, Ray shut down, ...
                if not self._stop_pull.is_set():
                    self._pull_error = exc
                return
            batch = _writable(batch)
            while not self._stop_pull.is_set():
                try:
                    self._local.put(batch, timeout=self.poll_s)
                    break
                except stdqueue.Full:
                    continue

    def _get_once(self, timeout: float) -> Batch | None:
        if self.prefetch <= 0:
            batch = self._puller.next(max(timeout, 1e-3))
            return None if batch is None else _writable(batch)
        if self._thread is None:
            self._local = stdqueue.Queue(maxsize=self.prefetch)
            self._thread = threading.Thread(target=self._pull, name="batch-prefetch", daemon=True)
            self._thread.start()
        try:
            return self._local.get(timeout=max(timeout, 1e-3))
        except stdqueue.Empty:
            if self._pull_error is not None:
                raise RuntimeError(f"the batch queue failed: {_reason(self._pull_error)}") from self._pull_error
            return None

    def _on_empty(self) -> None:
        pass

    def _diagnosis(self) -> str:
        return "the owning stream checks the producers"

    def get(self, timeout: float) -> Batch:
        t0 = time.perf_counter()
        deadline = time.monotonic() + float(timeout)
        while True:
            remaining = deadline - time.monotonic()
            batch = self._get_once(min(self.poll_s, max(remaining, 0.0)))
            if batch is not None:
                self._clock.add(time.perf_counter() - t0)
                return batch
            self._on_empty()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no batch arrived within {timeout:.1f} s; {self._diagnosis()}")

    def metrics(self) -> dict[str, float]:
        local = self._local.qsize() if self._local is not None else 0
        return {"queue_length": float(self.queue.qsize()), "prefetched": float(local),
                "batches_lost": float(self._puller.lost), **self._clock.metrics()}

    def _stop_prefetch(self) -> None:
        self._stop_pull.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 5.0)
        self._puller.cancel()

    def close(self) -> None:
        self._stop_prefetch()


class RayStream(QueueConsumer):
    """Generation actors feeding a bounded sharded queue; see the module docstring."""

    def __init__(self, factory: ProducerFactory, cfg: ClusterConfig | Any = None, *, reserved_cpus: float = 0.0):
        import ray

        cfg = to_dataclass(ClusterConfig, cfg)
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
        self._actor_cls = _generation_actor_class()
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

    def _spawn(self, index: int, incarnation: int) -> _Slot:
        actor = self._actor_cls.options(num_cpus=self.cfg.actor_cpus, max_restarts=0).remote(
            self._factory_ref, seed_for(self.cfg.seed, GENERATION, index, incarnation), self.queue,
            self.queue.shard_for(index), self.cfg.put_timeout_s)
        return _Slot(index, incarnation, actor, actor.run.remote())

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
                reason = _reason(exc)
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


def _reason(exc: BaseException) -> str:
    """One line saying why a remote call failed (the producer's own exception where there is one)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"


def resolve_num_actors(cfg: ClusterConfig, reserved_cpus: float = 0.0) -> int:
    """``cfg.num_actors``, or the CPUs Ray sees minus the trainer's and ``reserved_cpus`` (at least 1).

    An explicit ``cfg.num_actors`` whose CPUs (``actor_cpus`` each) do not fit in Ray's CPUs minus
    ``reserved_cpus`` (the evaluators' and extra training workers', placed later) raises a
    ``ValueError`` at once: Ray would otherwise leave the surplus actors pending and the trainer
    would wait for batches until ``get_timeout_s``.
    """
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    if cfg.num_actors is not None:
        if cfg.num_actors < 1:
            raise ValueError(f"cluster.num_actors must be >= 1, got {cfg.num_actors}")
        need = cfg.num_actors * cfg.actor_cpus
        room = cpus - reserved_cpus
        if need > room + 1e-9:
            raise ValueError(
                f"cluster.num_actors={cfg.num_actors} generation actors need {need:g} CPUs "
                f"(cluster.actor_cpus={cfg.actor_cpus:g} each) but Ray has {cpus:g} CPUs, {reserved_cpus:g} of them "
                f"kept for evaluators / training workers, so at most {max(0, int(room // cfg.actor_cpus))} fit. "
                f"Lower cluster.num_actors or cluster.actor_cpus, set cluster.num_actors=null to derive it, "
                f"or give Ray more CPUs (cluster.num_cpus, more nodes).")
        return int(cfg.num_actors)
    return max(1, int((cpus - cfg.trainer_cpus - reserved_cpus) // max(cfg.actor_cpus, 1e-9)))


# --------------------------------------------------------------------------------------------
# Factory
