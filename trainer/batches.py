"""A batch on its way into the training step: why it cannot be trained on, and its tensors on the device.

A batch is a :class:`cluster.batch.Batch` of rendered patterns ((B, N) profiles or (B, C, H, W)
zone-axis images) or a :class:`cluster.peak_batch.PeakBatch` of peak lists, rendered here on the
training device.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from cluster.batch import Batch
from cluster.peak_batch import PeakBatch


def check_batch(batch: Batch, n_classes: int, input_length: int, image_channels: Optional[int] = None) -> Optional[str]:
    """Why a batch cannot be trained on (None if it can). ``image_channels``: the model reads (B, C, H, W)
    images (zone-axis models) instead of (B, input_length) patterns."""
    if isinstance(batch, PeakBatch):
        return batch.check(n_classes, input_length)
    p, y = batch.patterns, batch.labels
    if image_channels is not None:
        if p.ndim != 4 or p.shape[1] != image_channels:
            return f"patterns of shape {tuple(p.shape)}, expected (B, {image_channels}, H, W) images"
    elif p.ndim != 2 or p.shape[1] != input_length:
        return f"patterns of shape {tuple(p.shape)}, expected (B, {input_length})"
    if len(y) != len(p) or len(p) == 0:
        return f"{len(p)} patterns but {len(y)} labels"
    if (np.asarray(y) < 0).any() or (np.asarray(y) >= n_classes).any():
        return f"labels outside [0, {n_classes})"
    if not np.isfinite(np.asarray(p, np.float32)).all():
        return "non-finite pattern values"
    return None


def cell_shape_targets(batch: Batch, device: torch.device) -> Optional[torch.Tensor]:
    """(B, 5) float32 cell shapes of the batch's crystals on ``device``; None where the source does not
    know them (patterns read from files)."""
    cells = getattr(batch, "cell_shape", None)
    return None if cells is None else torch.as_tensor(np.asarray(cells, np.float32), device=device)


def to_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    non_blocking = device.type == "cuda"
    if isinstance(batch, PeakBatch):  # peak payload (cluster.payload=peaks): rendered here, on the device
        from cluster.torch_render import render_batch

        y = torch.as_tensor(np.asarray(batch.labels, np.int64), device=device)
        return render_batch(batch, device), y, torch.as_tensor(np.asarray(batch.log_volume, np.float32), device=device)
    x = torch.from_numpy(np.ascontiguousarray(batch.patterns))
    y = torch.from_numpy(np.asarray(batch.labels, np.int64))
    v = torch.from_numpy(np.asarray(batch.log_volume, np.float32))
    if non_blocking:
        x, y, v = x.pin_memory(), y.pin_memory(), v.pin_memory()
    x = x.to(device, non_blocking=non_blocking).float()
    return x, y.to(device, non_blocking=non_blocking), v.to(device, non_blocking=non_blocking)
