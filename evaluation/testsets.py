"""Test sets of the evaluators, simulated once and cached on disk.

Real sets come from the prepared database and split (``generator.pipeline.PreparedData``):

- ``test_database``: held-out structure types, labelled with the database's own space group;
- ``test_spglib``: the same crystals, labelled by spglib under the project tolerance;
- ``test_ordered``: ``test_spglib`` without crystals that have partial occupancies;
- ``statistics_real``: statistics-side real crystals (what the statistics were drawn from);
- ``randomised_coordinates`` / ``randomised_lattice`` / ``randomised_both``: held-out crystals with
  re-randomised coordinates and/or lattice (``generator.randomise``).

``synthetic`` is a fixed set of fresh synthetic crystals.

One rule for every evaluation path (the evaluators here and ``python -m inference.evaluate --heldout``):

- the held-out crystals are :func:`heldout_ids` of the split's test side: all of them sorted, or
  ``max_test_crystals`` of them drawn with the seed (``--limit`` is the same cap);
- a crystal whose label (of that set's kind) is not among ``Statistics.space_groups`` is *out of
  scope*: ``top{k}`` are over the ``n`` scored (in-class) crystals, ``top{k}_all`` over
  ``n + n_out_of_scope`` with the out-of-scope ones counted wrong (as in the paper, ``top{k}`` is
  the headline figure); a crystal whose simulation failed is in neither;
- real crystals are simulated one after another from one seeded stream; with the impurity phase
  enabled each gets an impurity phase from another crystal of the same set (:func:`impurity_partners`),
  as synthetic crystals get one from another crystal of their batch.

Simulated patterns are cached as NPZ files keyed by the split hash, the simulation-config hash, the
crystal ids and the seed, so a rerun simulates nothing (:mod:`evaluation.pattern_cache`); the crystals
are simulated by :mod:`evaluation.simulate`.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from evaluation.config import EvaluationConfig, to_dataclass
# _cache_path: the name cluster.real_source imports
from evaluation.pattern_cache import cache_path as _cache_path
from evaluation.pattern_cache import (cached_patterns, config_hash, pattern_cache_dir, save_npz, simulated_ok,
                                      simulation_hash, statistics_hash)
from evaluation.simulate import IMPURITY_RULE, impurity_enabled, impurity_key, impurity_partners, simulate_crystals
from generator.seeding import EVALUATION, seed_for

__all__ = ["IMPURITY_RULE", "KNOWN_SETS", "RANDOMISED_SETS", "REAL_SETS", "TestSet", "build_test_sets", "cached_patterns",
           "config_hash", "heldout_ids", "heldout_patterns", "impurity_enabled", "impurity_partners",
           "pattern_cache_dir", "simulate_crystals", "simulation_hash", "statistics_hash", "synthetic_test_set"]

log = logging.getLogger(__name__)

REAL_SETS = ("test_database", "test_spglib", "test_ordered", "statistics_real")
RANDOMISED_SETS = {"randomised_coordinates": (True, False), "randomised_lattice": (False, True),
                   "randomised_both": (True, True)}
KNOWN_SETS = REAL_SETS + ("synthetic",) + tuple(RANDOMISED_SETS)

# Seed-tree branches below EVALUATION (patterns of a set are reproducible whatever else is built).
_HELD_OUT, _STATISTICS_SIDE, _SYNTHETIC, _RANDOMISED = 0, 1, 2, 3


@dataclass
class TestSet:
    """One scored set.

    Attributes:
        name: e.g. "test_spglib".
        kind: "real" or "synthetic" (the gap is synthetic minus real).
        patterns: (n, N) model inputs.
        labels: (n,) int64 class indices into ``Statistics.space_groups``.
        space_groups: (n,) int16 International numbers of the labels.
        log_volume: (n,) float32 log conventional cell volume (A^3).
        ids: database ids of the crystals (empty for synthetic sets).
        n_out_of_scope: crystals left out because their label is not a classified space group
            (``n_unclassified`` is the same number under its former name).
    """

    __test__ = False  # not a pytest class

    name: str
    kind: str
    patterns: np.ndarray
    labels: np.ndarray
    space_groups: np.ndarray
    log_volume: np.ndarray
    ids: list[str] = dataclasses.field(default_factory=list)
    n_out_of_scope: int = 0

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def n_unclassified(self) -> int:
        return self.n_out_of_scope


def _records(database, ids: Sequence[str]) -> list:
    return [database[i] for i in ids]


def _class_index(statistics) -> dict[int, int]:
    """International number -> class index into ``statistics.space_groups``."""
    return {int(sg): i for i, sg in enumerate(statistics.space_groups)}


def _subset(ids: Sequence[str], cap: int | None, seed: int, branch: int) -> list[str]:
    ids = sorted(map(str, ids))
    if cap is None or cap >= len(ids):
        return ids
    if int(cap) < 0:
        raise ValueError(f"evaluation.max_test_crystals (--limit) must be >= 0, got {cap}")
    rng = np.random.default_rng(seed_for(seed, EVALUATION, branch, 99))
    return sorted(rng.choice(ids, size=int(cap), replace=False).tolist())


def heldout_ids(test_ids: Sequence[str], cap: int | None, seed: int) -> list[str]:
    """The held-out crystals every evaluation path scores: the ids sorted, all of them (``cap`` None)
    or ``cap`` of them drawn with ``seed`` (``evaluation.max_test_crystals``, ``--limit``)."""
    return _subset(test_ids, cap, seed, _HELD_OUT)


def heldout_patterns(prepared, cfg: EvaluationConfig | Any, simulator, sim_hash: str | None = None):
    """The held-out crystals of :func:`heldout_ids` and their patterns, as the evaluators score them.

    Returns (ids, records, patterns (n, N) of ``cfg.dtype`` with NaN rows where simulation failed,
    ok (n,) bool).
    """
    cfg = to_dataclass(EvaluationConfig, cfg)
    return _real_patterns("held_out", prepared.split.test_ids, _HELD_OUT, prepared, cfg, simulator,
                          sim_hash or simulation_hash(simulator.config))


def _labelled(name: str, kind: str, patterns: np.ndarray, ok: np.ndarray, space_groups: np.ndarray,
              volumes: np.ndarray, ids: list[str], class_index: dict[int, int], keep: np.ndarray | None = None) -> TestSet:
    classified = np.array([int(s) in class_index for s in space_groups], bool)
    if keep is not None:
        ok = ok & keep
    mask = ok & classified
    sg = np.asarray(space_groups, np.int64)[mask]
    # sets over the same crystals share one array (pickled and shipped to evaluators once)
    return TestSet(name, kind, patterns if mask.all() else patterns[mask], np.array([class_index[int(s)] for s in sg], np.int64),
                   sg.astype(np.int16), np.log(np.asarray(volumes, float)[mask]).astype(np.float32),
                   [i for i, m in zip(ids, mask) if m], n_out_of_scope=int((ok & ~classified).sum()))


def _spglib_labelled(name: str, patterns: np.ndarray, ok: np.ndarray, records: list, ids: list[str],
                     class_index: dict[int, int]) -> TestSet:
    """A real set of ``records`` labelled by their spglib space groups."""
    return _labelled(name, "real", patterns, ok, np.array([r.space_group for r in records]),
                     np.array([r.volume for r in records], float), ids, class_index)


def _real_cache_path(cfg: EvaluationConfig, name: str, simulator, *keys: Any) -> Path | None:
    """Cache file of the real patterns of set ``name``; with the impurity phase enabled its rule joins the
    keys (without it the key, and the cache, are as before the impurity phase existed)."""
    rule = impurity_key(simulator)
    return _cache_path(pattern_cache_dir(cfg), name, *keys, *([rule] if rule else []))


def _simulated_real(path: Path | None, crystals: Callable[[], list], simulator, dtype: str,
                    seeds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Patterns (n, N) of ``dtype`` read from ``path``, else simulated from ``crystals()`` (None: not
    simulable) and cached, with NaN rows where simulation failed; and the (n,) bool mask of the rows
    that simulated. ``seeds``: of the pattern stream and of the impurity partners."""
    def simulate():
        pats, ok = simulate_crystals(crystals(), simulator, np.random.default_rng(seeds[0]), dtype,
                                     impurity_rng=np.random.default_rng(seeds[1]))
        pats[~ok] = np.nan
        return pats

    pats = cached_patterns(path, simulate)
    return pats, simulated_ok(pats)


