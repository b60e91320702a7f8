"""Hashes of what simulated test patterns depend on, and the NPZ cache they are kept in.

A cached file is named by the set and a digest of its keys (split hash, simulation-config hash,
crystal ids, seed, ...), so a rerun with the same inputs reads the patterns instead of simulating.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evaluation.config import EvaluationConfig
from generator.hashing import json_digest

__all__ = ["cache_path", "cached_patterns", "config_hash", "pattern_cache_dir", "save_npz", "simulated_ok",
           "simulation_hash", "statistics_hash"]

log = logging.getLogger(__name__)


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


def save_npz(path: Path, **arrays) -> None:
    """Write ``arrays`` to ``path`` atomically (a temporary sibling moved into place): a concurrent reader
    never sees half a file."""
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
        save_npz(path, patterns=patterns)
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


def cache_path(cache_dir: str | os.PathLike | None, name: str, *keys: Any) -> Path | None:
    """``cache_dir/{name}-{digest of keys}.npz`` (None when ``cache_dir`` is None: no cache)."""
    if cache_dir is None:
        return None
    return Path(cache_dir) / f"{name}-{json_digest(list(keys))[:20]}.npz"


def simulated_ok(patterns: np.ndarray) -> np.ndarray:
    """(n,) bool: the rows of (n, N) ``patterns`` that simulated (a failed crystal's row is NaN)."""
    return ~np.isnan(patterns[:, 0].astype(np.float32)) if len(patterns) else np.zeros(0, bool)
