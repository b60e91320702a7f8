"""Evaluator actors: scoring the model on the test sets (:mod:`evaluation.scoring`) while training goes on.

The trainer hands over a picklable *model factory* (a callable returning the ``torch.nn.Module``,
e.g. ``functools.partial(build_model, model_cfg, n_classes, input_length)``) once, and the current
weights every ``interval_steps``. :class:`Evaluator` scores them in Ray evaluator actors:
``submit`` never blocks (it queues at most ``max_pending`` weights while every evaluator is busy,
dropping older ones), ``poll`` returns finished results. A dead evaluator is replaced and its job
submitted again; an evaluation that raises is logged and skipped. :class:`LocalEvaluator` does the same synchronously in-process.

Results have the form and the per-set rule that :mod:`evaluation.scoring` describes.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Sequence

from evaluation.config import EvaluationConfig, to_dataclass
from evaluation.scoring import LocalEvaluator, score, to_numpy_state
from evaluation.testsets import TestSet

log = logging.getLogger(__name__)


def _evaluator_actor_class():
    import ray

    @ray.remote
    class EvaluatorActor:
        """Holds one model built by the factory and the test sets; scores weights on request."""

        def __init__(self, model_factory, test_sets, space_groups, batch_size, topk, gap_reference, threads):
            import os

            import torch

            torch.set_num_threads(max(1, int(threads)))
            self.pid = os.getpid()
            self.model = model_factory()
            self.test_sets, self.space_groups = test_sets, space_groups
            self.args = (batch_size, topk, gap_reference)

        def evaluate(self, weights, step):
            t0 = time.perf_counter()
            out = score(self.model, weights, self.test_sets, self.space_groups, *self.args)
            return {"step": int(step), "seconds": time.perf_counter() - t0, **out}

        def getpid(self):
            return self.pid

    return EvaluatorActor


class Evaluator:
    """Evaluator actors scoring weights in parallel with training (see the module docstring)."""

    def __init__(self, model_factory: Callable[[], Any], test_sets: Sequence[TestSet], space_groups: Sequence[int],
                 cfg: EvaluationConfig | Any = None, max_replacements: int = 10):
        import ray

        self.cfg = to_dataclass(EvaluationConfig, cfg)
        if not ray.is_initialized():
            raise RuntimeError("Evaluator needs a running Ray (the stream starts it; or call ray.init)")
        # put once by the driver: they outlive every evaluator and are shared by all of them
        self._args = (ray.put(model_factory), ray.put(list(test_sets)), [int(s) for s in space_groups])
        self._cls = _evaluator_actor_class()
        self.actors = [self._spawn() for _ in range(max(1, self.cfg.num_evaluators))]
        self._idle = deque(self.actors)
        self._inflight: dict[Any, tuple[Any, Any, int]] = {}     # result ref -> (actor, weights ref, step)
        self._pending: deque = deque()                           # (weights ref, step) waiting for an idle actor
        self._results: list[dict] = []
        self.submitted = self.dropped = self.replacements = self.failures = 0
        self.max_replacements = max_replacements

    def _spawn(self):
        c = self.cfg
        return self._cls.options(num_cpus=c.evaluator_cpus, max_restarts=0).remote(
            self._args[0], self._args[1], self._args[2], c.batch_size, list(c.topk), c.gap_reference,
            max(1, int(c.evaluator_cpus)))

    @property
    def busy(self) -> int:
        """Evaluations running."""
        return len(self._inflight)

    def submit(self, state_dict, step: int) -> bool:
        """Queue the weights of ``step`` (never blocks); False when they displaced older pending weights."""
        import ray

        self._collect()
        self._pending.append((ray.put(to_numpy_state(state_dict)), int(step)))
        self.submitted += 1
        kept = True
        while len(self._pending) > max(self.cfg.max_pending, 0) + len(self._idle):
            _, dropped_step = self._pending.popleft()
            self.dropped += 1
            kept = kept and dropped_step != step
            log.info("evaluation of step %d dropped: every evaluator is busy", dropped_step)
        self._dispatch()
        return kept

    def _dispatch(self) -> None:
        while self._idle and self._pending:
            actor = self._idle.popleft()
            weights, step = self._pending.popleft()
            self._inflight[actor.evaluate.remote(weights, step)] = (actor, weights, step)

    def _collect(self, timeout: float = 0.0) -> None:
        import ray
        from ray.exceptions import RayActorError

        if not self._inflight:
            return
        refs = list(self._inflight)
        done, _ = ray.wait(refs, num_returns=1 if timeout else len(refs), timeout=timeout)
        if timeout:  # one finished: take every other finished one too
            more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            done = list(set(done) | set(more))
        for ref in done:
            actor, weights, step = self._inflight.pop(ref)
            try:
                self._results.append(ray.get(ref))
                self._idle.append(actor)
            except RayActorError as exc:
                if self.replacements >= self.max_replacements:
                    raise RuntimeError(f"evaluators died more than {self.max_replacements} times") from exc
                log.warning("evaluator died during step %d (%s); replacing it and resubmitting", step, exc)
                self.replacements += 1
                new = self._spawn()
                self.actors[self.actors.index(actor)] = new
                self._idle.append(new)
                self._pending.appendleft((weights, step))
            except Exception as exc:  # an error while scoring: log it, keep training and the evaluator
                log.error("evaluation of step %d failed: %s", step, exc)
                self.failures += 1
                self._idle.append(actor)
        self._dispatch()

    def poll(self) -> list[dict]:
        """Finished results since the last poll (never blocks)."""
        self._collect()
        out, self._results = self._results, []
        return sorted(out, key=lambda r: r["step"])

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Block until every submitted evaluation finished (or ``timeout``, default ``cfg.timeout_s``); return them."""
        deadline = time.monotonic() + (self.cfg.timeout_s if timeout is None else timeout)
        while (self._inflight or self._pending) and time.monotonic() < deadline:
            self._collect(timeout=max(0.01, min(1.0, deadline - time.monotonic())))
        if self._inflight or self._pending:
            log.warning("%d evaluations still running after the timeout", len(self._inflight) + len(self._pending))
        return self.poll()

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._inflight.clear()
        self._pending.clear()


def make_evaluator(cfg: EvaluationConfig | Any, model_factory: Callable[[], Any], test_sets: Sequence[TestSet],
                   space_groups: Sequence[int]):
    """``Evaluator`` or ``LocalEvaluator`` as ``cfg.backend`` says (None when evaluation is disabled)."""
    cfg = to_dataclass(EvaluationConfig, cfg)
    if not cfg.enabled:
        return None
    if cfg.backend == "ray":
        return Evaluator(model_factory, test_sets, space_groups, cfg)
    if cfg.backend == "local":
        return LocalEvaluator(model_factory, test_sets, space_groups, cfg)
    raise ValueError(f"unknown evaluation.backend {cfg.backend!r} (ray or local)")


def reserved_cpus(cfg: EvaluationConfig | Any) -> float:
    """CPUs the evaluator actors take (left out when the number of generation actors is derived)."""
    cfg = to_dataclass(EvaluationConfig, cfg)
    return float(cfg.num_evaluators * cfg.evaluator_cpus) if cfg.enabled and cfg.backend == "ray" else 0.0
