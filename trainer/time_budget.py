"""Fit a run's length to a wall-clock budget (``trainer.time_budget_s``): rented accelerator time.

The number of steps that fit is unknown before the run: it depends on the generation cores, the
device and the batch. :class:`TimeBudget` measures the step rate once the first ``probe_steps``
steps are past (start-up, compilation and the first fill of the queue left out) and plans the run's
last step from it, again at every call until ``freeze_fraction`` of the budget has passed. Each new
plan moves the end of the cosine schedule with it (:func:`apply_plan`), so the rate decays to its
floor when the budget ends instead of being cut off half-way; after the freeze the plan stays, and
the run stops when the budget is spent whatever the plan said. ``trainer.max_steps`` stays an upper
bound.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import torch

from trainer.config import OptimizerConfig, typed
from trainer.optim import lr_factor


class TimeBudget:
    """The step a run should end at, from the rate measured so far (see the module docstring)."""

    def __init__(self, budget_s: float, start_step: int, max_steps: int, probe_steps: int = 50,
                 freeze_fraction: float = 0.5, clock=time.monotonic):
        if budget_s <= 0:
            raise ValueError(f"trainer.time_budget_s must be > 0, got {budget_s}")
        self.budget_s, self.start_step, self.max_steps = float(budget_s), int(start_step), int(max_steps)
        self.probe_steps, self.freeze_fraction, self.clock = int(probe_steps), float(freeze_fraction), clock
        self.t0 = clock()
        self._ref: Optional[tuple[int, float]] = None  # (step, time) where the rate is measured from

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def plan(self, step: int) -> Optional[int]:
        """The last step of the run as planned now, or None while nothing is (yet or any more) to plan."""
        now = self.clock()
        elapsed = now - self.t0
        if elapsed >= self.budget_s:
            return step  # spent: stop here
        if self._ref is None:
            if step - self.start_step >= self.probe_steps:
                self._ref = (step, now)
            return None
        if elapsed > self.freeze_fraction * self.budget_s or step - self._ref[0] < self.probe_steps:
            return None
        rate = (step - self._ref[0]) / max(now - self._ref[1], 1e-9)
        return int(min(self.max_steps, step + rate * (self.budget_s - elapsed)))


def apply_plan(last_step: int, tcfg: Any, optimizer_cfg: Any, scheduler: torch.optim.lr_scheduler.LambdaLR,
               optimizer: torch.optim.Optimizer, config: Optional[dict] = None) -> Any:
    """Make ``last_step`` the run's end: ``tcfg.max_steps``, the cosine's ``total_steps`` in the scheduler
    (and the current learning rate with it) and the run's recorded ``config``; returns the new optimizer config."""
    tcfg.max_steps = int(last_step)
    ocfg = typed(OptimizerConfig, optimizer_cfg)
    if ocfg.schedule == "cosine":
        ocfg = dataclasses.replace(ocfg, total_steps=int(last_step))
    bpe = tcfg.batches_per_epoch
    scheduler.lr_lambdas = [lambda s, c=ocfg: lr_factor(s, c, bpe) for _ in scheduler.lr_lambdas]
    for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * fn(scheduler.last_epoch)
    if config is not None:
        config.setdefault("trainer", {})["max_steps"] = int(last_step)
        if ocfg.schedule == "cosine":
            config.setdefault("optimizer", {})["total_steps"] = int(last_step)
    return ocfg
