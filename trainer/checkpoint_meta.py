"""What a checkpoint says about its model: :class:`CheckpointMeta`, the ``meta.json`` of a checkpoint.

Kept apart from the file layout and I/O of :mod:`trainer.checkpoint` so that readers of a model's
description (class list, input representation, volume normalisation) need no save/load machinery.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """Everything needed to rebuild a model and feed it patterns it understands.

    Attributes:
        space_groups: International space-group numbers; index i is the model's class i.
        model: the model config (``conf/model``) as a plain dict, for :func:`trainer.models.build_model`.
        input_length: number of pattern points the model expects.
        simulation: the simulation config the training patterns came from (grid / wavelength /
            peak shape / preprocessing) as a plain dict; measured patterns must be brought onto it.
        representation: the input representation with its parameters, ``describe()`` of
            :mod:`simulator.representation` ({"kind", "axis", "shape", "config"}); empty in checkpoints
            written before representations had kinds, which are 2-theta patterns of ``simulation``
            (:meth:`input_representation` rebuilds either).
        volume_norm: ``{"mean": m, "std": s}`` of the natural log of the conventional cell volume
            (A^3) the volume head was trained on (prediction z -> log V = m + s z); None without
            a volume head.
        step: optimizer steps taken.
        samples_seen: training patterns consumed (all workers).
        config: the whole run config (resolved), for provenance.
        metrics: last evaluation metrics at save time (may be empty).
        final: True for the checkpoint written at the end of a run.
        format_version: checkpoint layout version.
        created: UTC time stamp.
    """

    space_groups: list[int]
    model: dict
    input_length: int
    simulation: dict = field(default_factory=dict)
    representation: dict = field(default_factory=dict)
    volume_norm: Optional[dict] = None
    step: int = 0
    samples_seen: int = 0
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    final: bool = False
    format_version: int = FORMAT_VERSION
    created: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.space_groups)

    @property
    def representation_kind(self) -> str:
        """"two_theta", "ideal" or "pdf" (checkpoints without a representation: "two_theta")."""
        return str((self.representation or {}).get("kind", "two_theta"))

    def input_representation(self):
        """The :mod:`simulator.representation` object that makes (and prepares measured) inputs for this model."""
        from simulator.representation import from_description

        return from_description(self.representation, self.simulation)

    def log_volume(self, z: Any) -> Any:
        """Natural log of the cell volume from the volume head's z-score output."""
        if self.volume_norm is None:
            raise ValueError("this checkpoint has no volume head normalisation")
        return self.volume_norm["mean"] + self.volume_norm["std"] * z

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict) -> "CheckpointMeta":
        version = int(data.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise ValueError(f"checkpoint format {version} is newer than this code understands ({FORMAT_VERSION})")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