def _real_patterns(kind: str, side_ids, stream: int, prepared, cfg, simulator, sim_hash: str):
    """A seeded subset of one side of the split, its records and their patterns (simulated once, then cached).

    Returns (ids, records, patterns (n, N) with NaN rows where simulation failed, ok (n,) bool).
    """
    ids = _subset(side_ids, cfg.max_test_crystals, cfg.seed, stream)
    records = _records(prepared.database, ids)
    path = _real_cache_path(cfg, kind, simulator, prepared.split.hash, sim_hash, ids, cfg.seed, cfg.dtype)
    pats, ok = _simulated_real(path, lambda: [r.to_crystal() for r in records], simulator, cfg.dtype,
                               (seed_for(cfg.seed, EVALUATION, stream), seed_for(cfg.seed, EVALUATION, stream, 7)))
    return ids, records, pats, ok


def build_test_sets(cfg: EvaluationConfig | Any, statistics, prepared=None, *, simulation_cfg=None,
                    generator_cfg=None) -> list[TestSet]:
    """The sets named in ``cfg.test_sets`` (real ones need ``prepared``), simulated or read from the cache
    through the representation of ``simulation_cfg`` (2-theta pattern, ideal 1/d profile or G(r))."""
    from simulator.representation import make_representation

    cfg = to_dataclass(EvaluationConfig, cfg)
    unknown = [n for n in cfg.test_sets if n not in KNOWN_SETS]
    if unknown:
        raise ValueError(f"unknown test sets {unknown}; known: {list(KNOWN_SETS)}")
    needs_real = [n for n in cfg.test_sets if n != "synthetic"]
    if needs_real and prepared is None:
        raise ValueError(f"test sets {needs_real} need the prepared database and split")
    simulator = make_representation(simulation_cfg)
    sim_hash = simulation_hash(simulator.config)
    class_index = _class_index(statistics)
    out: list[TestSet] = []

    held_out = {"test_database", "test_spglib", "test_ordered"} & set(cfg.test_sets)
    if held_out:
        ids, records, pats, ok = heldout_patterns(prepared, cfg, simulator, sim_hash)
        vol = np.array([r.volume for r in records], float)
        for name in cfg.test_sets:
            if name == "test_database":
                sgs = np.array([r.database_space_group for r in records], np.int64)
                out.append(_labelled(name, "real", pats, ok, sgs, vol, ids, class_index))
            elif name in ("test_spglib", "test_ordered"):
                sgs = np.array([r.space_group for r in records], np.int64)
                keep = None if name == "test_spglib" else ~np.array([bool(r.partial_occupancy) for r in records])
                out.append(_labelled(name, "real", pats, ok, sgs, vol, ids, class_index, keep))

    if "statistics_real" in cfg.test_sets:
        ids, records, pats, ok = _real_patterns("statistics_real", prepared.split.statistics_ids, _STATISTICS_SIDE,
                                                prepared, cfg, simulator, sim_hash)
        out.append(_spglib_labelled("statistics_real", pats, ok, records, ids, class_index))

    if "synthetic" in cfg.test_sets:
        out.append(synthetic_test_set(statistics, cfg, simulator, generator_cfg))

    for name in (n for n in cfg.test_sets if n in RANDOMISED_SETS):
        out.append(_randomised_set(name, prepared, statistics, cfg, simulator, sim_hash, class_index))
    order = {n: i for i, n in enumerate(cfg.test_sets)}
    return sorted(out, key=lambda t: order[t.name])


