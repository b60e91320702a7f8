"""The batch stream: seeding, backpressure, dead-actor replacement, timeouts, metrics."""
from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest

from cluster.batch import Batch
from cluster.config import ClusterConfig, to_dataclass
from cluster.producer import NoiseProducerFactory
from generator.seeding import seed_for
from cluster.stream import RayStream
from cluster.sources import ArraySource, LocalStream, make_source

ray = pytest.importorskip("ray")


def _cfg(**kw) -> ClusterConfig:
    base = dict(num_actors=1, batch_size=8, queue_size=4, poll_s=0.2, put_timeout_s=0.2, get_timeout_s=20.0, seed=7)
    base.update(kw)
    return ClusterConfig(**base)


def test_seed_for_is_the_spawn_tree():
    a = seed_for(5, 0, 2, 1).generate_state(4)
    b = np.random.SeedSequence(5).spawn(1)[0].spawn(3)[2].spawn(2)[1].generate_state(4)
    assert np.array_equal(a, b)
    assert not np.array_equal(seed_for(5, 0, 2, 0).generate_state(4), a)


def test_config_rejects_unknown_keys():
    assert to_dataclass(ClusterConfig, {"batch_size": 3}).batch_size == 3
    with pytest.raises(Exception):
        to_dataclass(ClusterConfig, {"batch_sise": 3})


def test_local_stream_is_reproducible_and_typed():
    f = NoiseProducerFactory(batch_size=6, n_points=32, n_classes=4, dtype="float16")
    a, b = LocalStream(f, seed=3), LocalStream(f, seed=3)
    x, y = a.get(1.0), b.get(1.0)
    assert isinstance(x, Batch) and len(x) == 6
    assert x.patterns.dtype == np.float16 and x.patterns.shape == (6, 32)
    assert x.labels.dtype == np.int64 and x.log_volume.dtype == np.float32
    assert np.array_equal(x.patterns, y.patterns)
    assert not np.array_equal(a.get(1.0).patterns, x.patterns)
    assert a.metrics()["batches_delivered"] == 2


def test_synthetic_producer_labels_and_crystallite_pairs():
    import sys
    from pathlib import Path

    from cluster.producer import SyntheticProducerFactory

    sys.path.insert(0, str(Path(__file__).parent))
    from toy_statistics import toy_statistics

    stats = toy_statistics()
    f = SyntheticProducerFactory(stats, {}, None, batch_size=8, dtype="float32", patterns_per_crystal=2)
    stream = LocalStream(f, seed=1)
    b = stream.get()
    assert b.patterns.shape == (8, 8501) and b.patterns.dtype == np.float32
    assert np.array_equal(np.array(stats.space_groups)[b.labels], b.space_groups)
    assert np.array_equal(b.space_groups[0::2], b.space_groups[1::2])          # one crystal, two patterns
    assert np.array_equal(b.log_volume[0::2], b.log_volume[1::2])
    assert not np.array_equal(b.patterns[0], b.patterns[1])                     # two crystallite sizes
    assert np.all(b.log_volume > 0) and np.allclose(b.patterns.max(axis=1), 1.0)
    m = stream.metrics()
    assert m["crystals"] == 4 and m["batches_delivered"] == 1
    assert np.array_equal(LocalStream(f, seed=1).get().patterns, b.patterns)    # same seed, same batch
    odd = LocalStream(SyntheticProducerFactory(stats, {}, None, batch_size=7, dtype="float32",
                                               patterns_per_crystal=2), seed=1)
    b7 = odd.get()                                                             # 4 crystals, the last one once
    assert b7.patterns.shape == (7, 8501) and odd.metrics()["crystals"] == 4
    assert np.array_equal(b7.space_groups[0:6:2], b7.space_groups[1:6:2])
    with pytest.raises(ValueError, match="patterns_per_crystal"):
        SyntheticProducerFactory(stats, None, None, batch_size=2, patterns_per_crystal=3)(seed_for(0))


