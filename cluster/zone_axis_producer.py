"""Producer of zone-axis image batches: synthetic crystals -> (B, 3, H, W) images (Tiong et al.).

Same protocol as :class:`cluster.producer.SyntheticProducer` (``next_batch() -> Batch``, ``stats()``)
and the same seeding (a ``SeedSequence`` split into the sampler's and the simulation's streams),
so it runs in a Ray generation actor or in-process unchanged. ``Batch.patterns`` holds
(B, 3, H, W) images: float16 (2 bytes per pixel, 98,304 bytes per sample at 128 x 128) or uint8
(``round(255 v)``, 49,152 bytes per sample; the model scales it back, see ``input_scale`` of
``trainer.models.msdn``).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.batch import Batch
from cluster.producer import _make_sampler, crystal_batch

MAX_REDRAWS = 50  # crystals drawn in place of one that cannot be imaged before giving up


def to_payload(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """[0, 1] float images -> the queue's dtype (uint8: 0..255)."""
    if np.dtype(dtype) == np.uint8:
        return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return images.astype(dtype, copy=False)


class ZoneAxisProducer:
    """Synthetic crystals from a ``generator.CrystalSampler`` imaged by a ``simulator.zone_axis.ZoneAxisSimulator``.

    The images are deterministic given the crystal (no per-image noise), so the simulation stream
    is not drawn from yet; it is kept for future imperfections so that adding them changes no seed.
    """

    def __init__(self, statistics, generator_cfg, zone_axis_cfg, batch_size: int, dtype: str,
                 seed: np.random.SeedSequence):
        from generator import CrystalSampler
        from simulator.zone_axis import ZoneAxisSimulator

        sampler_seed, simulation_seed = seed.spawn(2)
        self.sampler = _make_sampler(CrystalSampler, statistics, generator_cfg, sampler_seed)
        self.simulator = ZoneAxisSimulator(zone_axis_cfg)
        self.rng = np.random.default_rng(simulation_seed)
        self.batch_size = int(batch_size)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.uint8), np.dtype(np.float16), np.dtype(np.float32)):
            raise ValueError(f"cluster.dtype={dtype!r}: zone-axis batches are uint8, float16 or float32")
        self.class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
        self._crystals = 0
        self._batches = 0
        self._seconds = 0.0
        self._sample_seconds = 0.0
        self._failures: Counter = Counter()

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one sample's images in the queue (labels and volume add 14 more)."""
        return int(np.prod(self.simulator.shape)) * self.dtype.itemsize

    def next_batch(self) -> Batch:
        t0 = time.perf_counter()
        crystals = self.sampler.sample_many(self.batch_size)
        t1 = time.perf_counter()
        images = np.empty((self.batch_size,) + self.simulator.shape, np.float32)
        for i in range(self.batch_size):
            for attempt in range(MAX_REDRAWS + 1):
                try:
                    images[i] = self.simulator(crystals[i])
                    break
                except ValueError as err:  # e.g. more spots than max_spots: draw another crystal
                    self._failures[type(err).__name__] += 1
                    if attempt == MAX_REDRAWS:
                        raise RuntimeError(f"{MAX_REDRAWS + 1} crystals in a row failed to image: {err}") from err
                    crystals[i] = self.sampler.sample_many(1)[0]
        batch = crystal_batch(to_payload(images, self.dtype), crystals, self.class_index)
        self._crystals += len(crystals)
        self._batches += 1
        self._sample_seconds += t1 - t0
        self._seconds += time.perf_counter() - t0
        return batch

    def stats(self) -> dict[str, Any]:
        rejections = Counter(getattr(self.sampler, "rejections", {}) or {})
        rejections.update({f"zone_axis_{k}": v for k, v in self._failures.items()})
        return {"crystals": self._crystals, "batches": self._batches, "seconds": self._seconds,
                "sample_seconds": self._sample_seconds, "rejections": dict(rejections),
                "bytes_per_sample": self.bytes_per_sample}


@dataclass
class ZoneAxisProducerFactory:
    """Picklable factory of :class:`ZoneAxisProducer` (what generation actors receive)."""

    statistics: Any
    generator_cfg: Any
    zone_axis_cfg: Any
    batch_size: int
    dtype: str = "float16"

    def __call__(self, seed: np.random.SeedSequence) -> ZoneAxisProducer:
        return ZoneAxisProducer(self.statistics, self.generator_cfg, self.zone_axis_cfg, self.batch_size,
                                self.dtype, seed)


def is_zone_axis(simulation_cfg: Any) -> bool:
    """Whether a simulation/representation config asks for zone-axis images (its ``kind`` is "zone_axis")."""
    if simulation_cfg is None:
        return False
    kind = simulation_cfg.get("kind") if isinstance(simulation_cfg, dict) or hasattr(simulation_cfg, "keys") \
        else getattr(simulation_cfg, "kind", None)
    return kind == "zone_axis"
