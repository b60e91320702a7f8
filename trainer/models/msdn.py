"""Multistream DenseNet (MSDN) of Tiong et al. for zone-axis images, and its single-stream baseline.

Per stream (Supplementary Table 1 of the paper): a 3x3 convolution and a 2x2 average pool; dense
blocks of ``block_layers`` (3, 6, 8, 6) bottleneck layers (norm-ReLU-1x1 conv to
``bottleneck_width`` x ``growth_rate`` channels, norm-ReLU-3x3 conv to ``growth_rate``, each
layer's output concatenated to its input); 1x1-convolution transitions (``compression`` x the
channels) with 2x2 average pools between the blocks; a final norm-ReLU and a global average pool
to the stream's feature vector (960 features with the defaults).

``streams=3`` is the MSDN: the (B, 3, H, W) input is split into its three one-channel images
(zone axes [100], [010], [001]), each goes through the *same* DenseNet (shared weights), and the three
feature vectors are concatenated (B, 3 x 960) for the classifier of :class:`~trainer.models.SpaceGroupNet`.
``streams=1`` is the spot-DP baseline: one DenseNet reads the three raw images superimposed as the
channels of one picture.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.registry import register_backbone


def _norm(channels: int, groups: int) -> nn.Module:
    """BatchNorm (``groups`` 0) or GroupNorm with the largest group count <= ``groups`` dividing ``channels``."""
    if groups <= 0:
        return nn.BatchNorm2d(channels)
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class DenseLayer(nn.Module):
    """norm-ReLU-1x1 conv -> norm-ReLU-3x3 conv (-> dropout); returns the input with the new maps appended."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_width: int, groups: int, dropout: float):
        super().__init__()
        mid = bottleneck_width * growth_rate
        layers: list[nn.Module] = [
            _norm(in_channels, groups), nn.ReLU(inplace=True), nn.Conv2d(in_channels, mid, 1, bias=False),
            _norm(mid, groups), nn.ReLU(inplace=True), nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class Transition(nn.Sequential):
    """norm-ReLU-1x1 conv -> 2x2 average pool, stride 2."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__(_norm(in_channels, groups), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2, 2))


class DenseNet2D(nn.Module):
    """One stream: (B, in_channels, H, W) -> (B, out_features). Any H, W >= 16 (global pooling at the end)."""

    def __init__(self, in_channels: int = 1, stem_channels: int = 40, growth_rate: int = 40,
                 block_layers: Sequence[int] = (3, 6, 8, 6), bottleneck_width: int = 1, compression: float = 1.0,
                 groups: int = 0, dropout: float = 0.0):
        super().__init__()
        if not block_layers or min(block_layers) < 1 or growth_rate < 1 or stem_channels < 1:
            raise ValueError(f"msdn: need block_layers >= 1 each, growth_rate >= 1, stem_channels >= 1; got "
                             f"{list(block_layers)}, {growth_rate}, {stem_channels}")
        if not 0 < compression <= 1:
            raise ValueError(f"msdn: compression must lie in (0, 1], got {compression}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
                                   _norm(stem_channels, groups), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
        c = stem_channels
        for b, n in enumerate(block_layers):
            for _ in range(n):
                layers.append(DenseLayer(c, growth_rate, bottleneck_width, groups, dropout))
                c += growth_rate
            if b < len(block_layers) - 1:
                out = max(1, int(round(compression * c)))
                layers.append(Transition(c, out, groups))
                c = out
        layers += [_norm(c, groups), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.out_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiStreamBackbone(nn.Module):
    """(B, 3, H, W) -> (B, streams x features): shared-weight streams (3) or one stream over all channels (1).

    ``input_scale`` multiplies the input first (1/255 for uint8 batches).
    """

    input_channels = 3

    def __init__(self, streams: int = 3, input_scale: float = 1.0, **densenet):
        super().__init__()
        if streams not in (1, 3):
            raise ValueError(f"msdn: streams must be 3 (one shared-weight stream per zone axis) or 1 (spot "
                             f"baseline over the superimposed channels), got {streams}")
        self.streams = streams
        self.input_scale = float(input_scale)
        self.stream = DenseNet2D(in_channels=1 if streams == 3 else 3, **densenet)
        self.out_features = self.stream.out_features * streams

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"msdn expects (B, 3, H, W) zone-axis images, got {tuple(x.shape)}")
        if self.input_scale != 1.0:
            x = x * self.input_scale
        if self.streams == 1:
            return self.stream(x)
        b = x.shape[0]
        features = self.stream(x.reshape(b * 3, 1, *x.shape[2:]))  # the three axes through the same weights
        return features.reshape(b, -1)


@register_backbone("msdn")
def build_msdn(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> MultiStreamBackbone:
    """The multistream DenseNet of ``cfg`` (streams, input_scale, stem_channels, growth_rate, block_layers,
    bottleneck_width, compression, norm_groups, dropout_conv). Its input is always (B, 3, H, W) zone-axis
    images, so ``input_length`` and ``in_channels`` are not used."""
    return MultiStreamBackbone(
        cfg.streams, cfg.input_scale, stem_channels=cfg.stem_channels, growth_rate=cfg.growth_rate,
        block_layers=cfg.block_layers, bottleneck_width=cfg.bottleneck_width, compression=cfg.compression,
        groups=cfg.norm_groups, dropout=cfg.dropout_conv,
    )
