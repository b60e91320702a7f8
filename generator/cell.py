"""Symmetry analysis of one real crystal cell with spglib alone (no pymatgen on the hot path).

:func:`analyse_cell` turns any cell into the conventional standard cell plus what the split and
the statistics need (space group, asymmetric-unit sites with Wyckoff names, atomic volume).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.elements import MAX_Z, mean_radii
from generator.symmetry import SymmetryTolerance

# Fewer cubic Angstrom per atom than this is not a crystal (the densest solids have ~5).
MIN_VOLUME_PER_ATOM = 1.0


class SkipEntry(Exception):
    """An entry that cannot become a record; ``reason`` is the short key counted in the skip report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class CellAnalysis:
    """Conventional standard cell of a crystal and its asymmetric unit.

    Attributes:
        space_group: spglib number under the tolerance used.
        hall_number: spglib Hall number of the standard setting.
        international: short Hermann-Mauguin symbol.
        lattice: (3, 3) conventional standard lattice, rows, Angstrom.
        frac_coords: (N, 3) fractional coordinates in the conventional cell.
        types: (N,) int type index of every conventional atom (index into the caller's type table).
        asym_types: (n_asym,) type index of one representative per crystallographic orbit.
        asym_wyckoffs: Wyckoff names ("4e": conventional multiplicity + letter) per orbit.
        n_primitive: atoms in the primitive cell.
    """

    space_group: int
    hall_number: int
    international: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    types: np.ndarray
    asym_types: np.ndarray
    asym_wyckoffs: list[str]
    n_primitive: int

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))


def check_cell(lattice: np.ndarray, frac_coords: np.ndarray, n_atoms: int) -> None:
    """Raise :class:`SkipEntry` for a cell no crystal can have."""
    if n_atoms == 0:
        raise SkipEntry("no atoms")
    if not (np.all(np.isfinite(lattice)) and np.all(np.isfinite(frac_coords))):
        raise SkipEntry("impossible cell", "non-finite lattice or coordinates")
    volume = abs(float(np.linalg.det(lattice)))
    if volume < MIN_VOLUME_PER_ATOM * n_atoms:
        raise SkipEntry("impossible cell", f"volume {volume:.3g} A^3 for {n_atoms} atoms")


def analyse_cell(lattice, frac_coords, types, tolerance: SymmetryTolerance) -> CellAnalysis:
    """Standardise a cell with spglib and read its asymmetric unit.

    Args:
        lattice: (3, 3) lattice vectors as rows, Angstrom.
        frac_coords: (N, 3) fractional coordinates.
        types: (N,) int atom types (atomic numbers, or indices of distinct site compositions
            for disordered crystals, so that differently occupied sites stay distinct).
        tolerance: the project's symmetry tolerance.
    """
    lattice = np.asarray(lattice, float)
    frac_coords = np.asarray(frac_coords, float).reshape(-1, 3)
    types = np.asarray(types, int)
    check_cell(lattice, frac_coords, len(types))
    ds = tolerance.dataset(lattice, frac_coords % 1.0, types)
    if ds is None:
        raise SkipEntry("no symmetry found", "spglib returned no dataset")
    n_input = len(types)
    n_std = len(ds.std_types)
    # Multiplicity of an orbit in the conventional cell = its size in the input cell scaled by
    # the ratio of cell sizes (orbits scale uniformly), so no second spglib call is needed.
    orbits, first, counts = np.unique(ds.equivalent_atoms, return_index=True, return_counts=True)
    scale = n_std / n_input
    wyckoffs = []
    for idx, count in zip(first, counts):
        mult = count * scale
        if abs(mult - round(mult)) > 1e-6:
            raise SkipEntry("no symmetry found", "inconsistent orbit multiplicity")
        wyckoffs.append(f"{int(round(mult))}{ds.wyckoffs[idx]}")
    return CellAnalysis(
        space_group=int(ds.number),
        hall_number=int(ds.hall_number),
        international=str(ds.international),
        lattice=np.array(ds.std_lattice, float),
        frac_coords=np.array(ds.std_positions, float) % 1.0,
        types=np.array(ds.std_types, int),
        asym_types=types[first],
        asym_wyckoffs=wyckoffs,
        n_primitive=int(len(np.unique(ds.mapping_to_primitive))),
    )


def lattice_parameters(lattice: np.ndarray) -> np.ndarray:
    """(6,) a, b, c (Angstrom), alpha, beta, gamma (degrees) of (3, 3) row lattice vectors."""
    lattice = np.asarray(lattice, float)
    lengths = np.linalg.norm(lattice, axis=1)

    def angle(i, j):
        cos = np.dot(lattice[i], lattice[j]) / (lengths[i] * lengths[j])
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))

    return np.array([*lengths, angle(1, 2), angle(0, 2), angle(0, 1)])


def atomic_volume_or_nan(atomic_numbers: np.ndarray, occupancies: np.ndarray | None = None) -> float:
    """Sum of 4/3 pi r^3 over atoms (occupancy-weighted), NaN when an element has no tabulated radius."""
    z = np.asarray(atomic_numbers, int)
    if z.size == 0 or z.min() < 1 or z.max() > MAX_Z:
        return float("nan")
    r = mean_radii()[z]
    weights = np.ones(len(z)) if occupancies is None else np.asarray(occupancies, float)
    return float(4.0 / 3.0 * np.pi * np.sum(weights * r**3))
