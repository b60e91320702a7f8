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


class AuxiliaryOutputs:
    """Mixin of a backbone that computes extra outputs next to its features (e.g. a crystal-system head
    on the features it shares with the space-group head).

    :class:`trainer.models.SpaceGroupNet` passes only the (B, F) features on, so such a backbone keeps its
    extra outputs of the last forward pass in ``_auxiliary``; :func:`auxiliary_outputs` merges them into the
    model's output dict (the training loop does, so they enter the loss). Backbones without the mixin have
    none, and their models are unaffected.
    """

    _auxiliary: dict | None = None

    def keep_auxiliary(self, **outputs) -> None:
        self._auxiliary = outputs

    def take_auxiliary(self) -> dict:
        out, self._auxiliary = self._auxiliary or {}, None
        return out


def auxiliary_outputs(model, out: dict) -> dict:
    """``out`` plus the extra outputs the model's backbone kept during the forward pass that made ``out``."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, AuxiliaryOutputs):
        extra = backbone.take_auxiliary()
        if extra:
            return {**out, **extra}
    return out
