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
