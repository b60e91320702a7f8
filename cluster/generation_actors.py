"""The generation actors of the Ray stream: the actor class around one producer, its slot, and how many fit.

Each actor owns one producer (:mod:`cluster.producer`) and loops putting its batches into its queue
shard (:mod:`cluster.queue`) until stopped; :class:`cluster.stream.RayStream` spawns, watches and
replaces them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from cluster.config import ClusterConfig


def generation_actor_class():
    """The Ray actor class of a generation actor (defined on first use: ``ray`` is imported lazily)."""
    import ray

    # Not a tuning knob: ``run`` loops for the actor's whole life, so the actor needs one more thread for
    # the stream's ``stats``/``getpid``/``node_id`` calls and one for ``stop`` while a stats call is pending.
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
class ActorSlot:
    """Generation actor ``index`` in its ``incarnation``-th life (0: the first; a replacement counts up),
    its ``run`` call, and the counters it last reported."""

    index: int
    incarnation: int
    actor: Any
    run_ref: Any
    last_stats: dict | None = None


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
