"""Adam and the paper's learning-rate schedules."""
from __future__ import annotations

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
    raise ValueError(f"unknown schedule {cfg.schedule!r} (constant | step)")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, batches_per_epoch: int):
    """A ``LambdaLR`` stepping once per optimizer step (its state dict is plain numbers)."""
    cfg = typed(OptimizerConfig, cfg)
    lr_factor(0, cfg, batches_per_epoch)  # validates the schedule name
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, batches_per_epoch))
