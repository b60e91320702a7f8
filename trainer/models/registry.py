"""Backbone registry: one table from ``conf/model`` ``arch`` names to the functions that build them.

A backbone module registers its builder where the backbone is defined::

    from trainer.config import ModelConfig
    from trainer.models.registry import register_backbone

    @register_backbone("mynet")
    def build_mynet(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> nn.Module:
        return MyNetBackbone(input_length, channels=cfg.channels, ...)

and :mod:`trainer.models` imports that module once (the import runs the decorator). A builder

* takes the typed :class:`~trainer.config.ModelConfig` (it reads only the fields of its backbone;
  a new backbone adds its fields to ``ModelConfig`` and to its ``conf/model/*.yaml``),
  ``input_length`` (points N of a (B, N) powder pattern) and ``in_channels`` (channels of the
  (B, C, N) input; 1 for powder patterns);
* returns an ``nn.Module`` mapping the input to flattened (B, F) features, with ``F`` in its
  ``out_features`` attribute: :class:`trainer.models.SpaceGroupNet` puts the dense layers and the
  heads on top.

A name can be registered once; :func:`backbone_builder` raises a ``ValueError`` listing the known
names for any other.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from trainer.config import ModelConfig

__all__ = ["BackboneBuilder", "register_backbone", "backbone_builder", "build_backbone", "known_backbones",
           "one_channel"]

BackboneBuilder = Callable[..., nn.Module]
"""``(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> nn.Module`` with ``out_features``."""

_BUILDERS: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering ``builder`` as the backbone for ``arch: name``; returns it unchanged."""

    def register(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model arch {name!r} is registered twice ({_BUILDERS[name].__module__}."
                             f"{_BUILDERS[name].__qualname__} and {builder.__module__}.{builder.__qualname__})")
        _BUILDERS[name] = builder
        return builder

    return register


def known_backbones() -> list[str]:
    """The registered ``arch`` names, sorted."""
    return sorted(_BUILDERS)


def backbone_builder(arch: str) -> BackboneBuilder:
    """The builder registered for ``arch``; a ``ValueError`` naming the known archs when there is none."""
    try:
        return _BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown model arch {arch!r} (conf/model arch); known: "
                         f"{' | '.join(known_backbones())}") from None


def one_channel(arch: str, in_channels: int) -> None:
    """Backbones whose first convolution takes one channel refuse any other input width."""
    if in_channels != 1:
        raise ValueError(f"model arch {arch!r} takes one-channel (B, N) patterns, not in_channels={in_channels}")


def build_backbone(cfg: ModelConfig, input_length: int, in_channels: int = 1) -> nn.Module:
    """The backbone named by ``cfg.arch``."""
    return backbone_builder(cfg.arch)(cfg, input_length, in_channels)
