"""Dense heads shared by all backbones."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_features: int, hidden: Sequence[int], out_features: int, dropout: float = 0.0) -> nn.Sequential:
    """Dense -> ReLU (-> Dropout) for every hidden size, then a linear output layer."""
    layers: list[nn.Module] = []
    cin = in_features
    for h in hidden:
        layers += [nn.Linear(cin, h), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        cin = h
    layers.append(nn.Linear(cin, out_features))
    return nn.Sequential(*layers)


def output_length(layers, input_length: int, name: str = "this network") -> int:
    """Length of the feature map ``layers`` make of a (1, 1, ``input_length``) pattern; a clear error when the
    input is too short for the network's strides and kernels."""
    import torch

    try:
        with torch.no_grad():
            return int(layers(torch.zeros(1, 1, input_length)).shape[-1])
    except RuntimeError as err:
        raise ValueError(f"input length {input_length} is too short for {name}") from err
