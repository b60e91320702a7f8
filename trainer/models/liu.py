"""The CNN of Liu et al. (2019) on the pair distribution function G(r) (209 points, r 1.5..30 A).

Two stride-1 convolutions with "same" padding (256 then 64 channels, kernel 32), each normalised and
ReLU-activated, max-pooling of size 2, dropout, flatten (64 x 104 = 6656 features for 209 points); the
dense 128 layer and the output come from ``hidden: [128]`` of :class:`trainer.models.SpaceGroupNet`.
Liu et al. used batch normalisation (``norm_groups: 0``); ``norm_groups > 0`` selects GroupNorm, which
does not depend on the batch (steadier on an endless stream). With 45 classes: 1,391,341 parameters
(``conf/model/liu_cnn.yaml``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.heads import output_length
from trainer.models.registry import one_channel, register_backbone


class LiuBackbone(nn.Module):
    """(B, 1, R) G(r) -> (B, F) flattened features."""

    def __init__(self, input_length: int, channels: Sequence[int] = (256, 64), kernel: int = 32, pool: int = 2,
                 norm_groups: int = 0, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for c in channels:
            norm = nn.GroupNorm(min(norm_groups, c), c) if norm_groups > 0 else nn.BatchNorm1d(c)
            layers += [nn.Conv1d(cin, c, kernel, padding="same"), norm, nn.ReLU(inplace=True)]
            cin = c
        layers.append(nn.MaxPool1d(pool))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.layers.eval()  # the length probe must not touch BatchNorm running statistics
        self.out_length = output_length(self.layers, input_length, "the Liu CNN")
        self.layers.train()
        self.out_features = cin * self.out_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.layers(x), 1)


@register_backbone("liu")
def build_liu(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> LiuBackbone:
    """Liu's CNN from ``cfg``: ``stage_channels`` (256, 64), ``kernel_size`` (32), ``pool_sizes[0]`` (2),
    ``norm_groups`` (0: BatchNorm) and ``dropout_conv``."""
    one_channel("liu", in_channels)
    return LiuBackbone(input_length, channels=cfg.stage_channels, kernel=cfg.kernel_size, pool=cfg.pool_sizes[0],
                       norm_groups=cfg.norm_groups, dropout=cfg.dropout_conv)
