"""Generation producers in local worker processes, without Ray (``cluster.source=process``).

For one machine with many cores where Ray is not installed or not wanted (a rented GPU box, a
container image without it): ``num_actors`` processes (``spawn``) each run the producer of one
generation slot and put its batches into one bounded ``multiprocessing`` queue that the trainer
reads. Slot i, incarnation k draws from ``seed_for(seed, GENERATION, i, k)``, the stream of Ray
generation actor i of :class:`cluster.stream.RayStream` with the same seed, so a one-process
stream equals a one-actor Ray stream batch for batch. A worker that raises is replaced by its
next incarnation (at most ``max_replacements`` times in all); nothing it had already queued is lost.
"""
from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import queue as stdqueue
import time
import traceback
from dataclasses import dataclass
from typing import Any, Iterator

from cluster.config import ClusterConfig
from cluster.consumer import _WaitClock
from cluster.producer import ProducerFactory
from generator.seeding import GENERATION, seed_for

log = logging.getLogger(__name__)

# One thread per worker process: the workers are the parallelism.
_ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass(frozen=True)
class WorkerFailure:
    """What a worker puts into the queue instead of a batch when its producer raises."""

    slot: int
    incarnation: int
    error: str


def _produce(factory: ProducerFactory, seed: int, slot: int, incarnation: int, out, stop,
             put_timeout_s: float) -> None:
    """Worker process: batches of one generation slot into ``out`` until ``stop`` is set."""
    try:
        producer = factory(seed_for(seed, GENERATION, slot, incarnation))
        while not stop.is_set():
            batch = producer.next_batch()
            while not stop.is_set():
                try:
                    out.put(batch, timeout=put_timeout_s)
                    break
                except stdqueue.Full:
                    continue
    except BaseException:  # noqa: BLE001 - reported to the trainer, which replaces the worker
        with contextlib.suppress(Exception):
            out.put(WorkerFailure(slot, incarnation, traceback.format_exc(limit=8)), timeout=put_timeout_s)


def process_count(cfg: ClusterConfig, reserved_cpus: float = 0.0) -> int:
    """``cfg.num_actors``, else the machine's cores minus the trainer's and ``reserved_cpus`` (at least 1)."""
    if cfg.num_actors:
        return int(cfg.num_actors)
    cores = cfg.num_cpus or os.cpu_count() or 1
    return max(1, int(cores) - int(math.ceil(cfg.trainer_cpus + reserved_cpus)))


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Environment inherited by the workers started inside (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update({k: "1" for k in _ONE_THREAD})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ProcessStream:
    """Batches from ``process_count(cfg)`` local producer processes; ``get``/``metrics``/``close`` like
    the other sources."""

    def __init__(self, factory: ProducerFactory, cfg: ClusterConfig, reserved_cpus: float = 0.0):
        self.factory, self.cfg = factory, cfg
        self.n_workers = process_count(cfg, reserved_cpus)
        self._ctx = mp.get_context("spawn")
        self._queue = self._ctx.Queue(maxsize=max(1, cfg.queue_size))
        self._stop = self._ctx.Event()
        self._workers: dict[int, tuple[int, Any]] = {}  # slot -> (incarnation, process)
        self.replacements = 0
        self._clock = _WaitClock()
        self._patterns = 0
        with _single_threaded_children():
            for slot in range(self.n_workers):
                self._start(slot, 0)
        log.info("process stream: %d generation processes", self.n_workers)

    def _start(self, slot: int, incarnation: int) -> None:
        proc = self._ctx.Process(target=_produce, name=f"generation-{slot}", daemon=True,
                                 args=(self.factory, self.cfg.seed, slot, incarnation, self._queue, self._stop,
                                       self.cfg.put_timeout_s))
        proc.start()
        self._workers[slot] = (incarnation, proc)

    def _replace(self, slot: int, reason: str) -> None:
        if self.replacements >= self.cfg.max_replacements:
            raise RuntimeError(f"generation process {slot} failed and cluster.max_replacements="
                               f"{self.cfg.max_replacements} replacements are used up: {reason}")
        incarnation, proc = self._workers[slot]
        # a worker that reported its failure exits by itself: killing it while its queue feeder thread
        # writes would leave the queue's lock taken and block every other worker's puts
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        self.replacements += 1
        log.warning("generation process %d (incarnation %d) failed, replacing it: %s", slot, incarnation, reason)
        with _single_threaded_children():
            self._start(slot, incarnation + 1)

    def _check_workers(self) -> None:
        """Replace workers that died without a word (killed, out of memory)."""
        for slot, (_, proc) in list(self._workers.items()):
            if not proc.is_alive():
                self._replace(slot, f"exit code {proc.exitcode}")

    def get(self, timeout: float | None = None):
        """The next batch (a ``Batch`` or ``PeakBatch``); ``TimeoutError`` after ``timeout`` seconds."""
        t0 = time.perf_counter()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.cfg.poll_s if deadline is None else min(self.cfg.poll_s, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError(f"no batch from {self.n_workers} generation processes within {timeout:g} s")
            try:
                item = self._queue.get(timeout=wait)
            except stdqueue.Empty:
                self._check_workers()
                continue
            if isinstance(item, WorkerFailure):
                current = self._workers.get(item.slot)
                if current is not None and current[0] == item.incarnation:
                    self._replace(item.slot, item.error.strip().splitlines()[-1])
                    log.debug("traceback of generation process %d:\n%s", item.slot, item.error)
                continue
            self._clock.add(time.perf_counter() - t0)
            self._patterns += len(item.labels)
            return item

    def metrics(self) -> dict[str, float]:
        alive = sum(proc.is_alive() for _, proc in self._workers.values())
        length = 0.0
        with contextlib.suppress(NotImplementedError):  # qsize is not implemented on macOS
            length = float(self._queue.qsize())
        elapsed = max(time.monotonic() - self._clock.started, 1e-9)
        return {"queue_length": length, "actors_alive": float(alive),
                "replacements": float(self.replacements), "patterns_per_s": self._patterns / elapsed,
                **self._clock.metrics()}

    def close(self) -> None:
        """Stop every worker (batches still queued are dropped; nothing else is kept by the workers)."""
        self._stop.set()
        end = time.monotonic() + 5.0
        while time.monotonic() < end and any(p.is_alive() for _, p in self._workers.values()):
            with contextlib.suppress(stdqueue.Empty, OSError, EOFError):
                self._queue.get(timeout=0.1)  # unblock puts waiting on a full queue
        for _, proc in self._workers.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        self._queue.cancel_join_thread()
        self._queue.close()
