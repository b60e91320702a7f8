"""Ensemble members: a trained network loaded from its checkpoint, with the input axis and
preprocessing it was trained on and the temperature, top-answer map and threshold of its calibration file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from inference.patterns import InputSpec


@dataclass
class Member:
    """One network of an ensemble with what it needs to read patterns."""

    model: torch.nn.Module
    space_groups: list[int]
    spec: InputSpec
    volume_norm: Optional[dict] = None
    name: str = ""
    simulation: dict = field(default_factory=dict)
    temperature: float = 1.0
    calibration: Optional[dict] = None
    top_label: Optional[dict] = None   # the top answer's map (inference.top_label) after the temperature


def input_spec(representation: Any) -> InputSpec:
    """The input axis and training-time preprocessing of a model's representation
    (:mod:`simulator.representation`): a representation object, a checkpoint's ``representation``
    description, or a simulation config dict (with or without ``kind``; none: the 2-theta pattern)."""
    from simulator.representation import from_description, make_representation

    if hasattr(representation, "prepare_measured"):
        rep = representation
    elif isinstance(representation, dict) and "config" in representation and "axis" in representation:
        rep = from_description(representation)
    else:
        rep = make_representation(representation or None)
    return InputSpec(grid=np.asarray(rep.axis.values, dtype=np.float64), axis=rep.axis.short,
                     wavelength=rep.wavelength, preprocess=rep.preprocess, lorentz_polarisation=rep.training_lp,
                     measured_error=rep.measured_error)


def load_member(path: str | Path, device: str = "cpu", calibrated: bool = True) -> Member:
    """A checkpoint as an ensemble member (model in eval mode plus its input spec); with
    ``calibrated``, the temperature, top-answer map and refusal threshold of its ``calibration.json`` if
    it has one."""
    from inference.calibration import load_calibration
    from trainer.checkpoint import load_for_inference

    model, meta = load_for_inference(path, device=device)
    spec = input_spec(meta.input_representation())  # older checkpoints: the 2-theta pattern of their simulation
    if len(spec.grid) != meta.input_length:
        raise ValueError(f"{path}: the {meta.representation_kind} axis has {len(spec.grid)} points, the model "
                         f"expects {meta.input_length}")
    calibration = load_calibration(path) if calibrated else None
    return Member(model=model, space_groups=[int(s) for s in meta.space_groups], spec=spec,
                  volume_norm=meta.volume_norm, name=str(path), simulation=dict(meta.simulation),
                  temperature=float(calibration["temperature"]) if calibration else 1.0, calibration=calibration,
                  top_label=(calibration or {}).get("top_label") or None)
