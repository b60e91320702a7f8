"""One-dimensional ResNets (He et al. 2015) for diffractograms, as adapted by Schopmans et al. (2023).

Differences to the 2D ImageNet networks: every 3x3 kernel becomes a length-9 kernel, every
stride 2 between block groups becomes stride 4 (and so do the projection shortcuts), GroupNorm
with 32 groups replaces BatchNorm (which is unstable on an endless stream), and the head is
flatten -> dense 256 -> output. With 145 classes and 8501 input points the parameter counts are
9.40 M (ResNet-10), 41.4 M (ResNet-50) and 60.4 M (ResNet-101).
"""
from __future__ import annotations

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.heads import output_length
from trainer.models.registry import one_channel, register_backbone

# depth -> (block kind, [(filters, repeats) per block group])
RESNET_SPECS: dict[int, tuple[str, list[tuple[int, int]]]] = {
    10: ("residual", [(64, 1), (128, 1), (256, 1), (512, 1)]),
    18: ("residual", [(64, 2), (128, 2), (256, 2), (512, 2)]),
    34: ("residual", [(64, 3), (128, 4), (256, 6), (512, 3)]),
    50: ("bottleneck", [(64, 3), (128, 4), (256, 6), (512, 3)]),
    101: ("bottleneck", [(64, 3), (128, 4), (256, 23), (512, 3)]),
    152: ("bottleneck", [(64, 3), (128, 8), (256, 36), (512, 3)]),
}


def _norm(channels: int, groups: int) -> nn.Module:
    if groups <= 0:
        return nn.BatchNorm1d(channels)
    return nn.GroupNorm(min(groups, channels), channels)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv1d:
    # "same"-style padding: output length ceil(L / stride), as in the reference Keras layers.
    return nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class ResidualBlock(nn.Module):
    """Two length-``kernel`` convolutions with a skip connection (ResNet-10/18/34)."""

    expansion = 1

    def __init__(self, cin: int, filters: int, stride: int, kernel: int, groups: int, projection: bool):
        super().__init__()
        self.conv1 = _conv(cin, filters, kernel, stride)
        self.norm1 = _norm(filters, groups)
        self.conv2 = _conv(filters, filters, kernel)
        self.norm2 = _norm(filters, groups)
        self.shortcut = (
            nn.Sequential(nn.Conv1d(cin, filters, 1, stride=stride, bias=False), _norm(filters, groups))
            if projection
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class BottleneckBlock(nn.Module):
    """1 x 1 down, length-``kernel`` middle convolution (strided), 1 x 1 up to 4x the filters."""

    expansion = 4

    def __init__(self, cin: int, filters: int, stride: int, kernel: int, groups: int, projection: bool):
        super().__init__()
        out = filters * self.expansion
        self.conv1 = nn.Conv1d(cin, filters, 1, bias=False)
        self.norm1 = _norm(filters, groups)
        self.conv2 = _conv(filters, filters, kernel, stride)
        self.norm2 = _norm(filters, groups)
        self.conv3 = nn.Conv1d(filters, out, 1, bias=False)
        self.norm3 = _norm(out, groups)
        self.shortcut = (
            nn.Sequential(nn.Conv1d(cin, out, 1, stride=stride, bias=False), _norm(out, groups))
            if projection
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.act(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return self.act(y + self.shortcut(x))


class ResNet1DBackbone(nn.Module):
    """Stem (conv, norm, ReLU, max pool) and four block groups; returns the flattened features."""

    def __init__(
        self,
        depth: int,
        input_length: int,
        kernel_size: int = 9,
        group_stride: int = 4,
        norm_groups: int = 32,
        stem_channels: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: int = 3,
        stem_pool_stride: int = 2,
        width_multiplier: float = 1.0,
    ):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"no ResNet-{depth}; known depths: {sorted(RESNET_SPECS)}")
        kind, groups_spec = RESNET_SPECS[depth]
        block = ResidualBlock if kind == "residual" else BottleneckBlock
        self.stem = nn.Sequential(
            _conv(1, stem_channels, stem_kernel, stem_stride),
            _norm(stem_channels, norm_groups),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(stem_pool, stride=stem_pool_stride, padding=stem_pool // 2),
        )
        layers: list[nn.Module] = []
        cin = stem_channels
        for i, (filters, repeats) in enumerate(groups_spec):
            filters = max(1, int(round(filters * width_multiplier)))
            for r in range(repeats):
                stride = group_stride if (i > 0 and r == 0) else 1
                layers.append(block(cin, filters, stride, kernel_size, norm_groups, projection=(r == 0)))
                cin = filters * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.out_channels = cin
        self.out_length = output_length(nn.Sequential(self.stem, self.blocks), input_length, f"ResNet-{depth}")
        self.out_features = self.out_channels * self.out_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.blocks(self.stem(x)), 1)


@register_backbone("resnet")
def build_resnet(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> ResNet1DBackbone:
    """The 1D ResNet of ``cfg`` (depth, kernel_size, group_stride, norm_groups, stem_*, width_multiplier)."""
    one_channel("resnet", in_channels)
    return ResNet1DBackbone(
        cfg.depth,
        input_length,
        kernel_size=cfg.kernel_size,
        group_stride=cfg.group_stride,
        norm_groups=cfg.norm_groups,
        stem_channels=cfg.stem_channels,
        stem_kernel=cfg.stem_kernel,
        stem_stride=cfg.stem_stride,
        stem_pool=cfg.stem_pool,
        stem_pool_stride=cfg.stem_pool_stride,
        width_multiplier=cfg.width_multiplier,
    )
