"""Space-group classifiers: Park et al. CNNs and 1D ResNets with an optional volume head.

Every model takes (B, N) float patterns and returns ``{"logits": (B, C)}`` plus
``"log_volume": (B,)`` (z-scored log cell volume) when the volume head is on.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainer.config import ModelConfig, typed
from trainer.models.convnet import ConvNetBackbone
from trainer.models.heads import mlp
from trainer.models.msdn import MultiStreamBackbone
from trainer.models.park import ParkBackbone
from trainer.models.resnet import RESNET_SPECS, ResNet1DBackbone

__all__ = ["SpaceGroupNet", "build_model", "count_parameters", "ModelConfig", "RESNET_SPECS"]


class SpaceGroupNet(nn.Module):
    """Backbone -> hidden dense layers -> class logits, and optionally a volume-regression head."""

    def __init__(self, backbone: nn.Module, n_classes: int, cfg: ModelConfig):
        super().__init__()
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

    def forward(self, patterns: torch.Tensor) -> dict[str, torch.Tensor]:
        if patterns.dim() == 2:
            patterns = patterns.unsqueeze(1)
        features = self.backbone(patterns)
        hidden = self.hidden(features)
        out = {"logits": self.classifier(hidden)}
        if self.volume is not None:
            source = features if self.volume_source == "flatten" else hidden
            out["log_volume"] = self.volume(source).squeeze(-1)
        return out


def build_model(model_cfg: Any, n_classes: int, input_length: int) -> SpaceGroupNet:
    """The classifier described by ``model_cfg`` (a conf/model group, dict or :class:`ModelConfig`)."""
    cfg = typed(ModelConfig, model_cfg)
    if cfg.arch == "park":
        backbone = ParkBackbone(
            input_length,
            channels=cfg.channels,
            kernels=cfg.kernels,
            strides=cfg.strides,
            pool_sizes=cfg.pool_sizes,
            pool_strides=cfg.pool_strides,
            dropout=cfg.dropout_conv,
        )
    elif cfg.arch == "resnet":
        backbone = ResNet1DBackbone(
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
    elif cfg.arch == "convnet":
        backbone = ConvNetBackbone(
            input_length,
            channels=cfg.stage_channels,
            kernel=cfg.kernel_size,
            stem_channels=cfg.stem_channels,
            stem_kernel=cfg.stem_kernel,
            stem_stride=cfg.stem_stride,
            norm="group" if cfg.norm_groups > 0 else "batch",
            groups=cfg.norm_groups,
            double=cfg.stage_double,
            dropout=cfg.dropout_conv,
        )
    elif cfg.arch == "msdn":  # zone-axis images (B, 3, H, W); input_length is not used
        backbone = MultiStreamBackbone(
            cfg.streams, cfg.input_scale, stem_channels=cfg.stem_channels, growth_rate=cfg.growth_rate,
            block_layers=cfg.block_layers, bottleneck_width=cfg.bottleneck_width, compression=cfg.compression,
            groups=cfg.norm_groups, dropout=cfg.dropout_conv,
        )
    else:
        raise ValueError(f"unknown model arch {cfg.arch!r} (park | resnet | convnet | msdn)")
    return SpaceGroupNet(backbone, n_classes, cfg)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
