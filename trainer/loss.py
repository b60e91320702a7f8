"""The training loss: space-group cross-entropy plus the optional volume, cell-shape and crystal-system heads'
terms."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def crystal_system_of_classes(space_groups: list[int], device: torch.device | None = None) -> torch.Tensor:
    """(C,) int64: the crystal-system index (0 triclinic .. 6 cubic, ``generator.symmetry.CRYSTAL_SYSTEMS``)
    of each class's space group: the targets of a crystal-system head."""
    from generator.symmetry import CRYSTAL_SYSTEMS, crystal_system

    return torch.tensor([CRYSTAL_SYSTEMS.index(crystal_system(int(s))) for s in space_groups], dtype=torch.int64,
                        device=device)


def compute_loss(out: dict[str, torch.Tensor], y: torch.Tensor, log_volume: torch.Tensor,
                 volume_norm: Optional[dict], volume_weight: float,
                 label_smoothing: float = 0.0, class_systems: Optional[torch.Tensor] = None,
                 crystal_system_weight: float = 1.0, cell_shape: Optional[torch.Tensor] = None,
                 cell_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy (optionally label-smoothed) plus ``volume_weight`` x MAE of the z-scored log volume
    (when there is a volume head), plus ``crystal_system_weight`` x the cross-entropy of the crystal system
    when the model has a crystal-system head (an output "crystal_system_logits" (B, 7); ``class_systems``
    (C,) maps class -> crystal system, :func:`crystal_system_of_classes`), plus ``cell_weight`` x MAE of
    the cell shape (B, 5) when the model has a cell head and the batch knows its cells (``cell_shape``).
    Models without these outputs get the plain cross-entropy."""
    logits = out["logits"].float()
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    parts = {"ce": ce.detach()}
    loss = ce
    if "log_volume" in out and volume_norm is not None:
        z = (log_volume - volume_norm["mean"]) / volume_norm["std"]
        mae = (out["log_volume"].float() - z).abs().mean()
        parts["volume_mae"] = mae.detach()
        loss = loss + volume_weight * mae
    if "cell_shape" in out and cell_shape is not None:
        cell_mae = (out["cell_shape"].float() - cell_shape).abs().mean()
        parts["cell_mae"] = cell_mae.detach()
        loss = loss + cell_weight * cell_mae
    if "crystal_system_logits" in out and class_systems is not None:
        cs_logits = out["crystal_system_logits"].float()
        cs_target = class_systems.to(y.device)[y]
        cs_ce = F.cross_entropy(cs_logits, cs_target, label_smoothing=label_smoothing)
        parts["crystal_system_ce"] = cs_ce.detach()
        parts["crystal_system_correct"] = (cs_logits.detach().argmax(1) == cs_target).sum()
        loss = loss + crystal_system_weight * cs_ce
    parts["correct"] = (logits.detach().argmax(1) == y).sum()
    return loss, parts
