"""AFLOW-style prototype labels group isostructural crystals and only them."""
from __future__ import annotations

import numpy as np
import pytest

from generator.prototype import prototype_label
from small_crystals import SMALL_CRYSTALS, small_structure

BY_NAME = {entry[0]: entry for entry in SMALL_CRYSTALS}


def label(structure) -> str:
    return prototype_label(structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])


def label_of(name: str) -> str:
    return label(small_structure(*BY_NAME[name]))


def test_rock_salts_share_a_label_and_caesium_chloride_does_not():
    assert label_of("NaCl") == label_of("KCl") == label_of("MgO")
    assert label_of("NaCl") != label_of("CsCl")
    assert label_of("CsCl") == label_of("CsBr")


def test_known_aflow_labels():
    # Labels as in the AFLOW prototype encyclopedia (rock salt, caesium chloride, zinc blende).
    assert label_of("NaCl") == "AB_cF8_225_a_b"
    assert label_of("CsCl") == "AB_cP2_221_a_b"
    assert label_of("ZnS") == "AB_cF8_216_a_c"


def test_label_ignores_which_atom_sits_at_the_origin():
    # The same rock salt written with Cl at the origin, and zinc blende with S at the origin.
    swapped = small_structure("ClNa", 225, 5.64, ["Cl", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert label(swapped) == label_of("NaCl")
    swapped = small_structure("SZn", 216, 5.41, ["S", "Zn"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert label(swapped) == label_of("ZnS")


def test_label_ignores_cell_choice_and_translation():
    nacl = small_structure(*BY_NAME["NaCl"])
    primitive = nacl.get_primitive_structure()
    assert len(primitive) == 2
    shifted = primitive.copy()
    shifted.translate_sites(list(range(len(shifted))), [0.13, 0.21, 0.37])
    assert label(primitive) == label(shifted) == label_of("NaCl")


def test_rutiles_share_a_label_distinct_from_fluorite():
    assert label_of("TiO2") == label_of("SnO2")
    assert label_of("TiO2").split("_")[2] == "136"
    assert label_of("CaF2") != label_of("TiO2")
    assert label_of("CaF2").startswith("AB2_cF12_225")


def test_same_formula_other_structure_differs():
    # Zinc blende and rock salt are both AB cubic F, but not the same structure type.
    assert label_of("ZnS") != label_of("NaCl")
    nacl_like_zns = small_structure("ZnS", 225, 5.41, ["Zn", "S"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert label(nacl_like_zns) == label_of("NaCl")


def test_empty_cell_is_rejected():
    from generator.cell import SkipEntry

    with pytest.raises(SkipEntry):
        prototype_label(np.eye(3) * 4.0, np.zeros((0, 3)), np.zeros(0, int))
