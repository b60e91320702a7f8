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
crystal ids and the seed, so a rerun simulates nothing.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from evaluation.config import EvaluationConfig, to_dataclass
from generator.seeding import EVALUATION, seed_for
from generator.hashing import json_digest

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


# --------------------------------------------------------------------------------------------
# hashing and caching




def config_hash(cfg: Any) -> str:
    """Hash of a dataclass / OmegaConf / dict config (field order does not matter)."""
    if dataclasses.is_dataclass(cfg):
        cfg = dataclasses.asdict(cfg)
    else:
        try:
            from omegaconf import OmegaConf

            if OmegaConf.is_config(cfg):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:
            pass
    return json_digest(cfg)


def simulation_hash(simulation_cfg: Any) -> str:
    """Hash of the validated simulation config (defaults filled in) of any representation; a 2-theta
    config hashes as it did before representations had kinds, so existing caches stay valid."""
    from simulator.representation import representation_config

    return config_hash(representation_config(simulation_cfg)[1])


def statistics_hash(statistics) -> str:
    """Hash of what identifies generation statistics (provenance, classes, prior)."""
    return json_digest({"provenance": statistics.provenance, "space_groups": list(map(int, statistics.space_groups)),
                    "prior": np.asarray(statistics.prior, float).round(12).tolist()})


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def cached_patterns(path: Path | None, simulate: Callable[[], np.ndarray]) -> np.ndarray:
    """The array stored at ``path``, else ``simulate()`` saved there (atomically). ``path`` None: no cache."""
    if path is not None and path.exists():
        with np.load(path) as f:
            return f["patterns"]
    patterns = simulate()
    if path is not None:
        _save_npz(path, patterns=patterns)
        log.info("cached %s patterns in %s", patterns.shape, path)
    return patterns


def pattern_cache_dir(cfg: EvaluationConfig) -> Path | None:
    """Folder of cached test patterns (None when caching is off)."""
    if not cfg.cache:
        return None
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    from generator.config import default_cache_dir

    return default_cache_dir() / "test_patterns"


def _cache_path(cache_dir: str | os.PathLike | None, name: str, *keys: Any) -> Path | None:
    if cache_dir is None:
        return None
    return Path(cache_dir) / f"{name}-{json_digest(list(keys))[:20]}.npz"


# --------------------------------------------------------------------------------------------
# simulation


# Part of the cache key of real patterns simulated with an impurity phase from another crystal of the set.
IMPURITY_RULE = "partner-from-set-1"
_IMPURITY_TRIES = 3


def impurity_enabled(simulator) -> bool:
    """Whether ``simulator`` (a representation) mixes in an impurity phase (only 2-theta patterns can)."""
    impurity = getattr(simulator.config, "impurity", None)
    return bool(impurity is not None and impurity.enabled)


def impurity_partners(n: int, rng: np.random.Generator, usable: Sequence[bool] | None = None,
                      tries: int = _IMPURITY_TRIES) -> list[list[int]]:
    """For each of ``n`` crystals, up to ``tries`` distinct indices of *other* usable crystals of the same
    set, in the order they are tried as its impurity phase (drawn with ``rng``; empty when no other
    crystal is usable)."""
    usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    out = []
    for i in range(n):
        candidates = np.flatnonzero(usable)
        candidates = candidates[candidates != i]
        k = min(int(tries), len(candidates))
        out.append(rng.choice(candidates, size=k, replace=False).tolist() if k else [])
    return out


