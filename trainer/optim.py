"""Adam/AdamW, the paper's learning-rate schedules and a warm-up + cosine decay."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from trainer.config import OptimizerConfig, typed


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: Any) -> torch.optim.Optimizer:
    """Adam (or AdamW when ``weight_decay`` > 0) with the configured betas and epsilon."""
    cfg = typed(OptimizerConfig, cfg)
    if cfg.name not in ("adam", "adamw"):
        raise ValueError(f"unknown optimizer {cfg.name!r} (adam | adamw)")
    cls = torch.optim.AdamW if (cfg.name == "adamw" or cfg.weight_decay > 0) else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: OptimizerConfig, batches_per_epoch: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps."""
    factor = 1.0
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        factor = (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return factor
    if cfg.schedule == "step":
        period = max(1, cfg.step_epochs * batches_per_epoch)
        return factor * cfg.gamma ** (step // period)
    if cfg.schedule == "cosine":
        if cfg.total_steps <= 0:
            raise ValueError("optimizer.total_steps must be positive for the cosine schedule (the run's max_steps)")
        t = min(max(step - cfg.warmup_steps, 0) / max(cfg.total_steps - cfg.warmup_steps, 1), 1.0)
        return factor * (cfg.min_lr_factor + (1.0 - cfg.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * t)))
    raise ValueError(f"unknown schedule {cfg.schedule!r} (constant | step | cosine)")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, batches_per_epoch: int):
    """A ``LambdaLR`` stepping once per optimizer step (its state dict is plain numbers)."""
    cfg = typed(OptimizerConfig, cfg)
    lr_factor(0, cfg, batches_per_epoch)  # validates the schedule name
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, batches_per_epoch))


def schedule_jump(step: int, before: Any, after: Any, batches_per_epoch: int) -> tuple[float, float] | None:
    """The learning-rate multipliers at ``step`` under a checkpoint's optimizer config (``before``) and
    the resuming run's (``after``) when they differ (a resume with another ``trainer.max_steps`` moves
    the end of a cosine), else None. A ``before`` that is not a valid config counts as no jump."""
    try:
        old = lr_factor(step, typed(OptimizerConfig, before), batches_per_epoch)
    except (ValueError, TypeError):
        return None
    new = lr_factor(step, typed(OptimizerConfig, after), batches_per_epoch)
    return None if math.isclose(old, new, rel_tol=1e-6, abs_tol=1e-12) else (old, new)
