"""An exponential moving average of the weights (``trainer.ema_decay``).

The average, not the weights the optimizer moves, is what a run hands on: its checkpoints' ``model.safetensors``,
the evaluators, exports and ``trainer.init_weights`` all read it. The optimizer's own weights travel in the
checkpoint's training state (``extra["training_weights"]``), so a resumed run continues both exactly.
The averaging itself is PyTorch's (``AveragedModel`` with the EMA update, buffers such as norm statistics
averaged too).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

TRAINING_WEIGHTS = "training_weights"  # training_state extra: the optimizer's weights
AVERAGED_STEPS = "ema_steps"           # training_state extra: updates folded into the average


class WeightAverage:
    """``decay`` * average + (1 - ``decay``) * weights after every optimizer step; the first update copies."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        """A model holding the average (same class and state-dict keys as the trained one)."""
        return self.averaged.module

    @property
    def steps(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state(self, model: nn.Module) -> dict:
        """What a checkpoint's training state keeps to resume: the trained weights and the update count."""
        return {TRAINING_WEIGHTS: {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
                AVERAGED_STEPS: self.steps}

    def restore(self, average: dict[str, torch.Tensor], steps: int) -> None:
        """Continue from a checkpoint: its weights (the average) after ``steps`` updates."""
        self.module.load_state_dict(average, strict=True)
        self.averaged.n_averaged.fill_(int(steps))


def training_weights(extra: dict) -> Optional[dict[str, torch.Tensor]]:
    """The optimizer's weights kept in a checkpoint's extra state, None when it holds no average."""
    return extra.get(TRAINING_WEIGHTS)
