"""``cluster.source=process``: producers in local worker processes, without Ray."""
from __future__ import annotations

import time

import numpy as np
import pytest

from cluster.config import ClusterConfig
from cluster.process_stream import ProcessStream, process_count
from cluster.producer import NoiseProducerFactory
from cluster.sources import LocalStream, make_source


def _cfg(**kw) -> ClusterConfig:
    base = dict(source="process", num_actors=1, batch_size=8, queue_size=4, poll_s=0.2, put_timeout_s=0.2,
                get_timeout_s=20.0, seed=7, max_replacements=3)
    base.update(kw)
    return ClusterConfig(**base)


def test_one_process_equals_the_local_stream_of_slot_zero():
    f = NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3)
    stream = ProcessStream(f, _cfg())
    try:
        got = [stream.get(30.0) for _ in range(3)]
    finally:
        stream.close()
    local = LocalStream(f, seed=7)
    for batch in got:
        want = local.get()
        assert np.array_equal(batch.patterns, want.patterns) and np.array_equal(batch.labels, want.labels)
    assert not any(p.is_alive() for _, p in stream._workers.values())


def test_several_processes_draw_different_streams_and_report_metrics():
    f = NoiseProducerFactory(batch_size=4, n_points=8, n_classes=3)
    stream = make_source(_cfg(num_actors=3), statistics=None, factory=f)
    try:
        assert isinstance(stream, ProcessStream) and stream.n_workers == 3
        batches = [stream.get(30.0) for _ in range(9)]
        m = stream.metrics()
    finally:
        stream.close()
    distinct = {b.patterns.tobytes() for b in batches}
    assert len(distinct) == 9
    assert m["actors_alive"] == 3.0 and m["batches_delivered"] == 9.0 and m["replacements"] == 0.0


def test_a_failing_producer_is_replaced_then_the_stream_gives_up_with_the_reason():
    f = NoiseProducerFactory(batch_size=4, n_points=8, n_classes=3, fail_after=1)
    stream = ProcessStream(f, _cfg(max_replacements=2))
    try:
        first = [stream.get(30.0) for _ in range(3)]  # one batch from each incarnation
        assert stream.replacements == 2
        assert len({b.patterns.tobytes() for b in first}) == 3
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="max_replacements=2.*producer failed after 1 batches"):
            stream.get(30.0)
        assert time.monotonic() - t0 < 20.0
    finally:
        stream.close()


def test_get_times_out_with_a_clear_message():
    f = NoiseProducerFactory(batch_size=4, n_points=8, n_classes=3, seconds_per_batch=30.0)
    stream = ProcessStream(f, _cfg())
    try:
        with pytest.raises(TimeoutError, match="no batch from 1 generation processes within 0.5 s"):
            stream.get(0.5)
    finally:
        stream.close()


def test_process_count_leaves_the_trainer_its_cores():
    assert process_count(_cfg(num_actors=5)) == 5
    assert process_count(_cfg(num_actors=None, num_cpus=16, trainer_cpus=1.0)) == 15
    assert process_count(_cfg(num_actors=None, num_cpus=2, trainer_cpus=1.0), reserved_cpus=1.0) == 1