def simulate_crystals(crystals: Sequence, simulator, rng: np.random.Generator, dtype: str = "float16",
                      variants: int = 1, impurity_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(len * variants, N) patterns of ``crystals`` (variant-major per crystal) and a (len,) bool mask of
    the crystals that simulated (a failure leaves zero rows and False). ``simulator``: a representation
    (``simulator.representation.make_representation``) or a ``PatternSimulator``; its ``patterns`` is called.

    With the simulator's impurity phase enabled and ``impurity_rng`` given, crystal i gets its impurity
    phase from another crystal of ``crystals`` (:func:`impurity_partners`, drawn with ``impurity_rng``;
    a partner that fails to simulate is replaced by the next one drawn); without ``impurity_rng`` a
    crystal gets no impurity phase."""
    n_points = simulator.grid.shape[0]
    out = np.zeros((len(crystals) * variants, n_points), np.dtype(dtype))
    ok = np.ones(len(crystals), bool)
    partners = None
    if impurity_rng is not None and impurity_enabled(simulator):
        partners = impurity_partners(len(crystals), impurity_rng, [c is not None for c in crystals])
    for i, crystal in enumerate(crystals):
        try:
            if crystal is None:
                raise ValueError("no crystal")
            if partners is None or not partners[i]:
                out[i * variants:(i + 1) * variants] = simulator.patterns([crystal] * variants, rng)
                continue
            for attempt, j in enumerate(partners[i]):
                try:
                    out[i * variants:(i + 1) * variants] = simulator.patterns([crystal] * variants, rng,
                                                                             impurities=[crystals[j]] * variants)
                    break
                except Exception:
                    if attempt == len(partners[i]) - 1:
                        raise
                    log.info("impurity partner %d of crystal %d failed; trying the next", j, i)
        except Exception as exc:  # a pathological real structure must not stop evaluation
            ok[i] = False
            if crystal is not None:
                log.warning("simulation failed for crystal %d: %s", i, exc)
    return out, ok


def _impurity_key(simulator) -> str | None:
    return IMPURITY_RULE if impurity_enabled(simulator) else None


def _records(database, ids: Sequence[str]) -> list:
    return [database[i] for i in ids]


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


def _real_patterns(kind: str, side_ids, stream: int, prepared, cfg, simulator, sim_hash: str):
    """A seeded subset of one side of the split, its records and their patterns (simulated once, then cached).

    Returns (ids, records, patterns (n, N) with NaN rows where simulation failed, ok (n,) bool).
    """
    ids = _subset(side_ids, cfg.max_test_crystals, cfg.seed, stream)
    records = _records(prepared.database, ids)
    keys = [prepared.split.hash, sim_hash, ids, cfg.seed, cfg.dtype]
    if _impurity_key(simulator):  # without the impurity phase the key (and the cache) is as before
        keys.append(_impurity_key(simulator))
    path = _cache_path(pattern_cache_dir(cfg), kind, *keys)

    def simulate():
        rng = np.random.default_rng(seed_for(cfg.seed, EVALUATION, stream))
        impurity_rng = np.random.default_rng(seed_for(cfg.seed, EVALUATION, stream, 7))
        pats, ok = simulate_crystals([r.to_crystal() for r in records], simulator, rng, cfg.dtype,
                                     impurity_rng=impurity_rng)
        pats[~ok] = np.nan
        return pats

    pats = cached_patterns(path, simulate)
    ok = ~np.isnan(pats[:, 0].astype(np.float32)) if len(pats) else np.zeros(0, bool)
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
    class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
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
        out.append(_labelled("statistics_real", "real", pats, ok, np.array([r.space_group for r in records]),
                             np.array([r.volume for r in records], float), ids, class_index))

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
            _save_npz(path, patterns=pats, space_groups=sgs, log_volume=logv)
    class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
    labels = np.array([class_index[int(s)] for s in sgs], np.int64)
    return TestSet("synthetic", "synthetic", pats, labels, sgs.astype(np.int16), logv.astype(np.float32))


def _randomised_set(name, prepared, statistics, cfg, simulator, sim_hash, class_index) -> TestSet:
    """Held-out crystals with re-randomised coordinates and/or lattice (spglib labels kept)."""
    from generator.randomise import CrystalRandomiser

    coords, lattice = RANDOMISED_SETS[name]
    branch = (_RANDOMISED, list(RANDOMISED_SETS).index(name))
    ids = heldout_ids(prepared.split.test_ids, cfg.max_test_crystals, cfg.seed)
    records = _records(prepared.database, ids)
    keys = [prepared.split.hash, sim_hash, statistics_hash(statistics), ids, cfg.seed, cfg.dtype]
    if _impurity_key(simulator):
        keys.append(_impurity_key(simulator))
    path = _cache_path(pattern_cache_dir(cfg), name, *keys)

    def simulate():
        randomiser = CrystalRandomiser(statistics, seed=seed_for(cfg.seed, EVALUATION, *branch, 0))
        crystals = []
        for r in records:
            try:
                crystals.append(randomiser.randomise(_structure(r), int(r.space_group), coordinates=coords,
                                                     lattice=lattice))
            except Exception as exc:  # no valid randomisation: left out like a failed simulation
                log.info("%s: crystal %s not randomised: %s", name, getattr(r, "id", "?"), exc)
                crystals.append(None)
        rng = np.random.default_rng(seed_for(cfg.seed, EVALUATION, *branch, 1))
        impurity_rng = np.random.default_rng(seed_for(cfg.seed, EVALUATION, *branch, 2))
        pats, ok = simulate_crystals(crystals, simulator, rng, cfg.dtype, impurity_rng=impurity_rng)
        pats[~ok] = np.nan
        return pats

    pats = cached_patterns(path, simulate)
    ok = ~np.isnan(pats[:, 0].astype(np.float32)) if len(pats) else np.zeros(0, bool)
    return _labelled(name, "real", pats, ok, np.array([r.space_group for r in records]),
                     np.array([r.volume for r in records], float), ids, class_index)


def _structure(record):
    s = record.structure
    return s() if callable(s) else s
