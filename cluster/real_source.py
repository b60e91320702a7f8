"""The real-structure baseline source: statistics-side real crystals simulated once, streamed in place
of synthetic ones (``cluster.source=real``)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from cluster.config import ClusterConfig, to_dataclass
from evaluation.pattern_cache import cache_path, cached_patterns, simulated_ok, simulation_hash
from evaluation.simulate import simulate_crystals
from generator.seeding import REAL_SOURCE, seed_for


def real_training_arrays(prepared, statistics, simulation_cfg, cluster_cfg: ClusterConfig | Any,
                         cache_dir: str | os.PathLike | None = None):
    """(patterns, labels, space_groups, log_volume) of the statistics-side real crystals with classified
    spglib labels, ``cluster_cfg.real.variants`` patterns each: the baseline's training data."""
    from simulator.representation import make_representation

    cfg = to_dataclass(ClusterConfig, cluster_cfg)
    simulator = make_representation(simulation_cfg)
    class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
    ids = sorted(map(str, prepared.split.statistics_ids))
    ids = [i for i in ids if int(prepared.database[i].space_group) in class_index]
    if cfg.real.max_structures is not None and cfg.real.max_structures < len(ids):
        rng = np.random.default_rng(seed_for(cfg.seed, REAL_SOURCE, 1))
        ids = sorted(rng.choice(ids, size=cfg.real.max_structures, replace=False).tolist())
    records = [prepared.database[i] for i in ids]
    v = int(cfg.real.variants)
    path = cache_path(cache_dir, "train_real", prepared.split.hash, simulation_hash(simulator.config), ids, v,
                       cfg.seed, cfg.dtype)

    def simulate():
        rng = np.random.default_rng(seed_for(cfg.seed, REAL_SOURCE, 2))
        pats, ok = simulate_crystals([r.to_crystal() for r in records], simulator, rng, cfg.dtype, variants=v)
        pats[~np.repeat(ok, v)] = np.nan
        return pats

    pats = cached_patterns(path, simulate)
    ok = simulated_ok(pats)
    sgs = np.repeat([r.space_group for r in records], v).astype(np.int16)
    logv = np.log(np.repeat([r.volume for r in records], v)).astype(np.float32)
    labels = np.array([class_index[int(s)] for s in sgs], np.int64)
    return pats[ok], labels[ok], sgs[ok], logv[ok]
