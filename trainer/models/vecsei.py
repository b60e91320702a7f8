"""The dense network of Vecsei et al. (2019) on the raw 2-theta pattern, with a crystal-system head.

The pattern is flattened and passed through dense layers (``dense_layers``, each ReLU and
``dropout_dense``); their output feeds the space-group classifier of
:class:`trainer.models.SpaceGroupNet` (``hidden: []``) and, with ``crystal_system_head``, a 7-class
crystal-system head on the same features. Vecsei et al. trained a separate network per task whose layers
differ "only in the final few layers"; sharing the trunk and adding the crystal-system cross-entropy to
the loss (``trainer.loop.compute_loss``) is the multi-task form of that. The crystal-system logits reach
the loss through :class:`trainer.models.heads.AuxiliaryOutputs` (key "crystal_system_logits").
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.heads import AuxiliaryOutputs
from trainer.models.registry import one_channel, register_backbone

N_CRYSTAL_SYSTEMS = 7


class VecseiDenseBackbone(AuxiliaryOutputs, nn.Module):
    """(B, 1, N) patterns -> (B, dense_layers[-1]) features; keeps (B, 7) crystal-system logits aside."""

    def __init__(self, input_length: int, dense_layers: Sequence[int] = (2048, 1024, 256), dropout: float = 0.0,
                 crystal_system_head: bool = True):
        super().__init__()
        if not dense_layers:
            raise ValueError("model.dense_layers must name at least one dense layer for arch vecsei_dense")
        layers: list[nn.Module] = [nn.Flatten()]
        cin = input_length
        for h in dense_layers:
            layers += [nn.Linear(cin, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            cin = h
        self.trunk = nn.Sequential(*layers)
        self.out_features = cin
        self.crystal_system = nn.Linear(cin, N_CRYSTAL_SYSTEMS) if crystal_system_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x)
        if self.crystal_system is not None:
            self.keep_auxiliary(crystal_system_logits=self.crystal_system(features))
        return features


@register_backbone("vecsei_dense")
def build_vecsei_dense(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> VecseiDenseBackbone:
    """Vecsei's dense network from ``cfg``: ``dense_layers``, ``dropout_dense``, ``crystal_system_head``."""
    one_channel("vecsei_dense", in_channels)
    return VecseiDenseBackbone(input_length, cfg.dense_layers, cfg.dropout_dense, cfg.crystal_system_head)
