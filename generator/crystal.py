"""The light crystal that flows from the generator to the simulator."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SyntheticCrystal:
    """A crystal as arrays, cheap to build and to ship between processes.

    Attributes:
        lattice: (3, 3) float64, lattice vectors as rows, Angstrom.
        frac_coords: (N, 3) float64, fractional coordinates of every atom in the cell, in [0, 1).
        atomic_numbers: (N,) int64, Z of every atom.
        space_group: International number (1..230) the crystal was generated in and checked for.
        wyckoff_letters: one Wyckoff name (multiplicity + letter, e.g. "4e") per asymmetric-unit site.
        occupancies: (N,) float64 site occupancies, or None for a fully ordered crystal.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    space_group: int
    wyckoff_letters: list[str] = field(default_factory=list)
    occupancies: np.ndarray | None = None

    @property
    def n_asym(self) -> int:
        """Atoms in the asymmetric unit (one per Wyckoff placement)."""
        return len(self.wyckoff_letters)

    @property
    def n_atoms(self) -> int:
        return int(len(self.atomic_numbers))

    @property
    def volume(self) -> float:
        """Cell volume in cubic Angstrom."""
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def cell_shape(self) -> np.ndarray:
        """(5,) float32 the cell's shape without its size: ln(l1/l0), ln(l2/l0), |cos g0|, |cos g1|, |cos g2|
        for the cell lengths sorted l0 <= l1 <= l2 and g_i the angle between the two axes other than i.

        Scale-free (a log-Q pattern shows the size only as a shift) and free of the axis order and of the
        obtuse/acute choice of an angle; the target of a cell-shape head.
        """
        lengths = np.linalg.norm(self.lattice, axis=1)
        order = np.argsort(lengths, kind="stable")
        v = self.lattice[order] / lengths[order, None]
        cosines = np.abs([v[1] @ v[2], v[0] @ v[2], v[0] @ v[1]])
        l0, l1, l2 = lengths[order]
        return np.array([np.log(l1 / l0), np.log(l2 / l0), *cosines], np.float32)

    def to_structure(self):
        """A pymatgen ``Structure`` of the same cell."""
        from pymatgen.core import Lattice, Structure

        species = [int(z) for z in self.atomic_numbers]
        if self.occupancies is not None:
            from pymatgen.core import Element

            species = [{Element.from_Z(z): float(o)} for z, o in zip(species, self.occupancies)]
        return Structure(Lattice(self.lattice), species, self.frac_coords)

    @classmethod
    def from_structure(cls, structure, space_group: int = 0, wyckoff_letters: list[str] | None = None):
        """Arrays of an ordered pymatgen ``Structure`` (disordered sites take their majority species)."""
        numbers, occ = [], []
        for site in structure:
            sp, o = max(site.species.items(), key=lambda kv: kv[1])
            numbers.append(sp.Z)
            occ.append(sum(site.species.values()))
        occupancies = np.asarray(occ, float)
        return cls(
            lattice=np.array(structure.lattice.matrix, float),
            frac_coords=np.array(structure.frac_coords, float) % 1.0,
            atomic_numbers=np.asarray(numbers, np.int64),
            space_group=int(space_group),
            wyckoff_letters=list(wyckoff_letters or []),
            occupancies=None if np.allclose(occupancies, 1.0) else occupancies,
        )
