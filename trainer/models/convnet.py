"""A compact 1D CNN for CPUs: a strided stem and stages of strided convolutions, each with per-sample
normalisation, then flatten (peak positions matter on a 2-theta axis) or, on the log-Q axis, global pooling.

Why it exists next to the paper's models: on a 2-core machine the Park CNN trains ~135
patterns/s on the 8501-point grid and collapses on imperfect patterns (no normalisation, a
noise floor of ~0.2 after the square root); the ResNets learn but at ~26 patterns/s. This
network halves the resolution at every stage (the first convolutions see single peaks, the
last ones the spacing between them) and normalises every layer (GroupNorm: independent of the
batch, so a single measured pattern is treated exactly as in training).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.heads import output_length
from trainer.models.registry import one_channel, register_backbone


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    raise ValueError(f"unknown norm {kind!r} (group | batch)")


class ConvBlock(nn.Module):
    """Conv (stride s) -> norm -> GELU, plus a stride-1 conv -> norm -> GELU with a residual connection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm: str, groups: int, double: bool):
        super().__init__()
        self.down = nn.Sequential(nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                                  _norm(norm, cout, groups), nn.GELU())
        self.refine = (nn.Sequential(nn.Conv1d(cout, cout, kernel, padding=kernel // 2, bias=False),
                                     _norm(norm, cout, groups), nn.GELU()) if double else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.refine(x) if self.refine is not None else x

    def new_branches(self) -> tuple[str, ...]:
        """The names of the residual branches a block without them (``double=False``) lacks: what a model
        grown from a shallower one's weights starts fresh (``trainer.init_weights_grow``)."""
        return ("refine",) if self.refine is not None else ()

    def start_branch_as_identity(self, name: str) -> None:
        """Zero the scale and shift of the branch's last normalisation: it then adds GELU(0) = 0, so the
        block computes exactly what the block without it did. The convolution keeps its random weights,
        so the zeroed scale gets a gradient from the first step and the convolution from the next."""
        norm = getattr(self, name)[1]
        with torch.no_grad():
            norm.weight.zero_()
            norm.bias.zero_()


class ConvNetBackbone(nn.Module):
    """Stem (kernel ``stem_kernel``, stride ``stem_stride``) and one stride-2 block per entry of ``channels``.

    Input (B, 1, N) patterns; output (B, channels[-1] * L) flattened features, L about N / (stem_stride 2^S),
    or with ``pool="global"`` (B, 2 channels[-1]): the mean and the maximum over positions.
    """

    def __init__(self, input_length: int, channels: Sequence[int] = (32, 48, 64, 96, 128, 160, 192),
                 kernel: int = 9, stem_channels: int = 24, stem_kernel: int = 15, stem_stride: int = 2,
                 norm: str = "group", groups: int = 8, double: Sequence[bool] | bool = False,
                 dropout: float = 0.0, pool: str = "flatten"):
        super().__init__()
        doubles = [double] * len(channels) if isinstance(double, bool) else list(double)
        if len(doubles) != len(channels):
            raise ValueError("double needs one flag per stage")
        layers: list[nn.Module] = [nn.Conv1d(1, stem_channels, stem_kernel, stride=stem_stride,
                                             padding=stem_kernel // 2, bias=False),
                                   _norm(norm, stem_channels, groups), nn.GELU()]
        cin = stem_channels
        for c, d in zip(channels, doubles):
            layers.append(ConvBlock(cin, c, kernel, 2, norm, groups, d))
            cin = c
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin
        self.out_length = output_length(self.layers, input_length)
        if pool not in ("flatten", "global"):
            raise ValueError(f"model.pool must be 'flatten' or 'global', got {pool!r}")
        self.pool = pool
        self.out_features = cin * self.out_length if pool == "flatten" else 2 * cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        if self.pool == "global":
            return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)
        return torch.flatten(x, 1)


@register_backbone("convnet")
def build_convnet(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> ConvNetBackbone:
    """The compact CNN of ``cfg`` (stage_channels, kernel_size, stem_*, norm_groups (0: BatchNorm),
    stage_double, dropout_conv)."""
    one_channel("convnet", in_channels)
    return ConvNetBackbone(
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
        pool=cfg.pool,
    )
