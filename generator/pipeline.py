"""database -> split -> statistics in one cached call, for the statistics build, the trainer and the evaluators.

Everything is keyed by hashes: the parsed database by its source, the statistics by the split
hash and the extraction options, so a second :func:`prepare_data` with the same config reads
three small files instead of parsing and extracting again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from generator.config import (CONF_DIR, DatabaseConfig, SplitConfig, StatisticsConfig, as_config,
                              default_cache_dir)
from generator.database import Database, load_database
from generator.hashing import json_digest
from generator.split import Split, make_split
from generator.statistics import FORMAT_VERSION, Statistics, extract_statistics

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The real crystals, their split and the generation statistics of one config.

    Attributes:
        database: the parsed crystals (None when the statistics came from ``statistics.path``).
        split: statistics-side and test-side ids (None likewise).
        statistics: extracted from the statistics side.
        report: counts and timings (parsed, skipped by reason, per side, filtered, classes, seconds, cache hits).
    """

    database: Database | None
    split: Split | None
    statistics: Statistics
    report: dict[str, Any] = field(default_factory=dict)


def _node(cfg: Any, name: str):
    if cfg is None:
        return None
    if isinstance(cfg, dict):
        return cfg.get(name)
    return getattr(cfg, name, None)


def default_config():
    """The default ``database``/``split``/``statistics`` groups (conf/), as an OmegaConf DictConfig."""
    from omegaconf import OmegaConf

    groups = {"database": ("oqmd", DatabaseConfig), "split": ("structure_type", SplitConfig),
              "statistics": ("default", StatisticsConfig)}
    merged = {}
    for group, (option, schema) in groups.items():
        merged[group] = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    return OmegaConf.create(merged)


def default_statistics() -> Statistics:
    """Statistics of the default database and split (conf/), built and cached on first use (minutes), then loaded."""
    return prepare_data(default_config()).statistics


def statistics_key(split: Split, stats_cfg: StatisticsConfig) -> str:
    """Cache key of statistics: the split hash plus the extraction options and format."""
    payload = {"split": split.hash, "min_crystals_per_class": stats_cfg.min_crystals_per_class, "format": FORMAT_VERSION}
    return json_digest(payload)[:16]


def _saved_statistics(path: str) -> PreparedData:
    """Statistics read from a saved folder (``statistics.path``), with no database or split behind them."""
    t0 = time.perf_counter()
    try:
        statistics = Statistics.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"statistics.path: {exc}") from exc
    prov = statistics.provenance
    report = {"statistics_path": str(path), "statistics_cached": True, "source_hash": prov.get("source_hash"),
              "split_hash": prov.get("split_hash"), "n_statistics": prov.get("n_statistics", -1), "n_test": 0,
              "n_classes": statistics.n_classes, "seconds": {"total": time.perf_counter() - t0}}
    return PreparedData(database=None, split=None, statistics=statistics, report=report)


def prepare_crystals(cfg: Any = None) -> PreparedData:
    """:func:`prepare_data` with the database behind the statistics, for scoring a run on its held-out
    crystals. A run from a saved statistics folder (``statistics.path``) is scored on the database its
    config names; where that folder is still readable, the database must split as it records."""
    path = _node(_node(cfg, "statistics"), "path")
    if not path:
        return prepare_data(cfg)
    import copy
    from pathlib import Path

    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg = copy.deepcopy(cfg)
    cfg["statistics"]["path"] = None
    prepared = prepare_data(cfg)
    if (Path(path) / "statistics.json").is_file():
        recorded = Statistics.load(path).provenance.get("split_hash")
        if recorded != prepared.split.hash:
            raise ValueError(f"statistics.path {path} was drawn from split {recorded}, but the run's database "
                             f"and split config give {prepared.split.hash}: its held-out crystals are unknown")
    return prepared


def prepare_data(cfg: Any = None) -> PreparedData:
    """Load the database, split it and extract (or load cached) statistics.

    Args:
        cfg: anything with ``database``, ``split`` and ``statistics`` nodes (a Hydra config, a dict,
            :class:`generator.config.BuildStatisticsConfig`); missing nodes take the defaults.
    """
    db_cfg = as_config(DatabaseConfig, _node(cfg, "database"))
    split_cfg = as_config(SplitConfig, _node(cfg, "split"))
    stats_cfg = as_config(StatisticsConfig, _node(cfg, "statistics"))
    if stats_cfg.path:
        return _saved_statistics(stats_cfg.path)
    cache_dir = default_cache_dir(stats_cfg.cache_dir)
    report: dict[str, Any] = {"cache_dir": str(cache_dir)}
    t0 = time.perf_counter()

    database = load_database(db_cfg, cache_dir=cache_dir, use_cache=stats_cfg.cache)
    t1 = time.perf_counter()
    split = make_split(database, split_cfg)
    t2 = time.perf_counter()

    folder = cache_dir / "statistics" / f"{db_cfg.name}-{statistics_key(split, stats_cfg)}"
    statistics = None
    if stats_cfg.cache and (folder / "statistics.json").is_file():
        try:
            statistics = Statistics.load(folder)
            if statistics.provenance.get("split_hash") != split.hash:
                statistics = None
        except (ValueError, OSError, KeyError) as exc:
            log.warning("ignoring broken statistics cache %s: %s", folder, exc)
            statistics = None
    statistics_cached = statistics is not None
    if statistics is None:
        statistics = extract_statistics(database, split, min_crystals_per_class=stats_cfg.min_crystals_per_class)
        if stats_cfg.cache:
            try:
                statistics.save(folder)
                split.save(folder / "split.json")
            except OSError as exc:  # a read-only cache must not stop the run
                log.warning("could not cache statistics at %s: %s", folder, exc)
    t3 = time.perf_counter()

    report.update({
        "database": database.name, "source": database.source, "source_hash": database.source_hash,
        "database_cached": database.from_cache, "statistics_cached": statistics_cached,
        "statistics_cache": str(folder),
        "parsed": len(database), "skipped": dict(database.skipped), "n_skipped": sum(database.skipped.values()),
        "split_kind": split.kind, "split_hash": split.hash, "seed": split.seed,
        "filtered": dict(split.filtered), "n_statistics": split.n_statistics, "n_test": split.n_test,
        "n_classes": statistics.n_classes, "n_classified_crystals": statistics.provenance.get("n_classified_crystals"),
        "min_crystals_per_class": stats_cfg.min_crystals_per_class,
        "seconds": {"database": t1 - t0, "split": t2 - t1, "statistics": t3 - t2, "total": t3 - t0},
    })
    return PreparedData(database=database, split=split, statistics=statistics, report=report)
