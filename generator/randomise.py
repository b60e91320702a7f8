"""Randomised versions of real crystals (main paper, section 3.3 and SI S3).

A real crystal keeps its space group, elements and Wyckoff positions, while its free fractional
coordinates are redrawn uniformly (as in the synthetic generator), its lattice is redrawn from the
statistics' crystal-system KDE at the original cell volume, or both. Comparing a model's accuracy
on these sets with the unmodified test set measures which differences between synthetic and real
crystals cost accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.crystal import SyntheticCrystal
from generator.kde_sampling import LatticeParameterSampler, lattice_matrix
from generator.sampler import GenerationError
from generator.statistics import Statistics
from generator.symmetry import SymmetryTolerance, crystal_system
from generator.wyckoff import WyckoffTable, wyckoff_table


@dataclass
class WyckoffDecomposition:
    """A crystal as its conventional cell in pyxtal's setting plus its asymmetric unit.

    Attributes:
        space_group: International number.
        lattice: (3, 3) conventional standard lattice (rows, Angstrom).
        frac_coords: (N, 3) fractional coordinates of every atom in that cell.
        atomic_numbers: (N,) Z of every atom.
        site_z: (n_asym,) Z of each orbit.
        site_wyckoff: (n_asym,) index of each orbit's Wyckoff position in ``table``.
        table: the space group's Wyckoff table.
    """

    space_group: int
    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    site_z: np.ndarray
    site_wyckoff: np.ndarray
    table: WyckoffTable

    @property
    def wyckoff_names(self) -> list[str]:
        return [self.table.names[w] for w in self.site_wyckoff]


def decompose(structure, space_group: int, symmetry: SymmetryTolerance | None = None) -> WyckoffDecomposition:
    """Standardise a pymatgen ``Structure`` in pyxtal's setting and find its Wyckoff orbits.

    Disordered sites take their majority species. Raises ValueError when spglib (under the
    project tolerance) does not find ``space_group``.
    """
    symmetry = symmetry or SymmetryTolerance()
    arrays = SyntheticCrystal.from_structure(structure)
    table = wyckoff_table(int(space_group))
    # Identify first in spglib's default setting: asking for a Hall number of another space-group
    # type makes spglib search for a very long time.
    found = symmetry.space_group(arrays.lattice, arrays.frac_coords, arrays.atomic_numbers)
    if found != int(space_group):
        raise ValueError(f"structure has space group {found} under the symmetry tolerance, not {space_group}")
    ds = symmetry.dataset(arrays.lattice, arrays.frac_coords, arrays.atomic_numbers, hall_number=table.hall_number)
    if ds is None or int(ds.number) != int(space_group):
        raise ValueError(f"spglib cannot standardise the structure in the setting of space group {space_group}")
    lattice = np.array(ds.std_lattice, float)
    frac = np.array(ds.std_positions, float) % 1.0
    numbers = np.array(ds.std_types, np.int64)
    # One representative per orbit of the input cell; Wyckoff letters do not depend on the cell chosen.
    letters = {name[-1]: i for i, name in enumerate(table.names)}
    _, first = np.unique(ds.equivalent_atoms, return_index=True)
    input_numbers = np.asarray(arrays.atomic_numbers, np.int64)
    sites = []
    for i in first:
        w = letters.get(ds.wyckoffs[i])
        if w is None:
            raise ValueError(f"spglib Wyckoff letter {ds.wyckoffs[i]!r} unknown in space group {space_group}")
        sites.append(w)
    return WyckoffDecomposition(
        space_group=int(space_group),
        lattice=lattice,
        frac_coords=frac,
        atomic_numbers=numbers,
        site_z=input_numbers[first],
        site_wyckoff=np.asarray(sites, np.int64),
        table=table,
    )


class CrystalRandomiser:
    """Redraws the coordinates and/or the lattice of real crystals, keeping their space group.

    Args:
        statistics: source of the lattice KDEs (needed only for lattice randomisation).
        seed: int, ``SeedSequence`` or ``Generator``.
        symmetry: the project's spglib tolerance policy; every result is checked with it.
        max_tries: redraws of a result whose space group changed (accidental higher symmetry)
            before giving up with :class:`GenerationError`.
        max_kde_redraws: lattice redraws for an invalid cell before giving up.
    """

    def __init__(self, statistics: Statistics | None = None, seed=0, symmetry: SymmetryTolerance | None = None,
                 max_tries: int = 20, max_kde_redraws: int = 1000):
        self.statistics = statistics
        self.rng = np.random.default_rng(seed)
        self.symmetry = symmetry or SymmetryTolerance()
        self.max_tries = max(1, int(max_tries))
        self.max_kde_redraws = max(1, int(max_kde_redraws))
        self._lattice_samplers: dict[str, LatticeParameterSampler] = {}

    def _lattice_sampler(self, system: str) -> LatticeParameterSampler:
        if self.statistics is None:
            raise ValueError("lattice randomisation needs statistics (their lattice KDEs)")
        if system not in self._lattice_samplers:
            self._lattice_samplers[system] = LatticeParameterSampler(self.statistics.lattice_kdes[system])
        return self._lattice_samplers[system]

    def _new_lattice(self, space_group: int, volume: float) -> np.ndarray:
        sampler = self._lattice_sampler(crystal_system(space_group))
        for _ in range(self.max_kde_redraws):
            lattice = lattice_matrix(sampler.draw(self.rng))
            if lattice is not None:
                return lattice * np.cbrt(volume / abs(np.linalg.det(lattice)))
        raise GenerationError(f"{sampler.crystal_system} lattice KDE gives no valid cell")

    def randomise(self, structure, space_group: int, coordinates: bool = True, lattice: bool = True) -> SyntheticCrystal:
        """A randomised copy of a pymatgen ``Structure`` of ``space_group`` (conventional cell, pyxtal setting).

        Coordinates: every orbit gets new uniform free parameters within its Wyckoff position.
        Lattice: new unit-volume lattice parameters from the crystal-system KDE, scaled to the
        crystal's own conventional volume.
        """
        d = decompose(structure, space_group, self.symmetry)
        return self.randomise_decomposed(d, coordinates=coordinates, lattice=lattice)

    def randomise_decomposed(self, d: WyckoffDecomposition, coordinates: bool = True, lattice: bool = True) -> SyntheticCrystal:
        """As :meth:`randomise` for an already decomposed crystal (decompose once, randomise many times)."""
        volume = abs(float(np.linalg.det(d.lattice)))
        for _ in range(self.max_tries):
            if coordinates:
                xyz = self.rng.random((len(d.site_wyckoff), 3))
                frac = np.concatenate([d.table.orbit(int(w), xyz[i]) for i, w in enumerate(d.site_wyckoff)])
                numbers = np.repeat(d.site_z, d.table.multiplicities[d.site_wyckoff])
            else:
                frac, numbers = d.frac_coords, d.atomic_numbers
            cell = self._new_lattice(d.space_group, volume) if lattice else d.lattice
            if self.symmetry.space_group(cell, frac, numbers) == d.space_group:
                return SyntheticCrystal(lattice=cell, frac_coords=frac, atomic_numbers=numbers,
                                        space_group=d.space_group, wyckoff_letters=d.wyckoff_names)
        raise GenerationError(f"randomised crystal of space group {d.space_group} kept changing its space group")


def randomise_coordinates(structure, space_group: int, seed=0, symmetry: SymmetryTolerance | None = None) -> SyntheticCrystal:
    """New uniform free coordinates within the crystal's Wyckoff positions; lattice unchanged."""
    return CrystalRandomiser(None, seed, symmetry).randomise(structure, space_group, coordinates=True, lattice=False)


def randomise_lattice(structure, space_group: int, statistics: Statistics, seed=0,
                      symmetry: SymmetryTolerance | None = None) -> SyntheticCrystal:
    """New lattice parameters from the statistics' KDE at the same cell volume; coordinates unchanged."""
    return CrystalRandomiser(statistics, seed, symmetry).randomise(structure, space_group, coordinates=False, lattice=True)
