"""Space-group classifiers: Park et al. CNNs and 1D ResNets with an optional volume head.

Every model takes (B, N) float patterns and returns ``{"logits": (B, C)}`` plus
``"log_volume": (B,)`` (z-scored log cell volume) when the volume head is on and ``"cell_shape": (B, 5)``
(the scale-free cell shape, :attr:`generator.crystal.SyntheticCrystal.cell_shape`) when the cell head is on.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainer.config import ModelConfig, typed
# Importing a backbone module registers its builder (trainer.models.registry); a new backbone adds its
# import here.
from trainer.models import convnet, msdn, park, resnet  # noqa: F401
from trainer.models import liu, vecsei  # noqa: F401  (Liu et al. G(r) CNN, Vecsei et al. dense network)
from trainer.models.heads import mlp
from trainer.models.log_axis import LogQResample
from trainer.models.registry import build_backbone, known_backbones, register_backbone
from trainer.models.resnet import RESNET_SPECS

__all__ = ["SpaceGroupNet", "build_model", "count_parameters", "ModelConfig", "RESNET_SPECS",
           "register_backbone", "known_backbones"]


class SpaceGroupNet(nn.Module):
    """Backbone -> hidden dense layers -> class logits, and optionally volume- and cell-shape regression heads."""

    def __init__(self, backbone: nn.Module, n_classes: int, cfg: ModelConfig, front: nn.Module | None = None):
        super().__init__()
        self.front = front  # a fixed input transform (e.g. the log-Q axis), no parameters
        self.backbone = backbone
        self.n_classes = n_classes
        hidden: list[nn.Module] = []
        cin = backbone.out_features
        for h in cfg.hidden:
            hidden += [nn.Linear(cin, h), nn.ReLU(inplace=True)]
            if cfg.dropout_dense > 0:
                hidden.append(nn.Dropout(cfg.dropout_dense))
            cin = h
        self.hidden = nn.Sequential(*hidden)
        self.classifier = nn.Linear(cin, n_classes)
        self.volume_source = cfg.volume_source
        if cfg.volume_head:
            if cfg.volume_source not in ("flatten", "hidden"):
                raise ValueError(f"volume_source must be 'flatten' or 'hidden', not {cfg.volume_source!r}")
            vin = backbone.out_features if cfg.volume_source == "flatten" else cin
            self.volume = mlp(vin, cfg.volume_hidden, 1)
        else:
            self.volume = None
        self.cell = mlp(cin, cfg.cell_hidden, 5) if cfg.cell_head else None

    def forward(self, patterns: torch.Tensor) -> dict[str, torch.Tensor]:
        if patterns.dim() == 2:
            patterns = patterns.unsqueeze(1)
        if self.front is not None:
            patterns = self.front(patterns)
        features = self.backbone(patterns)
        hidden = self.hidden(features)
        out = {"logits": self.classifier(hidden)}
        if self.volume is not None:
            source = features if self.volume_source == "flatten" else hidden
            out["log_volume"] = self.volume(source).squeeze(-1)
        if self.cell is not None:
            out["cell_shape"] = self.cell(hidden)
        return out


def build_model(model_cfg: Any, n_classes: int, input_length: int, in_channels: int = 1) -> SpaceGroupNet:
    """The classifier described by ``model_cfg`` (a conf/model group, dict or :class:`ModelConfig`).

    The backbone is the one registered for ``model_cfg.arch`` (:mod:`trainer.models.registry`);
    an unknown arch raises a ``ValueError`` listing the known ones.
    """
    cfg = typed(ModelConfig, model_cfg)
    front = None
    if cfg.input_axis == "log_q":
        if cfg.axis_two_theta is None:
            raise ValueError("model.axis_two_theta: a log_q model needs the 2-theta range of its input (a training "
                             "run fills it from the simulation grid)")
        lo, hi = (float(v) for v in cfg.axis_two_theta)
        front = LogQResample(input_length, lo, hi, cfg.axis_points)
        input_length = cfg.axis_points
    elif cfg.input_axis != "two_theta":
        raise ValueError(f"model.input_axis must be 'two_theta' or 'log_q', got {cfg.input_axis!r}")
    return SpaceGroupNet(build_backbone(cfg, input_length, in_channels), n_classes, cfg, front)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
