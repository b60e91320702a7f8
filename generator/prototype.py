"""AFLOW-style prototype labels: a structure-type key for databases that carry none.

A label reads ``<anonymous formula>_<Pearson symbol>_<space group>_<Wyckoff letters per species>``,
for rock salt ``AB_cF8_225_a_b``. Species are ordered by stoichiometry and then by their Wyckoff
letters, never by element, so isostructural compounds (NaCl, KCl) share a label.

spglib may put either of two equivalent origins at the origin (Na on 4a or on 4b in rock salt);
the label is the smallest one over the origin shifts (and the inversion) of the standard cell that
map the space group onto itself, which merges the common equivalent Wyckoff sets (AFLOW does
this with the full Euclidean normalizer, including rotations and axis permutations).
"""
from __future__ import annotations

import itertools
from collections import Counter
from functools import reduce
from math import gcd

import numpy as np

from generator.cell import CellAnalysis, SkipEntry, analyse_cell
from generator.symmetry import SymmetryTolerance, crystal_system

_FAMILY = {"triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t",
           "trigonal": "h", "hexagonal": "h", "cubic": "c"}

# Shifts of the standard cell tried for the canonical label: the centring-like half shifts and
# the quarter shifts that relate equivalent origins in F/I cubic groups.
_SHIFTS = [np.array(s, float) for s in itertools.product((0.0, 0.5), repeat=3)] + [
    np.array([0.25, 0.25, 0.25]), np.array([0.75, 0.75, 0.75])]


def pearson_symbol(analysis: CellAnalysis) -> str:
    """Pearson symbol, e.g. "cF8" (atoms counted in the conventional cell; hR counts the rhombohedral cell)."""
    centring = analysis.international[0]
    centring = "C" if centring in "ABC" else centring
    family = _FAMILY[crystal_system(analysis.space_group)]
    n_atoms = len(analysis.types)
    if centring == "R":
        n_atoms //= 3
    return f"{family}{centring}{n_atoms}"


def _compress(letters: list[str]) -> str:
    """Sorted Wyckoff letters with repeats counted: ["f", "c", "f"] -> "cf2"."""
    out = []
    for letter, count in sorted(Counter(letters).items()):
        out.append(letter if count == 1 else f"{letter}{count}")
    return "".join(out)


def label_of_analysis(analysis: CellAnalysis) -> str:
    """Prototype label of one standardised cell (origin as spglib chose it)."""
    counts = Counter(analysis.types.tolist())
    letters: dict[int, list[str]] = {}
    for t, wy in zip(analysis.asym_types.tolist(), analysis.asym_wyckoffs):
        letters.setdefault(t, []).append(wy.lstrip("0123456789"))
    divisor = reduce(gcd, counts.values())
    species = sorted(counts, key=lambda t: (counts[t] // divisor, _compress(letters[t])))
    anonymous = "".join(
        chr(ord("A") + i) + ("" if counts[t] // divisor == 1 else str(counts[t] // divisor))
        for i, t in enumerate(species)
    ) if len(species) <= 26 else f"X{len(species)}"
    parts = [anonymous, pearson_symbol(analysis), str(analysis.space_group)]
    parts += [_compress(letters[t]) for t in species]
    return "_".join(parts)


def prototype_label(lattice, frac_coords, types, tolerance: SymmetryTolerance | None = None,
                    analysis: CellAnalysis | None = None) -> str:
    """Canonical AFLOW-style prototype label of a cell.

    Args:
        lattice: (3, 3) rows in Angstrom; frac_coords: (N, 3); types: (N,) atom types.
        tolerance: spglib tolerance (the project default when None).
        analysis: an existing :func:`analyse_cell` result of the same cell, to save a call.
    """
    tolerance = tolerance or SymmetryTolerance()
    if analysis is None:
        analysis = analyse_cell(lattice, frac_coords, types, tolerance)
    labels = {label_of_analysis(analysis)}
    # spglib is slow on some cubic cells (~0.1 s), so re-analyse only for the shifts that are in
    # the normalizer of the group, each once modulo the centring translations.
    import spglib

    # The operations of the standard setting come from spglib's table, no symmetry search.
    ops = spglib.get_symmetry_from_database(analysis.hall_number)
    rotations, translations = np.asarray(ops["rotations"]), np.asarray(ops["translations"]) % 1.0
    centring = translations[np.all(rotations == np.eye(3, dtype=int), axis=(1, 2))]
    seen = {(1.0, _class_key(np.zeros(3), centring))}
    # With an inversion centre at the origin, x -> -x + t is the shift t again.
    centrosymmetric_at_origin = _in_group(-np.eye(3, dtype=int), np.zeros(3), rotations, translations)
    for sign in (1.0,) if centrosymmetric_at_origin else (1.0, -1.0):
        for shift in _SHIFTS:
            key = (sign, _class_key(shift, centring))
            if key in seen or not _in_normalizer(sign, shift, rotations, translations):
                continue
            seen.add(key)
            try:
                other = analyse_cell(analysis.lattice, sign * analysis.frac_coords + shift, analysis.types, tolerance)
            except SkipEntry:
                continue
            if other.space_group == analysis.space_group:
                labels.add(label_of_analysis(other))
    return min(labels)


def _class_key(shift: np.ndarray, centring: np.ndarray) -> tuple:
    """A shift modulo the centring translations, as a hashable key."""
    return min(tuple(np.round((shift + c) % 1.0, 6) % 1.0) for c in centring)


def _in_normalizer(sign: float, shift: np.ndarray, rotations: np.ndarray, translations: np.ndarray) -> bool:
    """Whether x -> sign * x + shift maps every operation (R, t) of the group onto one of the group."""
    return all(_in_group(rot, sign * trans + shift - rot @ shift, rotations, translations)
               for rot, trans in zip(rotations, translations))


def _in_group(rot: np.ndarray, trans: np.ndarray, rotations: np.ndarray, translations: np.ndarray) -> bool:
    """Whether the operation (rot, trans) is one of the group's, translations modulo lattice vectors."""
    same_rot = np.all(rotations == rot, axis=(1, 2))
    diff = np.abs((translations[same_rot] - np.asarray(trans) % 1.0 + 0.5) % 1.0 - 0.5)
    return bool(np.any(np.all(diff < 1e-4, axis=1)))
