"""What crosses from the generation side to the trainer: whole batches of patterns with labels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np


@dataclass
class Batch:
    """One training or evaluation batch.

    Attributes:
        patterns: (B, N) float16 or float32 model inputs (already preprocessed, in [0, 1]).
        labels: (B,) int64 class indices into ``Statistics.space_groups``.
        space_groups: (B,) int16 International space-group numbers.
        log_volume: (B,) float32 natural log of the conventional cell volume in A^3.
        cell_shape: (B, 5) float32 scale-free cell shape (``generator.crystal.SyntheticCrystal.cell_shape``),
            or None where the source does not know the cells (patterns read from files).
    """

    patterns: np.ndarray
    labels: np.ndarray
    space_groups: np.ndarray
    log_volume: np.ndarray
    cell_shape: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cell_shapes(crystals: list) -> np.ndarray:
    """(B, 5) float32 cell shapes of ``crystals`` (anything with a ``cell_shape``)."""
    return np.array([c.cell_shape for c in crystals], np.float32).reshape(len(crystals), 5)


class BatchSource(Protocol):
    """Anything the trainer can pull batches from (a Ray stream, an in-process generator, real structures)."""

    def get(self, timeout: float) -> Batch:
        """Next batch; raises ``TimeoutError`` with a clear message after ``timeout`` seconds."""

    def metrics(self) -> dict[str, float]:
        """Throughput and health figures to log (queue length, crystals/s, rejections...)."""

    def close(self) -> None:
        """Stop producers and free their resources."""
