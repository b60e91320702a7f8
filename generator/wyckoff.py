"""Wyckoff positions of a space group as plain arrays (from pyxtal), for fast orbit generation.

Building pyxtal ``Group`` objects costs ~10 ms each, far too slow per crystal, so every space
group's Wyckoff positions are turned once into stacked affine operations. An orbit is then one
matrix product: ``ops[:, :, :3] @ xyz + ops[:, :, 3]`` maps free parameters ``xyz`` (uniform in
[0, 1)^3) to all ``multiplicity`` positions of that Wyckoff position in the conventional cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class WyckoffTable:
    """All Wyckoff positions of one space group in pyxtal's (standard) setting.

    Attributes:
        number: International space-group number.
        hall_number: spglib Hall number of the setting the operations are written in.
        names: Wyckoff names ("4e"), general position first (pyxtal's order).
        multiplicities: (k,) int64 positions per orbit in the conventional cell.
        dof: (k,) int64 free parameters of each Wyckoff position (0 = fixed point).
        ops: one (multiplicity, 3, 4) float64 array of affine operations per Wyckoff position;
            row-wise ``[R | t]`` acting on the free-parameter vector (x, y, z).
        centring: lattice centring letter of the conventional cell ("P", "A", "C", "I", "F", "R").
        to_primitive: (3, 3) rows = primitive basis vectors in conventional fractional coordinates;
            primitive lattice = ``to_primitive @ lattice``, primitive fractional = ``frac @ inv(to_primitive)``.
        primitive_members: per Wyckoff position, indices of the orbit members that are distinct
            modulo the centring translations (one per primitive-cell atom).
    """

    number: int
    hall_number: int
    names: tuple[str, ...]
    multiplicities: np.ndarray
    dof: np.ndarray
    ops: tuple[np.ndarray, ...]
    centring: str = "P"
    to_primitive: np.ndarray = field(default_factory=lambda: np.eye(3))
    primitive_members: tuple[np.ndarray, ...] = ()

    def index(self, name: str) -> int:
        """Position of a Wyckoff name in :attr:`names` (KeyError when the group has no such position)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"space group {self.number} has no Wyckoff position {name!r}; it has {list(self.names)}") from None

    def orbit(self, index: int, xyz: np.ndarray) -> np.ndarray:
        """(multiplicity, 3) fractional coordinates in [0, 1) of the orbit of Wyckoff position ``index``.

        ``xyz``: (3,) free parameters; components a special position does not use are ignored.
        """
        ops = self.ops[index]
        return (ops[:, :, :3] @ xyz + ops[:, :, 3]) % 1.0

    def free_parameters(self, index: int, position: np.ndarray) -> np.ndarray:
        """(3,) free parameters that put the first orbit member of Wyckoff position ``index`` at ``position``.

        Solves ``R xyz + t = position`` in the least-squares sense (exact for a point on the position).
        """
        op = self.ops[index][0]
        xyz, *_ = np.linalg.lstsq(op[:, :3], np.asarray(position, float) - op[:, 3], rcond=None)
        return xyz


# Primitive basis of each centring (rows, in conventional fractional coordinates; ITA conventions,
# hexagonal axes with obverse setting for R).
_PRIMITIVE_BASIS = {
    "P": np.eye(3),
    "A": np.array([[1.0, 0, 0], [0, 0.5, 0.5], [0, -0.5, 0.5]]),
    "B": np.array([[0.5, 0, 0.5], [0, 1.0, 0], [-0.5, 0, 0.5]]),
    "C": np.array([[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1.0]]),
    "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
    "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
    "R": np.array([[2 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, 1 / 3], [-1 / 3, -2 / 3, 1 / 3]]),
}


def _primitive_members(ops: np.ndarray, basis: np.ndarray, centring_order: int) -> np.ndarray:
    """Indices of orbit members distinct modulo the centring, found on a generic point of the orbit."""
    xyz = np.array([np.sqrt(2.0) - 1.3, np.pi - 3.0, np.e - 2.3])  # generic: irrational, no special position
    points = (ops[:, :, :3] @ xyz + ops[:, :, 3]) @ np.linalg.inv(basis)
    key = np.round(points * 1e6).astype(np.int64) % 1_000_000
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    if len(first) * centring_order != len(ops):
        raise AssertionError(f"orbit of {len(ops)} points does not split into {centring_order} centring classes")
    return first


@lru_cache(maxsize=None)
def wyckoff_table(space_group: int) -> WyckoffTable:
    """The :class:`WyckoffTable` of an International space-group number (cached per process)."""
    if not 1 <= int(space_group) <= 230:
        raise ValueError(f"space group {space_group} is not in 1..230")
    from pyxtal.symmetry import Group

    group = Group(int(space_group))
    names, mult, dof, ops = [], [], [], []
    for wp in group.Wyckoff_positions:
        affine = np.array([op.affine_matrix[:3, :4] for op in wp.ops], dtype=np.float64)
        affine.setflags(write=False)
        names.append(f"{wp.multiplicity}{wp.letter}")
        mult.append(int(wp.multiplicity))
        # The rank of the first operation's linear part is the number of free parameters.
        dof.append(int(np.linalg.matrix_rank(affine[0, :, :3])))
        ops.append(affine)
    centring = group.symbol[0]
    basis = _PRIMITIVE_BASIS[centring]
    order = int(round(1.0 / abs(np.linalg.det(basis))))
    members = tuple(_primitive_members(o, basis, order) for o in ops)
    return WyckoffTable(
        number=int(space_group),
        hall_number=int(group.hall_number),
        names=tuple(names),
        multiplicities=np.asarray(mult, np.int64),
        dof=np.asarray(dof, np.int64),
        ops=tuple(ops),
        centring=centring,
        to_primitive=basis,
        primitive_members=members,
    )
