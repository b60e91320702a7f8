"""The consumer's end of the Ray stream: a picklable view of the sharded batch queue to pull batches from.

:class:`QueueConsumer` is what the trainer pulls from, in the process that owns the stream
(:class:`cluster.stream.RayStream` is one) or in another one (a Ray Train worker gets
``RayStream.consumer()``). With ``cluster.prefetch`` > 0 a background thread keeps that many queue
gets in flight (at least one per shard), each taking up to ``cluster.get_max_items`` queued batches,
so the latency of one call to a shard overlaps the others' and a backlog crosses in few calls.
"""
from __future__ import annotations

import queue as stdqueue
import threading
import time
from collections import deque

import numpy as np

from cluster.batch import Batch
from cluster.config import ClusterConfig
from cluster.queue import Puller, ShardedQueue


def _writable(batch: Batch) -> Batch:
    """Arrays deserialised from Ray's object store are read-only views; give the trainer its own copy."""
    if not hasattr(batch, "patterns"):  # a PeakBatch: only read by its renderer
        return batch
    if not batch.patterns.flags.writeable:
        batch = Batch(np.array(batch.patterns), np.array(batch.labels), np.array(batch.space_groups),
                      np.array(batch.log_volume), None if batch.cell_shape is None else np.array(batch.cell_shape))
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
                raise RuntimeError(f"the batch queue failed: {failure_reason(self._pull_error)}") from self._pull_error
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


def failure_reason(exc: BaseException) -> str:
    """One line saying why a remote call failed (the producer's own exception where there is one)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"
