"""The CNNs of Park et al. (2017) as used by Schopmans et al. (2023): three strided convolutions
(80 filters, kernels 100/50/25, strides 5/5/2, "same" padding) each followed by ReLU and average
pooling (size 3, strides 2/3/3, "valid"), flatten, two hidden dense layers and the output.

Hidden dense sizes: small 700-70, medium 4040-202, big 2300-1150. With 145 classes and 8501
input points: small 1,052,305, medium 4,246,797, big 4,959,585 parameters (the paper's figures
for medium and big exactly). Dropout (0.3 after the convolutions, 0.5 after the dense layers) is
meant for training on a finite set of real structures only.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.heads import output_length
from trainer.models.registry import one_channel, register_backbone


class ParkBackbone(nn.Module):
    """The convolutional part; returns the flattened features."""

    def __init__(
        self,
        input_length: int,
        channels: int = 80,
        kernels: Sequence[int] = (100, 50, 25),
        strides: Sequence[int] = (5, 5, 2),
        pool_sizes: Sequence[int] = (3, 3, 3),
        pool_strides: Sequence[int] = (2, 3, 3),
        dropout: float = 0.0,
    ):
        super().__init__()
        if not (len(kernels) == len(strides) == len(pool_sizes) == len(pool_strides)):
            raise ValueError("kernels, strides, pool_sizes and pool_strides need the same length")
        layers: list[nn.Module] = []
        cin = 1
        for k, s, p, ps in zip(kernels, strides, pool_sizes, pool_strides):
            # Keras "same" padding for a strided convolution: total pad max(k - s, 0) when L % s == 0,
            # split with the extra element on the right; the output length is ceil(L / s).
            layers += [_SameConv1d(cin, channels, k, s), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.AvgPool1d(p, stride=ps))
            cin = channels
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels
        self.out_length = output_length(self.layers, input_length)
        self.out_features = channels * self.out_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.layers(x), 1)


class _SameConv1d(nn.Module):
    """Conv1d with TensorFlow's "same" padding (output length ceil(L / stride)) for any stride."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        out = -(-length // self.stride)
        pad = max((out - 1) * self.stride + self.kernel - length, 0)
        return self.conv(nn.functional.pad(x, (pad // 2, pad - pad // 2)))


@register_backbone("park")
def build_park(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> ParkBackbone:
    """The Park et al. CNN of ``cfg`` (channels, kernels, strides, pool_sizes, pool_strides, dropout_conv)."""
    one_channel("park", in_channels)
    return ParkBackbone(
        input_length,
        channels=cfg.channels,
        kernels=cfg.kernels,
        strides=cfg.strides,
        pool_sizes=cfg.pool_sizes,
        pool_strides=cfg.pool_strides,
        dropout=cfg.dropout_conv,
    )
