"""Real crystal databases: the bundled OQMD-relaxed ICSD structures, or any folder of CIF files.

Every entry is standardised by spglib under the project's :class:`SymmetryTolerance` into a
:class:`CrystalRecord` (conventional standard cell, space group, asymmetric unit with Wyckoff
names). Broken entries are skipped and counted by reason. Parsing runs in parallel with a
progress bar and the parsed database is cached as one NPZ (no pickles) keyed by a hash of the
source files, the options and the tolerance, so the second load takes seconds.

This module holds the :class:`Database` with its NPZ cache and :func:`load_database`; the record
is in :mod:`generator.crystal_record`, the sources in :mod:`generator.oqmd_source` and
:mod:`generator.cif_source`, the shared parallel parsing in :mod:`generator.parallel_parse`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from generator.cif_source import CIF_PARSER_VERSION, cif_files, cif_tasks, parse_cif_chunk, read_structure_types
from generator.config import DatabaseConfig, as_config, default_cache_dir
from generator.crystal_record import CrystalRecord, build_record
from generator.oqmd_source import default_oqmd_path, oqmd_tasks, parse_oqmd_chunk
from generator.parallel_parse import run_tasks
from generator.symmetry import SymmetryTolerance

__all__ = ["CIF_PARSER_VERSION", "PARSER_VERSION", "CrystalRecord", "Database", "build_record", "default_oqmd_path",
           "load_database", "read_structure_types"]

log = logging.getLogger(__name__)

# Bump when the parsed content changes, so stale caches are not reused.
PARSER_VERSION = "1"


@dataclass
class Database:
    """Parsed crystals of one source, indexable by position or by id.

    Attributes:
        name: "oqmd" or "cif".
        source: the file or folder read.
        source_hash: hex digest of the source content, options, tolerance and parser version.
        records: the crystals, in source order.
        skipped: reason -> number of entries skipped.
        skipped_entries: (id, reason, detail) of every skipped entry.
        tolerance: the spglib tolerance the space groups were assigned with.
    """

    name: str
    source: str
    source_hash: str
    records: list[CrystalRecord]
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_entries: list[tuple[str, str, str]] = field(default_factory=list)
    tolerance: SymmetryTolerance = field(default_factory=SymmetryTolerance)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[CrystalRecord]:
        return iter(self.records)

    def __getitem__(self, key: int | str) -> CrystalRecord:
        if isinstance(key, str):
            return self.records[self._index[key]]
        return self.records[key]

    def __contains__(self, key: str) -> bool:
        return key in self._index

    @cached_property
    def _index(self) -> dict[str, int]:
        return {r.id: i for i, r in enumerate(self.records)}

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def skip_report(self) -> dict[str, Any]:
        """The skip report: counts by reason plus every skipped entry."""
        return {"database": self.name, "source": self.source, "source_hash": self.source_hash,
                "parsed": len(self.records), "skipped": dict(self.skipped),
                "entries": [{"id": i, "reason": r, "detail": d} for i, r, d in self.skipped_entries]}

    def save_skip_report(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.skip_report(), indent=1))
        return path

    # ----------------------------------------------------------------- portable cache (NPZ)
    def save(self, path: str | os.PathLike) -> Path:
        """Write the database as one NPZ of flat arrays (no pickles)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        recs = self.records
        atom_offsets = np.cumsum([0] + [r.n_atoms for r in recs])
        asym_offsets = np.cumsum([0] + [r.n_asym for r in recs])

        def cat(arrays, shape, dtype):
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype)

        meta = {"name": self.name, "source": self.source, "source_hash": self.source_hash,
                "skipped": self.skipped, "skipped_entries": self.skipped_entries,
                "symprec": self.tolerance.symprec, "angle_tolerance": self.tolerance.angle_tolerance,
                "parser_version": PARSER_VERSION}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            meta=np.array(json.dumps(meta)),
            id=np.array([r.id for r in recs], dtype=str),
            formula=np.array([r.formula for r in recs], dtype=str),
            structure_type=np.array([r.structure_type for r in recs], dtype=str),
            space_group=np.array([r.space_group for r in recs], np.int16),
            database_space_group=np.array([r.database_space_group for r in recs], np.int16),
            volume=np.array([r.volume for r in recs], np.float64),
            partial_occupancy=np.array([r.partial_occupancy for r in recs], bool),
            atomic_volume=np.array([r.atomic_volume for r in recs], np.float64),
            disorder=np.array([r.disorder for r in recs], dtype=str),
            lattice=np.array([r.lattice for r in recs], np.float64).reshape(-1, 3, 3),
            atom_offsets=atom_offsets,
            frac_coords=cat([r.frac_coords for r in recs], (0, 3), np.float64),
            atomic_numbers=cat([r.atomic_numbers for r in recs], (0,), np.int16),
            occupancies=cat([r.occupancies for r in recs], (0,), np.float32),
            asym_offsets=asym_offsets,
            asym_elements=np.array([e for r in recs for e in r.asym_elements], dtype=str),
            asym_wyckoffs=np.array([w for r in recs for w in r.asym_wyckoffs], dtype=str),
        )
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Database":
        """Read a database written by :meth:`save`."""
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
        except Exception as exc:
            raise ValueError(f"{path}: not a readable crystalstream database cache ({exc})") from exc
        ao, so = z["atom_offsets"], z["asym_offsets"]
        frac, numbers, occ = z["frac_coords"], z["atomic_numbers"].astype(np.int64), z["occupancies"].astype(np.float64)
        elements, wyckoffs = z["asym_elements"].tolist(), z["asym_wyckoffs"].tolist()
        cols = {k: z[k].tolist() for k in ("id", "formula", "structure_type", "space_group", "database_space_group",
                                            "volume", "partial_occupancy", "atomic_volume", "disorder")}
        lattice = z["lattice"]
        records = [
            CrystalRecord(
                id=cols["id"][i], formula=cols["formula"][i], space_group=cols["space_group"][i],
                database_space_group=cols["database_space_group"][i], structure_type=cols["structure_type"][i],
                n_asym=int(so[i + 1] - so[i]), volume=cols["volume"][i], partial_occupancy=cols["partial_occupancy"][i],
                lattice=lattice[i], frac_coords=frac[ao[i]:ao[i + 1]], atomic_numbers=numbers[ao[i]:ao[i + 1]],
                occupancies=occ[ao[i]:ao[i + 1]], asym_elements=elements[so[i]:so[i + 1]],
                asym_wyckoffs=wyckoffs[so[i]:so[i + 1]], atomic_volume=cols["atomic_volume"][i],
                disorder=cols["disorder"][i],
            )
            for i in range(len(cols["id"]))
        ]
        return cls(name=meta["name"], source=meta["source"], source_hash=meta["source_hash"], records=records,
                   skipped=meta["skipped"], skipped_entries=[tuple(e) for e in meta["skipped_entries"]],
                   tolerance=SymmetryTolerance(meta["symprec"], meta["angle_tolerance"]), from_cache=True)


