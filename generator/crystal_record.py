"""One standardised real crystal: the :class:`CrystalRecord` and how a parsed entry becomes one.

Every database source (the bundled OQMD file, a folder of CIF files) hands its sites to
:func:`build_record`, which standardises them with spglib under the project's
:class:`SymmetryTolerance` (conventional standard cell, space group, asymmetric unit with Wyckoff
names); an entry that cannot be standardised raises :class:`generator.cell.SkipEntry`.
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from generator.cell import SkipEntry, analyse_cell, atomic_volume_or_nan, lattice_parameters
from generator.symmetry import SymmetryTolerance, crystal_system

__all__ = ["CrystalRecord", "build_record", "ordered_compositions"]


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


def ordered_compositions(numbers) -> tuple[list[dict[int, float]], np.ndarray]:
    """The ``compositions`` and ``site_types`` of :func:`build_record` for an ordered crystal of (N,) ``numbers``."""
    uniq, inverse = np.unique(np.asarray(numbers, int), return_inverse=True)
    return [{int(z): 1.0} for z in uniq], inverse
