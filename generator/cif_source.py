"""A folder of CIF files: reading and standardising each file, and the optional structure-type CSV.

Every ``*.cif`` below the folder is one entry whose id is the file stem (stems must be unique).
Files are parsed by pymatgen in worker tasks of a few dozen files; a file that cannot be read,
lists no atoms or gives no symmetry is skipped with its reason.
"""
from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from pathlib import Path

from generator.cell import SkipEntry
from generator.crystal_record import build_record
from generator.parallel_parse import CHUNK, parse_entry, quiet_spglib
from generator.symmetry import SymmetryTolerance

__all__ = ["CIF_PARSER_VERSION", "cif_files", "cif_tasks", "has_symmetry", "parse_cif_chunk", "read_structure_types"]

# Bump when the parsed content of CIF files changes, so stale caches are not reused.
CIF_PARSER_VERSION = "2"  # 2: CIFs without symmetry operations and space group are skipped ("no symmetry")


def cif_space_group(cif_block) -> int:
    """The space-group number a CIF block states (0 when it gives none or an unreadable one)."""
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


def has_symmetry(cif_block) -> bool:
    """Whether a CIF block lists symmetry operations or names its space group (H-M, Hall or number).

    Without either, pymatgen reads the atom sites as the whole cell in P1; when they are only the
    asymmetric unit (common in hand-made or truncated files), the crystal is wrong, so such files
    are skipped as "no symmetry" rather than kept in a wrong space group.
    """
    keys = [str(k).lower() for k in cif_block.data]
    return any(k.startswith(_SYMMETRY_KEY_PREFIXES) for k in keys)


def _parse_file(p: str, types: dict[str, str], tolerance: SymmetryTolerance, CifParser):
    """One CIF file as a record (raises :class:`SkipEntry`); ``CifParser``: pymatgen's class, imported by the worker."""
    entry_id = Path(p).stem
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
    if block is not None and not has_symmetry(block):
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
    return build_record(entry_id, structure.lattice.matrix, structure.frac_coords, comps, site_types,
                        tolerance, database_space_group=cif_space_group(block) if block else 0,
                        structure_type=types.get(entry_id))


def parse_cif_chunk(args) -> list:
    """Worker: parse CIF files; ``types`` maps file stem -> structure type (may be empty)."""
    paths, types, symprec, angle_tolerance = args
    from pymatgen.io.cif import CifParser

    quiet_spglib()
    tolerance = SymmetryTolerance(symprec, angle_tolerance)
    return [parse_entry(Path(p).stem, lambda p=p: _parse_file(p, types, tolerance, CifParser), detail_chars=200)
            for p in paths]


def cif_files(folder: Path, limit: int | None) -> list[Path]:
    """The ``*.cif`` files below ``folder`` (any case), sorted, the first ``limit`` of them (None: all).

    Raises:
        ValueError: two files share a stem (the stem is the entry id).
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".cif")
    if limit is not None:
        files = files[: int(limit)]
    stems = Counter(p.stem for p in files)
    dup = [s for s, n in stems.items() if n > 1]
    if dup:
        raise ValueError(f"{folder}: CIF file names must be unique ids; duplicated: {dup[:5]}")
    return files


def cif_tasks(files: list[Path], types: dict[str, str], tolerance: SymmetryTolerance, workers: int) -> list:
    """The worker tasks of :func:`parse_cif_chunk`: small chunks, so ``workers`` processes share the load evenly."""
    chunk = max(1, min(CHUNK // 8, -(-len(files) // (workers * 4))))
    return [([str(p) for p in files[i:i + chunk]], types, tolerance.symprec, tolerance.angle_tolerance)
            for i in range(0, len(files), chunk)]


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
