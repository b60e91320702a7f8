"""The stream's bounded batch queue: K light Ray actors ("shards"), batches passed by object reference.

Why not one ``ray.util.queue.Queue``: every batch costs the queue actor one ``put`` and one ``get``
call, and one actor serves only a few hundred calls per second (it carried ~230 batches/s on a
2-core machine, ~33,000 patterns/s at batches of 145), whatever the payload. Three measures lift
that ceiling (figures: ``benchmarks/bench_stream.py --payloads``):

* by reference: a producer ``ray.put``-s its batch and only a one-element list holding the
  ``ObjectRef`` crosses the queue (a list, so Ray does not resolve the reference on the way). A
  queue call then costs the same for any payload size, and on a multi-node cluster the batch goes
  from the producer's node straight to the consumer's, not through the queue actor's node.
* a light shard actor (:class:`_Shard`: a threaded actor with a deque and a condition, no asyncio
  event loop), whose ``get`` hands over up to ``max_items`` queued batches in one call;
* shards: ``cluster.queue_shards`` such actors; producer ``i`` puts into shard ``i mod K`` and the
  consumer keeps gets in flight on every shard, taking whichever answers first.

Ownership: a ``ray.put`` object belongs to the process that put it, so the batches of a generation
actor that dies are lost with it (its queued references then point to nothing). The consumer skips
such a batch (:meth:`ShardedQueue.resolve` drops it and counts it in ``batches_lost``); the
replacement actor produces new ones. (On one node such a batch often stays readable for about a
second after its owner died, and is then delivered.) ``ShardedQueue(by_ref=False)`` passes the
batches themselves instead, for comparisons.

Memory: besides ``queue_size`` queued batches, a consumer holds up to ``cluster.get_max_items``
batches per get in flight that it has taken but not yet handed to the trainer.

Knobs: ``cluster.shard_concurrency`` (calls one shard serves at once) and ``cluster.get_max_items``
(batches one prefetching get takes) live in :class:`cluster.config.ClusterConfig`; the defaults here
are that dataclass's.

Semantics kept from the single queue: the capacity (``queue_size`` batches in all, split evenly
over the shards) bounds the memory, a full shard blocks its producers (backpressure), and with
one shard and one get in flight batches arrive in the order they were put.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Optional

from cluster.config import ClusterConfig

log = logging.getLogger(__name__)


def _shard_class(max_concurrency: int):
    """The shard actor class serving up to ``max_concurrency`` calls at once (``cluster.shard_concurrency``)."""
    import ray

    @ray.remote(max_concurrency=int(max_concurrency))
    class _Shard:
        """A bounded FIFO of items; ``put`` and ``get`` block (up to a timeout) on a condition."""

        def __init__(self, maxsize: int):
            self.maxsize = int(maxsize)
            self.items: deque = deque()
            self.cond = threading.Condition()

        def put(self, item: Any, timeout: float) -> bool:
            """Append ``item``; False if the shard stayed full for ``timeout`` s (nothing put)."""
            with self.cond:
                if not self.cond.wait_for(lambda: len(self.items) < self.maxsize, timeout):
                    return False
                self.items.append(item)
                self.cond.notify_all()
                return True

        def get(self, timeout: float, max_items: int = 1) -> list:
            """Up to ``max_items`` items, oldest first, once there is one; [] after ``timeout`` s."""
            with self.cond:
                if not self.cond.wait_for(lambda: len(self.items) > 0, timeout):
                    return []
                out = [self.items.popleft() for _ in range(min(max_items, len(self.items)))]
                self.cond.notify_all()
                return out

        def qsize(self) -> int:
            return len(self.items)

    return _Shard


def shard_capacity(queue_size: int, shards: int) -> int:
    """Batches one shard holds: ``queue_size`` split over the shards, at least one each."""
    return max(1, -(-int(queue_size) // int(shards)))


class ShardedQueue:
    """Handles of K queue shards; picklable (Ray actor handles), so consumers in other processes pull too.

    Items are whole batches passed by reference (see the module docstring). ``put``/``get`` are
    the blocking single-item forms for producers and tests; the consumer pipelines with
    ``get_async`` + ``resolve``.
    """

    def __init__(self, shards: list, by_ref: bool = True):
        self.shards = list(shards)
        self.by_ref = bool(by_ref)

    @classmethod
    def create(cls, queue_size: int, n_shards: int, by_ref: bool = True,
               actor_options: dict | None = None, concurrency: Optional[int] = None) -> "ShardedQueue":
        """``n_shards`` shard actors holding ``queue_size`` batches in all, each serving up to
        ``concurrency`` calls at once (None: ``ClusterConfig``'s ``shard_concurrency`` default)."""
        if concurrency is None:
            concurrency = ClusterConfig.shard_concurrency
        if int(concurrency) < 1:
            raise ValueError(f"cluster.shard_concurrency must be >= 1, got {concurrency}")
        cap = shard_capacity(queue_size, n_shards)
        cls_ = _shard_class(concurrency)
        opts = {"num_cpus": 0, "max_restarts": 0, **(actor_options or {})}
        return cls([cls_.options(**opts).remote(cap) for _ in range(n_shards)], by_ref)

    @property
    def actor(self):
        """The first shard's actor (where the queue lives, e.g. to check its node)."""
        return self.shards[0]

    def shard_for(self, producer_index: int):
        """The shard producer ``producer_index`` puts into (round robin)."""
        return self.shards[producer_index % len(self.shards)]

    # -- producer side ---------------------------------------------------------------------------

    def item(self, batch: Any) -> Any:
        """What crosses the queue for ``batch``: a one-element list holding its ``ray.put`` reference
        (owned by the caller), or the batch itself when not by reference. Made once per batch, so a
        put retried on a full shard does not store the batch again."""
        import ray

        return [ray.put(batch)] if self.by_ref else batch

    @staticmethod
    def offer(shard, item: Any, timeout: float) -> bool:
        """Queue an ``item`` in ``shard``, waiting up to ``timeout`` s for room; False if it stayed full."""
        import ray

        return bool(ray.get(shard.put.remote(item, float(timeout))))

    def put(self, shard, batch: Any, timeout: float) -> bool:
        """``offer(shard, item(batch), timeout)``."""
        return self.offer(shard, self.item(batch), timeout)

    # -- consumer side ---------------------------------------------------------------------------

    def get_async(self, shard_index: int, timeout: float, max_items: int = 1):
        """ObjectRef of a list of up to ``max_items`` queued items of one shard ([] on timeout)."""
        return self.shards[shard_index].get.remote(float(timeout), int(max_items))

    def resolve(self, items: list) -> tuple[list, int]:
        """The batches behind a shard's answer, and how many were lost with their producer (skipped)."""
        import ray
        from ray.exceptions import ObjectLostError, OwnerDiedError, ReferenceCountingAssertionError

        if not self.by_ref:
            return items, 0
        refs = [item[0] for item in items]
        try:
            return ray.get(refs), 0
        except (ObjectLostError, OwnerDiedError, ReferenceCountingAssertionError):
            pass
        out, lost = [], 0
        for ref in refs:   # one by one: keep the batches that are still there
            try:
                out.append(ray.get(ref))
            except (ObjectLostError, OwnerDiedError, ReferenceCountingAssertionError) as exc:
                lost += 1
                log.warning("a queued batch was lost with its generation actor; skipped (%s)", type(exc).__name__)
        return out, lost

    def qsize(self, timeout: float | None = None) -> int | None:
        """Batches queued in all shards; None if they did not all answer within ``timeout`` s."""
        import ray
        from ray.exceptions import GetTimeoutError

        try:
            return int(sum(ray.get([s.qsize.remote() for s in self.shards], timeout=timeout)))
        except GetTimeoutError:
            return None

    def shutdown(self) -> None:
        import ray

        for s in self.shards:
            try:
                ray.kill(s, no_restart=True)
            except Exception:
                pass


class Puller:
    """The consumer's end: gets in flight on every shard, batches handed out in the order they come.

    ``in_flight`` gets in all (at least one per shard), each taking up to ``max_items`` batches.
    With one shard and one get in flight, batches come in the order they were put; with several
    gets in flight on one shard the shard's threads may serve them in any order.
    """

    def __init__(self, queue: ShardedQueue, in_flight: int, max_items: int, poll_s: float):
        k = len(queue.shards)
        self.queue = queue
        self.per_shard = max(1, -(-int(in_flight) // k))
        self.max_items = max(1, int(max_items))
        self.poll_s = float(poll_s)
        self.pending: dict[Any, int] = {}
        self.counts = [0] * k
        self.ready: deque = deque()
        self.lost = 0

    def _top_up(self) -> None:
        for i, n in enumerate(self.counts):
            for _ in range(self.per_shard - n):
                self.pending[self.queue.get_async(i, self.poll_s, self.max_items)] = i
                self.counts[i] += 1

    def next(self, timeout: float) -> Any | None:
        """The next batch, or None if none arrived within ``timeout`` s."""
        import ray

        if self.ready:
            return self.ready.popleft()
        self._top_up()
        done, _ = ray.wait(list(self.pending), num_returns=1, timeout=max(float(timeout), 0.0))
        for ref in done:
            self.counts[self.pending.pop(ref)] -= 1
            batches, lost = self.queue.resolve(ray.get(ref))
            self.lost += lost
            self.ready.extend(batches)
        self._top_up()
        return self.ready.popleft() if self.ready else None

    def cancel(self) -> None:
        """Drop the gets in flight (an answer that still comes is not taken)."""
        import ray

        for ref in self.pending:
            try:
                ray.cancel(ref)
            except Exception:
                pass
        self.pending.clear()
        self.counts = [0] * len(self.counts)
