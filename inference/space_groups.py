"""Names of space groups for reports: Hermann-Mauguin symbol (spglib) and crystal system."""
from __future__ import annotations

from functools import lru_cache


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
