"""Labelled sets for ``python -m inference.evaluate``: items with true space groups, either measured
patterns listed in a manifest CSV, a folder of CIFs to simulate, or the held-out side of the split a
checkpoint was trained with (scored as the in-training evaluators score it)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from inference.readers import PatternError, read_pattern


@dataclass
class LabelledSet:
    """Items with true space groups; either measured ``patterns`` or ``structures`` to simulate.

    Attributes:
        name: set name for reports.
        ids: one name per item (file path or entry id).
        space_groups: (n,) true International numbers (0 where the item could not be labelled).
        patterns: measured patterns, or the :class:`PatternError` of an unreadable file, per item.
        structures: pymatgen Structures or SyntheticCrystals per item (None where unreadable).
        errors: item index -> why it cannot be used (unreadable CIF, unlabelled...).
        log_volumes: (n,) true natural-log cell volumes where known (NaN elsewhere), or None.
        wavelengths: per-item measurement wavelength from the manifest (None: file or default).
        simulate: for simulated sets that must match the in-training evaluators: a callable taking a
            member's simulation config and returning ((n, N) model inputs, (n,) bool simulated);
            used instead of simulating ``structures`` one by one.
    """

    name: str
    ids: list[str]
    space_groups: np.ndarray
    patterns: Optional[list] = None
    structures: Optional[list] = None
    errors: dict[int, str] = field(default_factory=dict)
    log_volumes: Optional[np.ndarray] = None
    wavelengths: Optional[list] = None
    simulate: Optional[Any] = None

    def __len__(self) -> int:
        return len(self.ids)


def _column(row: dict, names: Sequence[str]) -> Optional[str]:
    for n in names:
        for key, value in row.items():
            if key is not None and key.strip().lower() == n and value not in (None, ""):
                return value.strip()
    return None


def load_manifest(path: str | Path) -> LabelledSet:
    """Measured patterns listed in a manifest CSV (file paths relative to the CSV's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: the manifest has no rows")
    ids, sgs, patterns, errors, wls = [], [], [], {}, []
    for i, row in enumerate(rows):
        file = _column(row, ("pattern_file", "file", "path", "pattern"))
        sg = _column(row, ("space_group", "spacegroup", "sg", "label"))
        name = _column(row, ("name", "id")) or file or f"row {i + 2}"
        ids.append(name)
        wl = _column(row, ("wavelength",))
        wls.append(float(wl) if wl else None)
        try:
            sgs.append(int(sg) if sg is not None else 0)
            if not 1 <= sgs[-1] <= 230:
                raise ValueError
        except ValueError:
            sgs[-1:] = [0]
            errors[i] = f"{path}, row {i + 2}: space group {sg!r} is not a number in 1..230"
        if file is None:
            patterns.append(PatternError(f"{path}, row {i + 2}", "no pattern file given"))
            errors.setdefault(i, f"{path}, row {i + 2}: no pattern file given")
            continue
        try:
            patterns.append(read_pattern(path.parent / file))
        except PatternError as err:
            patterns.append(err)
    return LabelledSet(name=path.stem if path.stem != "manifest" else path.parent.name, ids=ids,
                       space_groups=np.asarray(sgs, np.int64), patterns=patterns, errors=errors, wavelengths=wls)


def load_cif_dir(path: str | Path, symprec: Optional[float] = None, limit: Optional[int] = None) -> LabelledSet:
    """CIF files under ``path`` (recursively), labelled by spglib under the project's symmetry policy."""
    import warnings

    from pymatgen.core import Structure

    from generator.crystal import SyntheticCrystal
    from generator.symmetry import SymmetryTolerance

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"CIF folder {path} not found")
    files = sorted(path.rglob("*.cif"))
    if limit is not None:
        files = files[: int(limit)]
    if not files:
        raise ValueError(f"{path}: no *.cif files")
    tol = SymmetryTolerance() if symprec is None else SymmetryTolerance(symprec=float(symprec))
    ids, sgs, structures, errors, logv = [], [], [], {}, []
    for i, f in enumerate(files):
        ids.append(str(f.relative_to(path)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = Structure.from_file(str(f))
            c = SyntheticCrystal.from_structure(s)
            sg = tol.space_group(c.lattice, c.frac_coords, c.atomic_numbers)
            if sg == 0:
                raise ValueError("spglib finds no space group")
            structures.append(s)
            sgs.append(sg)
            logv.append(float(np.log(s.volume)))
        except Exception as exc:  # any unreadable CIF is reported, the others are evaluated
            structures.append(None)
            sgs.append(0)
            logv.append(np.nan)
            errors[i] = f"{f}: cannot be used ({exc})"
    return LabelledSet(name=path.name, ids=ids, space_groups=np.asarray(sgs, np.int64), structures=structures,
                       errors=errors, log_volumes=np.asarray(logv))


def heldout_config(run_config: Optional[dict], limit: Optional[int] = None, seed: Optional[int] = None):
    """The run's ``evaluation`` settings (``evaluation.config.EvaluationConfig``) with ``limit`` as
    ``max_test_crystals`` and ``seed`` as its seed where given."""
    from cluster.config import to_dataclass
    from evaluation.config import EvaluationConfig

    node = (run_config or {}).get("evaluation") if isinstance(run_config, dict) else None
    known = set(EvaluationConfig.__dataclass_fields__)
    cfg = to_dataclass(EvaluationConfig, {k: v for k, v in dict(node or {}).items() if k in known})
    if limit is not None:
        cfg.max_test_crystals = int(limit)
    if seed is not None:
        cfg.seed = int(seed)
    return cfg


def load_heldout(run_config: dict, limit: Optional[int] = None, seed: Optional[int] = None) -> LabelledSet:
    """The held-out (test) side of the split a checkpoint was trained with (``meta.config``), as the
    in-training evaluators score it (their "test_spglib" set): the crystals of
    ``evaluation.testsets.heldout_ids`` with ``limit`` as ``max_test_crystals`` (None: the run's
    ``evaluation.max_test_crystals``) and ``seed`` (None: the run's ``evaluation.seed``), spglib labels,
    and the patterns of ``evaluation.testsets.heldout_patterns`` (same simulation stream, impurity
    partners, dtype and pattern cache)."""
    from evaluation.testsets import heldout_ids, heldout_patterns
    from generator.pipeline import prepare_crystals

    prepared = prepare_crystals(run_config or None)
    cfg = heldout_config(run_config, limit, seed)
    ids = heldout_ids(prepared.split.test_ids, cfg.max_test_crystals, cfg.seed)
    records = [prepared.database[i] for i in ids]

    def simulate(simulation_cfg):
        from simulator import make_representation

        got, _, patterns, ok = heldout_patterns(prepared, cfg, make_representation(simulation_cfg or None))
        if got != ids:
            raise RuntimeError("held-out crystals differ between the listing and the simulation")
        x = np.asarray(patterns, np.float32)
        x[~ok] = 0.0
        return x, ok

    return LabelledSet(name=f"heldout-{prepared.split.kind}", ids=ids,
                       space_groups=np.asarray([r.space_group for r in records], np.int64),
                       structures=[r.to_crystal() for r in records],
                       log_volumes=np.log(np.asarray([r.volume for r in records], float)), simulate=simulate)
