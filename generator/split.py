"""Seeded splits of a database into a statistics side and a test side.

The structure-type split (the paper's) assigns whole structure types to one side, so the test
side holds structure types the generator's statistics never saw. The random split is the
baseline of training on real structures directly. Both apply the paper's filters first
(conventional volume <= 7000 A^3, fewer than 100 atoms in the asymmetric unit).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generator.config import SplitConfig, as_config
from generator.hashing import json_digest


@dataclass
class Split:
    """Ids of the statistics side and the test side of one database.

    Attributes:
        kind: "structure_type" or "random".
        seed: seed of the shuffle.
        statistics_fraction: share of structure types (or crystals, random split) on the statistics side.
        max_volume: conventional-volume filter, A^3 (kept when <=).
        max_asym_atoms: asymmetric-unit filter (kept when <).
        source_hash: the database's source hash.
        statistics_ids: entry ids of the statistics side, in database order.
        test_ids: entry ids of the test side, in database order.
        filtered: reason -> crystals removed by the filters before splitting.
        hash: hex digest of everything above; changes with the inputs and the seed.
    """

    kind: str
    seed: int
    statistics_fraction: float
    max_volume: float
    max_asym_atoms: int
    source_hash: str
    statistics_ids: list[str]
    test_ids: list[str]
    filtered: dict[str, int] = field(default_factory=dict)
    hash: str = ""

    def __post_init__(self):
        if not self.hash:
            self.hash = self.compute_hash()

    def compute_hash(self) -> str:
        payload = {k: v for k, v in asdict(self).items() if k != "hash"}
        return json_digest(payload)

    @property
    def n_statistics(self) -> int:
        return len(self.statistics_ids)

    @property
    def n_test(self) -> int:
        return len(self.test_ids)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        """Read a split written by :meth:`save`; a tampered file (hash mismatch) is an error."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            split = cls(**data)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable split file ({exc})") from exc
        if split.hash != split.compute_hash():
            raise ValueError(f"{path}: split hash does not match its content")
        return split


def _filter(database, max_volume: float, max_asym_atoms: int):
    kept, filtered = [], {"volume": 0, "asym_atoms": 0}
    for rec in database:
        if not rec.volume <= max_volume:
            filtered["volume"] += 1
        elif not rec.n_asym < max_asym_atoms:
            filtered["asym_atoms"] += 1
        else:
            kept.append(rec)
    return kept, filtered


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"statistics_fraction must be in (0, 1), got {fraction}")


def structure_type_split(database, statistics_fraction: float = SplitConfig.statistics_fraction,
                         seed: int = SplitConfig.seed,
                         max_volume: float = SplitConfig.max_volume,
                         max_asym_atoms: int = SplitConfig.max_asym_atoms) -> Split:
    """Assign a seeded ``statistics_fraction`` of the structure types (with all their crystals) to the statistics side.

    Raises:
        AssertionError: if a structure type ends up on both sides (cannot happen by construction;
            checked because the whole benchmark rests on it).
    """
    _check_fraction(statistics_fraction)
    kept, filtered = _filter(database, max_volume, max_asym_atoms)
    types = sorted({r.structure_type for r in kept})
    order = np.random.default_rng(seed).permutation(len(types))
    n_stat = int(round(statistics_fraction * len(types)))
    stat_types = {types[i] for i in order[:n_stat]}
    stat_ids = [r.id for r in kept if r.structure_type in stat_types]
    test_ids = [r.id for r in kept if r.structure_type not in stat_types]
    by_id = {r.id: r.structure_type for r in kept}
    shared = {by_id[i] for i in stat_ids} & {by_id[i] for i in test_ids}
    if shared:
        raise AssertionError(f"structure types on both sides of the split: {sorted(shared)[:5]}")
    return Split(kind="structure_type", seed=int(seed), statistics_fraction=float(statistics_fraction),
                 max_volume=float(max_volume), max_asym_atoms=int(max_asym_atoms), source_hash=database.source_hash,
                 statistics_ids=stat_ids, test_ids=test_ids, filtered=filtered)


def random_split(database, statistics_fraction: float = SplitConfig.statistics_fraction, seed: int = SplitConfig.seed,
                 max_volume: float = SplitConfig.max_volume,
                 max_asym_atoms: int = SplitConfig.max_asym_atoms) -> Split:
    """Assign a seeded ``statistics_fraction`` of the crystals to the statistics side, ignoring structure types."""
    _check_fraction(statistics_fraction)
    kept, filtered = _filter(database, max_volume, max_asym_atoms)
    order = np.random.default_rng(seed).permutation(len(kept))
    stat = np.zeros(len(kept), bool)
    stat[order[: int(round(statistics_fraction * len(kept)))]] = True
    return Split(kind="random", seed=int(seed), statistics_fraction=float(statistics_fraction),
                 max_volume=float(max_volume), max_asym_atoms=int(max_asym_atoms), source_hash=database.source_hash,
                 statistics_ids=[r.id for r, s in zip(kept, stat) if s],
                 test_ids=[r.id for r, s in zip(kept, stat) if not s], filtered=filtered)


def make_split(database, cfg: Any = None, **kwargs) -> Split:
    """The split a ``conf/split`` node describes (``kind``: structure_type or random)."""
    cfg = as_config(SplitConfig, cfg, **kwargs)
    makers = {"structure_type": structure_type_split, "random": random_split}
    if cfg.kind not in makers:
        raise ValueError(f"unknown split kind {cfg.kind!r}; use one of {sorted(makers)}")
    return makers[cfg.kind](database, statistics_fraction=cfg.statistics_fraction, seed=cfg.seed,
                            max_volume=cfg.max_volume, max_asym_atoms=cfg.max_asym_atoms)