def test_array_source_covers_every_pattern_each_epoch():
    n = 10
    src = ArraySource(np.arange(n)[:, None].astype(np.float32), np.arange(n), np.arange(n) + 1, np.zeros(n),
                      batch_size=5, seed=1)
    seen = np.concatenate([src.get(1.0).labels for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(n))
    assert src.get(1.0).patterns.shape == (5, 1)


def test_ray_stream_checks_its_config_before_ray_starts():
    import ray

    from cluster.config import ClusterConfig

    started = ray.is_initialized()
    with pytest.raises(ValueError, match=r"^cluster\.queue_size "):
        RayStream(NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3), ClusterConfig(queue_size=0))
    assert ray.is_initialized() == started


def test_ray_stream_matches_local_stream_of_slot_zero(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    local = LocalStream(f, seed=7)
    # one queue get in flight: Ray runs an async actor's calls in no fixed order, so with several gets
    # in flight (prefetch > 1) the batches of one actor can arrive swapped
    with RayStream(f, _cfg(prefetch=1)) as stream:
        got = stream.get(20.0)
        assert got.patterns.flags.writeable
    want = local.get()
    assert np.array_equal(got.patterns, want.patterns) and np.array_equal(got.labels, want.labels)


def test_backpressure_bounds_the_queue(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    with RayStream(f, _cfg(queue_size=2)) as stream:
        deadline = time.monotonic() + 30
        while stream.queue.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)                 # a fast producer had time to overrun the queue
        stats = stream.actor_stats()[0]
        assert stream.queue.qsize() == 2
        # two batches in the queue, at most one more in hand: the producer is blocked, not racing ahead
        assert stats["batches"] <= 3
        assert stats["put_blocked_s"] > 0.5
        for _ in range(5):
            stream.get(10.0)
        m = stream.metrics()
        assert m["batches_delivered"] == 5 and m["queue_length"] <= 2


def test_dead_actor_is_replaced_and_its_queued_batches_do_not_break_the_stream(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    with RayStream(f, _cfg(queue_size=3)) as stream:
        deadline = time.monotonic() + 20
        while stream.queue.qsize() < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = ray.get(stream.slots[0].actor.getpid.remote())
        os.kill(pid, signal.SIGKILL)
        # its three queued batches are delivered, or skipped once Ray has let go of them (they were
        # owned by the dead process); either way the replacement's batches follow
        for _ in range(6):
            assert len(stream.get(20.0)) == 8
        assert stream.replacements == 1
        assert stream.slots[0].incarnation == 1
        assert "actor 0.0" in stream.deaths[0]
        m = stream.metrics()
        assert m["replacements"] == 1 and 0 <= m["batches_lost"] <= 3


def test_watchdog_replaces_dead_actors_while_other_processes_consume(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    with RayStream(f, _cfg()) as stream:
        stream.start_watchdog(0.2)
        pid = ray.get(stream.slots[0].actor.getpid.remote())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while stream.replacements == 0 and time.monotonic() < deadline:   # no get() on this side
            time.sleep(0.1)
        assert stream.replacements == 1 and stream.slots[0].incarnation == 1
        consumer = stream.consumer()
        assert len(consumer.get(20.0)) == 8
        consumer.close()


def test_crashing_producer_is_replaced(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3, fail_after=1)
    with RayStream(f, _cfg()) as stream:
        for _ in range(3):
            stream.get(20.0)
        assert stream.replacements >= 2
        assert "producer failed after 1 batches" in stream.deaths[0]


def test_get_times_out_with_a_clear_message(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3, seconds_per_batch=30.0)
    with RayStream(f, _cfg()) as stream:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no batch arrived within 0.5 s.*generation actors"):
            stream.get(0.5)
        assert time.monotonic() - t0 < 5.0


def test_consumer_is_picklable_and_pulls_from_another_process(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    with RayStream(f, _cfg()) as stream:
        consumer = pickle.loads(pickle.dumps(stream.consumer()))

        @ray.remote(num_cpus=0)
        def pull(c):
            return [len(c.get(20.0)) for _ in range(2)]

        assert ray.get(pull.remote(stream.consumer())) == [8, 8]
        assert len(consumer.get(20.0)) == 8


def test_make_source_dispatch(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    assert isinstance(make_source({"source": "local"}, None, factory=f), LocalStream)
    with pytest.raises(ValueError, match="unknown cluster.source"):
        make_source({"source": "nowhere"}, None, factory=f)
    with pytest.raises(ValueError, match="prepared"):
        make_source({"source": "real"}, None)
    src = make_source(_cfg(source="ray", num_actors=None, trainer_cpus=1.0), None, factory=f)
    try:
        assert src.num_actors == 1       # 2 CPUs seen, 1 left to the trainer
        assert len(src.get(20.0)) == 8
        m = src.metrics()
        for key in ("queue_length", "wait_s_mean", "crystals_per_s", "actors_alive", "replacements"):
            assert key in m
        assert m["crystals"] >= 8
    finally:
        src.close()


def test_prefetch_pulls_ahead_and_can_be_off(ray_local):
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    with RayStream(f, _cfg(prefetch=2, queue_size=4)) as stream:
        stream.get(20.0)
        deadline = time.monotonic() + 20
        while stream.metrics()["prefetched"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stream.metrics()["prefetched"] == 2
        assert stream._thread.is_alive()
    assert not stream._thread.is_alive()            # close stops the prefetch thread
    with RayStream(f, _cfg(prefetch=0)) as stream:
        assert len(stream.get(20.0)) == 8 and stream._thread is None


def _toy_factory(payload: str, **kw):
    import sys
    from pathlib import Path

    from cluster.producer import SyntheticProducerFactory

    sys.path.insert(0, str(Path(__file__).parent))
    from toy_statistics import toy_statistics

    stats = toy_statistics()
    return stats, SyntheticProducerFactory(stats, {}, None, batch_size=4, dtype="float32", payload=payload, **kw)


@pytest.mark.slow
def test_peak_payload_renders_the_array_payload():
    """The paper's pure patterns: same seed, same patterns, whichever side renders them."""
    from cluster.peak_batch import PeakBatch
    from trainer.loop import check_batch, to_tensors

    stats, peaks = _toy_factory("peaks")
    _, arrays = _toy_factory("array")
    pb, ab = LocalStream(peaks, seed=3).get(), LocalStream(arrays, seed=3).get()
    assert isinstance(pb, PeakBatch) and pb.nbytes < ab.patterns.nbytes
    assert np.array_equal(pb.labels, ab.labels) and np.array_equal(pb.space_groups, ab.space_groups)
    assert check_batch(pb, len(stats.space_groups), ab.patterns.shape[1]) is None
    x, y, v = to_tensors(pb, __import__("torch").device("cpu"))
    assert np.abs(x.numpy() - ab.patterns).max() <= 1e-4
    assert np.array_equal(y.numpy(), ab.labels) and np.array_equal(v.numpy(), ab.log_volume)
    with pytest.raises(ValueError, match="cluster.payload"):
        make_source(_cfg(source="local", payload="pixels"), stats)


@pytest.mark.slow
def test_peak_payload_crosses_the_ray_queue(ray_local):
    from cluster.peak_batch import PeakBatch
    from cluster.torch_render import render_batch

    _, factory = _toy_factory("peaks", patterns_per_crystal=2)
    with RayStream(factory, _cfg()) as stream:
        b = stream.get()
    local = LocalStream(factory, seed=7).get()
    assert isinstance(b, PeakBatch) and len(b) == 4 and len(b.offsets) == 3      # two crystals, two patterns each
    assert np.array_equal(render_batch(b).numpy(), render_batch(local).numpy())