# ------------------------------------------------------------------------------ the loader
def _hash_files(paths: list[Path], extra: dict) -> str:
    """SHA-256 hex digest of ``extra`` (options, sorted keys), then each file's name and content: the source hash."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for p in paths:
        h.update(str(p.name).encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_database(cfg: Any = None, *, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                  **kwargs) -> Database:
    """Read (or load from cache) a crystal database.

    Args:
        cfg: a :class:`DatabaseConfig`, a ``conf/database`` node or a dict; keyword arguments
            override it (``load_database(name="cif", path="cifs/")``).
        cache_dir: cache folder (null: $CRYSTALSTREAM_CACHE or ~/.cache/crystalstream).
        use_cache: read and write the parsed-database cache.

    Returns:
        The :class:`Database`; ``.from_cache`` says whether it came from the cache.
    """
    cfg = as_config(DatabaseConfig, cfg, **kwargs)
    tolerance = SymmetryTolerance()
    workers = cfg.workers or os.cpu_count() or 1
    options = {"parser": PARSER_VERSION, "name": cfg.name, "limit": cfg.limit,
               "symprec": tolerance.symprec, "angle_tolerance": tolerance.angle_tolerance}
    if cfg.name == "oqmd":
        path = Path(cfg.path).expanduser() if cfg.path else default_oqmd_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: OQMD/ASE database file not found")
        source_hash = _hash_files([path], options)
        task_maker = lambda: (parse_oqmd_chunk, oqmd_tasks(path, cfg.limit, tolerance))  # noqa: E731
    elif cfg.name == "cif":
        if not cfg.path or cfg.path == "???":
            raise ValueError("database=cif needs database.path, a folder of CIF files")
        path = Path(cfg.path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: CIF folder not found")
        files = cif_files(path, cfg.limit)
        options["cif_parser"] = CIF_PARSER_VERSION
        type_files = [Path(cfg.structure_types).expanduser()] if cfg.structure_types else []
        types = read_structure_types(type_files[0]) if type_files else {}
        source_hash = _hash_files(files + type_files, options)
        task_maker = lambda: (parse_cif_chunk, cif_tasks(files, types, tolerance, workers))  # noqa: E731
    else:
        raise ValueError(f"unknown database name {cfg.name!r}; use 'oqmd' or 'cif'")

    cache_file = default_cache_dir(cache_dir) / "databases" / f"{cfg.name}-{source_hash[:16]}.npz"
    if use_cache and cache_file.is_file():
        try:
            return Database.load(cache_file)
        except ValueError as exc:
            log.warning("ignoring broken cache: %s", exc)

    worker, tasks = task_maker()
    items = run_tasks(worker, tasks, workers, f"parsing {cfg.name} ({path.name})")
    records = [it for it in items if isinstance(it, CrystalRecord)]
    skipped_entries = [it for it in items if not isinstance(it, CrystalRecord)]
    db = Database(name=cfg.name, source=str(path), source_hash=source_hash, records=records,
                  skipped=dict(Counter(r for _, r, _ in skipped_entries)), skipped_entries=skipped_entries,
                  tolerance=tolerance)
    if not use_cache:
        return db
    try:
        db.save(cache_file)
        db.save_skip_report(cache_file.with_suffix(".skipped.json"))
    except OSError as exc:  # a read-only cache must not stop the run
        log.warning("could not cache the database at %s: %s", cache_file, exc)
    return db
