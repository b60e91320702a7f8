"""spglib's space-group number of a freshly drawn crystal, computed cheaply.

Every drawn crystal must have exactly its requested group H by spglib (project tolerance): no
accidental higher symmetry. spglib is most of a crystal's CPU time, and most of that goes to cubic
crystals: every spglib entry point builds the full dataset, whose Wyckoff assignment tests
(operations)^2 pairs per Wyckoff candidate and independent atom, ~10-25 ms for an F-centred cubic
cell against ~0.5 ms for a monoclinic one. Three shortcuts give spglib's number:

- cubic crystals: a check that no operation outside H maps the crystal onto itself (below);
  when it cannot exclude every candidate, spglib decides;
- cubic crystals with every atom on a fixed position: exact coordinates and a cell shape without
  free parameters, so the number depends only on which positions hold the same or different
  elements, not on the scale: it is found once per such pattern and reused;
- centred cells go to spglib as their primitive cell (the same crystal).

Why the cubic check gives spglib's number. A crystal drawn in H is exactly H-symmetric, so its
group G contains H, and G = H unless G has (a) a pure translation outside H's centring or (b) an
operation (R, t) whose rotation is outside H's point group. In case (b) G has no extra translation,
so R preserves H's cubic lattice: it is one of the 48 signed permutations of the conventional axes
(an exactly cubic metric has no other within any tolerance below the cell edge, so spglib finds no
other either), and composing with H's operations gives one for every rotation of the coset R PG(H):
one rotation per coset is enough. Any operation maps one atom x0 of the rarest element onto an atom
x_j of the same element, so (up to spglib's tolerance) an extra operation is one of the candidates
(1, x_j - x0) with x_j - x0 outside the centring, or (R, x_j - R x0) with R a coset representative.
Each candidate must send some atom farther than ``margin`` (10x symprec, wider than the few symprec
spglib's averaging and tolerance steps can add up to) from every atom of its element. With no two
atoms of one element within ``margin`` either (spglib refuses or re-averages those), spglib finds
exactly H's operations: the number is H's. Whenever a candidate comes that close, spglib decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations, product

import numpy as np

from generator.symmetry import SymmetryTolerance
from generator.wyckoff import WyckoffTable

MARGIN_PER_SYMPREC = 10.0  # distance (in units of spglib's symprec) a candidate must miss by
_OWN_OPERATION = 1e-6      # fractional distance below which a candidate translation is H's centring


def _cubic_rotations() -> np.ndarray:
    """(48, 3, 3) signed permutation matrices: the point group m-3m of a cubic lattice in its own axes."""
    out = []
    for perm in permutations(range(3)):
        for signs in product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            out.append(m)
    return np.array(out)


CUBIC_ROTATIONS = _cubic_rotations()


@dataclass(frozen=True)
class CubicGroup:
    """What an operation beyond a cubic space group H can look like, in H's conventional cell.

    If the crystal's group G has an operation (R, t) with R outside H's point group, it has one for every
    rotation of the coset R * PG(H) (compose with H's operations), so one rotation per coset is enough;
    an extra operation with a rotation of H composed with H's inverse is an extra pure translation.

    Attributes:
        centring: (K, 3) fractional translations of H's pure translations (the centring, with 0).
        coset_rotations: (c, 3, 3) one rotation per coset of PG(H) in m-3m outside PG(H) (c = 0, 1 or 3).
    """

    centring: np.ndarray
    coset_rotations: np.ndarray

    @classmethod
    def of(cls, table: WyckoffTable) -> "CubicGroup":
        general = table.ops[0]  # (m, 3, 4): the general position lists every operation of the group
        rot = np.rint(general[:, :, :3])
        ident = np.all(rot == np.eye(3), axis=(1, 2))
        point_group = np.unique(rot, axis=0)
        in_m3m = [np.any(np.all(CUBIC_ROTATIONS == r, axis=(1, 2))) for r in point_group]
        if not all(in_m3m) or len(point_group) * int(ident.sum()) != len(general):
            raise AssertionError(f"space group {table.number}: operations are not a cubic group's")
        covered = {r.tobytes() for r in point_group}
        reps = []
        for r in CUBIC_ROTATIONS:
            if r.tobytes() not in covered:
                reps.append(r)
                covered |= {(r @ s).tobytes() for s in point_group}
        return cls(general[ident, :, 3] % 1.0, np.array(reps).reshape(-1, 3, 3))

    def excludes_higher_symmetry(self, lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray, margin: float) -> bool:
        """True when no operation outside the group can map the crystal onto itself within ``margin``.

        ``lattice``: (3, 3) rows, Angstrom, cubic; ``frac``: (N, 3) fractional coordinates of an exactly
        group-symmetric crystal; ``numbers``: (N,) atomic numbers; ``margin`` in Angstrom. False means
        "cannot tell" (a candidate comes close, atoms nearly overlap, or the cell is not a cube).
        """
        edges = np.diag(lattice)
        if np.abs(lattice - np.diag(edges)).max() > 1e-9 * edges.max() or np.ptp(edges) > 1e-9 * edges.max():
            return False  # not a cube (the 48 rotations and nearest images by rounding need one)
        m2 = margin * margin
        _, inverse, counts = np.unique(numbers, return_inverse=True, return_counts=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(counts))]

        for idx in members:  # no two atoms of one element within the margin
            if len(idx) > 1:
                d = frac[idx, None, :] - frac[None, idx, :]
                d -= np.rint(d)
                c = d @ lattice
                d2 = np.einsum("ijk,ijk->ij", c, c)
                np.fill_diagonal(d2, np.inf)
                if d2.min() <= m2:
                    return False

        # Candidates map one atom x0 of the rarest element onto an atom of that element.
        ref = frac[members[int(np.argmin(counts))]]
        shift = ref - ref[0]
        d = shift[:, None, :] - self.centring[None, :, :]
        d -= np.rint(d)
        pure = shift[~np.any(np.all(np.abs(d) < _OWN_OPERATION, axis=-1), axis=-1)]  # not H's centring
        rot = np.concatenate([np.broadcast_to(np.eye(3), (len(pure), 3, 3)),
                              np.repeat(self.coset_rotations, len(ref), axis=0)])
        trans = np.concatenate([pure, (ref[None, :, :] - (self.coset_rotations @ ref[0])[:, None, :]).reshape(-1, 3)])
        # Every atom must land within the margin of an atom of its element; most candidates fail on the first ones.
        for i in range(len(frac)):
            if len(rot) == 0:
                return True
            same = frac[members[inverse[i]]]
            y = rot @ frac[i] + trans  # (C, 3)
            d = y[:, None, :] - same[None, :, :]  # (C, n, 3)
            d -= np.rint(d)
            c = d @ lattice
            keep = np.einsum("cnk,cnk->cn", c, c).min(axis=1) <= m2
            rot, trans = rot[keep], trans[keep]
        return len(rot) == 0


class SpaceGroupCheck:
    """spglib's International number (project tolerance) of crystals drawn from Wyckoff tables.

    One per sampler; it keeps the numbers of fixed-position cubic crystals for reuse (at most
    ``max_reused`` patterns).
    """

    def __init__(self, symmetry: SymmetryTolerance | None = None, max_reused: int = 100_000):
        self.symmetry = symmetry or SymmetryTolerance()
        self.margin = MARGIN_PER_SYMPREC * float(self.symmetry.symprec)
        self.max_reused = int(max_reused)
        self._cubic: dict[int, CubicGroup] = {}
        self._from_primitive: dict[int, np.ndarray] = {}
        self._fixed_cubic: dict[tuple, int] = {}

    def number(self, table: WyckoffTable, lattice: np.ndarray, orbits: list[np.ndarray], sites: list[int],
               site_z: list[int], frac: np.ndarray, numbers: np.ndarray) -> int:
        """spglib's number (0: none found) of a crystal drawn in ``table``'s group.

        ``lattice`` (3, 3) rows in Angstrom; ``sites``: Wyckoff index into ``table`` per placed atom,
        ``site_z`` its atomic number, ``orbits`` its (multiplicity, 3) orbit as drawn;
        ``frac`` (N, 3) and ``numbers`` (N,): the orbits concatenated, the conventional cell.
        """
        n = table.number
        cubic = n >= 195
        key = None
        if cubic and not table.dof[sites].any():
            order = sorted(range(len(sites)), key=sites.__getitem__)
            canon: dict[int, int] = {}
            key = (n, tuple((sites[i], canon.setdefault(site_z[i], len(canon))) for i in order))
            found = self._fixed_cubic.get(key)
            if found is not None:
                return found
        found = 0
        if cubic:
            group = self._cubic.get(n)
            if group is None:
                group = self._cubic[n] = CubicGroup.of(table)
            if group.excludes_higher_symmetry(lattice, frac, numbers, self.margin):
                found = n
        if not found:
            found = self.symmetry.space_group(*self._spglib_cell(table, lattice, orbits, sites, site_z, frac, numbers))
        if key is not None and len(self._fixed_cubic) < self.max_reused:
            self._fixed_cubic[key] = found
        return found

    def _spglib_cell(self, table, lattice, orbits, sites, site_z, frac, numbers):
        """The cell spglib checks: centred cells as their primitive cell (the same crystal, fewer atoms)."""
        if table.centring == "P":
            return lattice, frac, numbers
        inv = self._from_primitive.get(table.number)
        if inv is None:
            inv = self._from_primitive[table.number] = np.linalg.inv(table.to_primitive)
        members = table.primitive_members
        prim = np.concatenate([o[members[w]] for o, w in zip(orbits, sites)])
        prim_numbers = np.repeat(np.asarray(site_z, np.int64), [len(members[w]) for w in sites])
        return table.to_primitive @ lattice, (prim @ inv) % 1.0, prim_numbers
