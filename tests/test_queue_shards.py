"""The sharded batch queue (cluster.queue): delivery once and in order, backpressure, lost batches skipped."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from cluster.config import ClusterConfig
from cluster.producer import NoiseProducerFactory
from cluster.queue import Puller, ShardedQueue, shard_capacity
from generator.seeding import GENERATION, seed_for

ray = pytest.importorskip("ray")


def _cfg(**kw) -> ClusterConfig:
    base = dict(num_actors=2, queue_shards=2, batch_size=4, queue_size=4, poll_s=0.2, put_timeout_s=0.2,
                get_timeout_s=20.0, seed=3, actor_cpus=1.0)
    base.update(kw)
    return ClusterConfig(**base)


def test_shard_capacity_splits_the_queue_size():
    assert shard_capacity(16, 1) == 16 and shard_capacity(16, 2) == 8 and shard_capacity(5, 2) == 3
    assert shard_capacity(1, 4) == 1
    with pytest.raises(ValueError, match="cluster.queue_shards"):
        ClusterConfig(queue_shards=0).validate()


def test_two_shards_deliver_every_batch_once_in_producer_order(ray_local):
    """Two actors on two shards, one get in flight per shard: each pulled batch is the next one of
    actor 0 or actor 1 (a duplicate, a loss or a swap would not match)."""
    from cluster.stream import RayStream

    f = NoiseProducerFactory(batch_size=4, n_points=8, n_classes=3)
    expected = [f(seed_for(3, GENERATION, i, 0)) for i in range(2)]
    upcoming = [p.next_batch() for p in expected]
    taken = [0, 0]
    with RayStream(f, _cfg(prefetch=1)) as stream:
        assert len(stream.queue.shards) == 2
        deadline = time.monotonic() + 60      # both actors started (one may take seconds longer)
        while min(ray.get([s.qsize.remote() for s in stream.queue.shards])) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(24):
            b = stream.get(20.0)
            hits = [i for i in range(2) if np.array_equal(b.patterns, upcoming[i].patterns)
                    and np.array_equal(b.labels, upcoming[i].labels)]
            assert len(hits) == 1, f"batch {sum(taken)} is not the next one of either actor (taken {taken})"
            taken[hits[0]] += 1
            upcoming[hits[0]] = expected[hits[0]].next_batch()
        assert stream.metrics()["batches_lost"] == 0
    assert min(taken) > 0, f"one shard was never read: {taken}"


def test_backpressure_blocks_when_every_shard_is_full(ray_local):
    from cluster.stream import RayStream

    f = NoiseProducerFactory(batch_size=4, n_points=8, n_classes=3)
    with RayStream(f, _cfg(queue_size=4)) as stream:
        deadline = time.monotonic() + 30
        while stream.queue.qsize() < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)                 # fast producers had time to overrun the shards
        sizes = ray.get([s.qsize.remote() for s in stream.queue.shards])
        assert sizes == [2, 2]
        for stats in stream.actor_stats():
            # two batches in its shard, at most one more in hand: each producer is blocked
            assert stats["batches"] <= 3 and stats["put_blocked_s"] > 0.5
        for _ in range(6):
            stream.get(10.0)
        m = stream.metrics()
        assert m["batches_delivered"] == 6 and m["queue_length"] <= 4 and m["queue_shards"] == 2


def test_shards_are_no_more_than_the_actors(ray_local):
    from cluster.stream import RayStream

    f = NoiseProducerFactory(batch_size=4, n_points=8, n_classes=3)
    with RayStream(f, _cfg(num_actors=1, queue_shards=4, queue_size=3)) as stream:
        assert len(stream.queue.shards) == 1
        assert len(stream.get(20.0)) == 4


@ray.remote(num_cpus=0)
class _Putter:
    """Owns the batches it queues (``ray.put`` in its process), like a generation actor."""

    def getpid(self) -> int:
        return os.getpid()

    def put(self, queue: ShardedQueue, value: float, timeout: float = 1.0) -> bool:
        return queue.put(queue.shards[0], np.full(200_000, value), timeout)   # 1.6 MB: in the object store


def test_batches_lost_with_their_producer_are_skipped(ray_local):
    """The queued batches of a killed producer are skipped and counted once Ray knows they are gone
    (about a second on one node), never raised; a full shard refuses a put after its timeout."""
    queue = ShardedQueue.create(queue_size=2, n_shards=1)
    try:
        putter = _Putter.remote()
        assert ray.get(putter.put.remote(queue, 1.0)) and ray.get(putter.put.remote(queue, 2.0))
        t0 = time.monotonic()
        assert not ray.get(putter.put.remote(queue, 3.0, 0.5))          # full: backpressure
        assert time.monotonic() - t0 >= 0.5
        os.kill(ray.get(putter.getpid.remote()), signal.SIGKILL)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(putter.getpid.remote(), timeout=30)
        time.sleep(5.0)                                                 # the object store lets go of them
        puller = Puller(queue, in_flight=1, max_items=2, poll_s=0.2)
        assert puller.next(2.0) is None and puller.lost == 2
        other = _Putter.remote()                                        # the queue goes on working
        assert ray.get(other.put.remote(queue, 4.0))
        got = None
        while got is None and time.monotonic() - t0 < 60:
            got = puller.next(1.0)
        assert float(got[0]) == 4.0 and puller.lost == 2
    finally:
        queue.shutdown()
