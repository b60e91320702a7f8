"""Names of space groups for reports: Hermann-Mauguin symbol (spglib) and crystal system."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np


@lru_cache(maxsize=None)
def _symbols() -> dict[int, str]:
    import spglib

    out: dict[int, str] = {}
    for hall in range(1, 531):
        t = spglib.get_spacegroup_type(hall)
        number = int(t.number if hasattr(t, "number") else t["number"])
        if number not in out:
            out[number] = str(t.international_short if hasattr(t, "international_short") else t["international_short"])
    return out


def space_group_symbol(number: int) -> str:
    """Short Hermann-Mauguin symbol of the standard setting (spglib), e.g. 225 -> 'Fm-3m'."""
    return _symbols().get(int(number), "?")


def crystal_system(number: int) -> str:
    from generator.symmetry import crystal_system as _cs

    return _cs(int(number))


def crystal_system_membership(space_groups: Sequence[int]) -> np.ndarray:
    """(C, 7) 0/1, read-only: row c marks the crystal system of ``space_groups[c]``, columns in the order of
    ``generator.symmetry.CRYSTAL_SYSTEMS``; ``probabilities @ membership`` sums each system's space groups.
    Built once per class list (a predictor asks for it with every pattern)."""
    return _membership(tuple(int(sg) for sg in space_groups))


@lru_cache(maxsize=16)
def _membership(space_groups: tuple[int, ...]) -> np.ndarray:
    from generator.symmetry import CRYSTAL_SYSTEMS

    out = np.zeros((len(space_groups), len(CRYSTAL_SYSTEMS)))
    for c, sg in enumerate(space_groups):
        out[c, CRYSTAL_SYSTEMS.index(crystal_system(sg))] = 1.0
    out.setflags(write=False)
    return out


def crystal_system_probabilities(probabilities: np.ndarray, space_groups: Sequence[int]) -> list[tuple[str, float]]:
    """The probability of each crystal system: the sum of ``probabilities`` (C,) over the classes
    ``space_groups`` (C,) of that system; systems with a class, most probable first.

    A pattern whose space group is uncertain often has a certain crystal system (the candidates share
    one), and that is what an indexing program needs next."""
    from generator.symmetry import CRYSTAL_SYSTEMS

    membership = crystal_system_membership(space_groups)
    summed = np.asarray(probabilities, float) @ membership
    present = [i for i in np.argsort(-summed, kind="stable") if membership[:, i].any()]
    return [(CRYSTAL_SYSTEMS[i], float(summed[i])) for i in present]