def synthetic_test_set(statistics, cfg: EvaluationConfig, simulator, generator_cfg=None) -> TestSet:
    """A fixed set of ``cfg.synthetic_size`` fresh synthetic crystals (cached like the real sets)."""
    from generator import CrystalSampler, GeneratorConfig

    gen_cfg = to_dataclass(GeneratorConfig, generator_cfg)
    path = _cache_path(pattern_cache_dir(cfg), "synthetic", statistics_hash(statistics), config_hash(gen_cfg),
                       simulation_hash(simulator.config), cfg.synthetic_size, cfg.seed, cfg.dtype)
    if path is not None and path.exists():
        with np.load(path) as f:
            pats, sgs, logv = f["patterns"], f["space_groups"], f["log_volume"]
    else:
        sampler = CrystalSampler.from_config(statistics, gen_cfg, seed=seed_for(cfg.seed, EVALUATION, _SYNTHETIC, 0))
        crystals = sampler.sample_many(cfg.synthetic_size)
        rng = np.random.default_rng(seed_for(cfg.seed, EVALUATION, _SYNTHETIC, 1))
        pats = simulator.patterns(crystals, rng).astype(cfg.dtype)
        sgs = np.array([c.space_group for c in crystals], np.int16)
        logv = np.log([c.volume for c in crystals]).astype(np.float32)
        if path is not None:
            save_npz(path, patterns=pats, space_groups=sgs, log_volume=logv)
    class_index = _class_index(statistics)
    labels = np.array([class_index[int(s)] for s in sgs], np.int64)
    return TestSet("synthetic", "synthetic", pats, labels, sgs.astype(np.int16), logv.astype(np.float32))


def _randomised_set(name, prepared, statistics, cfg, simulator, sim_hash, class_index) -> TestSet:
    """Held-out crystals with re-randomised coordinates and/or lattice (spglib labels kept)."""
    from generator.randomise import CrystalRandomiser

    coords, lattice = RANDOMISED_SETS[name]
    branch = (_RANDOMISED, list(RANDOMISED_SETS).index(name))
    ids = heldout_ids(prepared.split.test_ids, cfg.max_test_crystals, cfg.seed)
    records = _records(prepared.database, ids)
    path = _real_cache_path(cfg, name, simulator, prepared.split.hash, sim_hash, statistics_hash(statistics), ids,
                            cfg.seed, cfg.dtype)

    def randomised() -> list:
        randomiser = CrystalRandomiser(statistics, seed=seed_for(cfg.seed, EVALUATION, *branch, 0))
        crystals = []
        for r in records:
            try:
                crystals.append(randomiser.randomise(_structure(r), int(r.space_group), coordinates=coords,
                                                     lattice=lattice))
            except Exception as exc:  # no valid randomisation: left out like a failed simulation
                log.info("%s: crystal %s not randomised: %s", name, getattr(r, "id", "?"), exc)
                crystals.append(None)
        return crystals

    pats, ok = _simulated_real(path, randomised, simulator, cfg.dtype,
                               (seed_for(cfg.seed, EVALUATION, *branch, 1), seed_for(cfg.seed, EVALUATION, *branch, 2)))
    return _spglib_labelled(name, pats, ok, records, ids, class_index)


def _structure(record):
    s = record.structure
    return s() if callable(s) else s
