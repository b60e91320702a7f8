"""Randomised real crystals keep space group, elements, Wyckoff positions and (for lattices) volume."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from generator import SymmetryTolerance
from generator.randomise import CrystalRandomiser, decompose, randomise_coordinates, randomise_lattice
from toy_statistics import toy_statistics

TOL = SymmetryTolerance()


def _spinel():
    return Structure.from_spacegroup(227, Lattice.cubic(8.08), ["Mg", "Al", "O"],
                                     [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [0.263, 0.263, 0.263]])


def _monoclinic():
    lat = Lattice.monoclinic(5.1, 6.3, 7.2, 103.0)
    return Structure.from_spacegroup(14, lat, ["Fe", "O", "O"], [[0.11, 0.23, 0.37], [0.41, 0.07, 0.19], [0.0, 0.0, 0.0]])


def _perovskite_rhombohedral():
    return Structure.from_spacegroup(167, Lattice.hexagonal(5.5, 13.4), ["La", "Al", "O"],
                                     [[0, 0, 0.25], [0, 0, 0], [0.55, 0, 0.25]])


@pytest.fixture(params=[(_spinel, 227), (_monoclinic, 14), (_perovskite_rhombohedral, 167)], ids=["227", "14", "167"])
def real(request):
    make, n = request.param
    s = make()
    assert TOL.space_group(s.lattice.matrix, s.frac_coords, [x.Z for x in s.species]) == n
    return s, n


def _sg(c):
    return TOL.space_group(c.lattice, c.frac_coords, c.atomic_numbers)


def test_coordinates_randomised_within_wyckoff_positions(real):
    s, n = real
    d = decompose(s, n)
    c = randomise_coordinates(s, n, seed=3)
    assert _sg(c) == n and c.space_group == n
    assert Counter(c.wyckoff_letters) == Counter(d.wyckoff_names)
    assert Counter(c.atomic_numbers.tolist()) == Counter(x.Z for x in s.species) or c.n_atoms == len(d.atomic_numbers)
    np.testing.assert_allclose(c.lattice, d.lattice)
    free = [w for w in d.site_wyckoff if d.table.dof[w] > 0]
    if free:  # something with a degree of freedom must have moved
        assert not np.allclose(np.sort(c.frac_coords, axis=0), np.sort(d.frac_coords, axis=0))


def test_lattice_randomised_keeps_volume_and_coordinates(real):
    s, n = real
    d = decompose(s, n)
    c = randomise_lattice(s, n, toy_statistics(), seed=4)
    assert _sg(c) == n
    assert c.volume == pytest.approx(abs(np.linalg.det(d.lattice)), rel=1e-9)
    np.testing.assert_array_equal(c.frac_coords, d.frac_coords)
    if n != 227:  # cubic cells have no free shape parameter
        assert not np.allclose(c.lattice, d.lattice)


def test_both_randomised_and_seeded(real):
    s, n = real
    stats = toy_statistics()
    a = CrystalRandomiser(stats, seed=5).randomise(s, n)
    b = CrystalRandomiser(stats, seed=5).randomise(s, n)
    assert _sg(a) == n
    np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
    np.testing.assert_array_equal(a.lattice, b.lattice)


def test_wrong_space_group_is_an_error():
    with pytest.raises(ValueError, match="space group 227"):
        decompose(_spinel(), 225)


def test_lattice_randomisation_needs_statistics():
    with pytest.raises(ValueError, match="statistics"):
        CrystalRandomiser(None).randomise(_monoclinic(), 14, coordinates=False, lattice=True)
