"""The sampler's space-group check gives spglib's number on the conventional cell (real spglib, no mocks)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from generator import CrystalSampler, SymmetryTolerance
from generator.group_check import CubicGroup, SpaceGroupCheck
from generator.wyckoff import wyckoff_table
from toy_statistics import toy_statistics

# Cubic groups of every centring and point group, and C/A-centred ones, besides the toy groups (P, I, R, F).
CUBIC = (198, 200, 205, 207, 216, 217, 221, 225, 227, 229, 230)
CENTRED = (12, 38, 63)


class _Recording(SpaceGroupCheck):
    """The sampler's check, keeping every crystal it was asked about with its answer."""

    def __init__(self, symmetry):
        super().__init__(symmetry)
        self.calls = []

    def number(self, table, lattice, orbits, sites, site_z, frac, numbers):
        found = super().number(table, lattice, orbits, sites, site_z, frac, numbers)
        self.calls.append((table, lattice.copy(), frac.copy(), numbers.copy(), found))
        return found


def _statistics_with_cubic_groups():
    """Toy statistics plus cubic and C/A-centred groups with every Wyckoff position equally likely (many
    fixed positions: accidental higher symmetry is common) and a uniform prior over all groups."""
    s = copy.deepcopy(toy_statistics())
    template = s.per_space_group[225]
    for n in CUBIC + CENTRED:
        names = wyckoff_table(n).names
        g = copy.deepcopy(template)
        g.number = n
        g.wyckoff_occupation = {w: 1.0 / len(names) for w in names}
        g.wyckoff_occupation_per_element = {}
        s.per_space_group[n] = g
    s.space_groups = sorted(set(s.space_groups) | set(CUBIC) | set(CENTRED))
    s.prior = np.ones(len(s.space_groups))
    return s


@pytest.fixture(scope="module")
def recorded():
    sampler = CrystalSampler(_statistics_with_cubic_groups(), seed=5, spacegroup_prior="uniform")
    check = _Recording(sampler.symmetry)
    sampler.group_check = check
    crystals = sampler.sample_many(300)
    return crystals, check.calls


def test_check_gives_spglibs_number_on_the_conventional_cell(recorded):
    crystals, calls = recorded
    tol = SymmetryTolerance()
    assert len(calls) >= len(crystals) >= 300
    centrings = {t.centring for t, *_ in calls}
    assert {"P", "A", "C", "I", "R", "F"} <= centrings
    for table, lattice, frac, numbers, found in calls:
        assert found == tol.space_group(lattice, frac, numbers), (table.number, len(numbers))
    # Both outcomes occur in cubic groups: accidental higher symmetry is rejected, the rest accepted.
    cubic = [(t.number, found) for t, *_, found in calls if t.number in CUBIC]
    assert sum(n == f for n, f in cubic) >= 100
    assert sum(n != f for n, f in cubic) >= 10


def test_cubic_shortcut_decides_most_cubic_crystals_and_agrees_with_spglib(recorded):
    _, calls = recorded
    tol = SymmetryTolerance()
    decided = 0
    for table, lattice, frac, numbers, _ in calls:
        if table.number in CUBIC and CubicGroup.of(table).excludes_higher_symmetry(lattice, frac, numbers, 0.01):
            decided += 1
            assert tol.space_group(lattice, frac, numbers) == table.number
    assert decided >= 100


@pytest.mark.parametrize("n, positions, higher", [
    (221, [(0, 0, 0), (0.5, 0.5, 0.5)], 229),                     # 1a + 1b, one element: body-centred
    (216, [(0, 0, 0), (0.25, 0.25, 0.25)], 227),                  # 4a + 4c, one element: diamond
    (225, [(0, 0, 0), (0.5, 0.5, 0.5)], 221),                     # 4a + 4b, one element: simple cubic
])
def test_cubic_shortcut_never_claims_a_crystal_with_higher_symmetry(n, positions, higher):
    table = wyckoff_table(n)
    general = table.ops[0]
    orbits = [np.unique(((general[:, :, :3] @ np.array(p) + general[:, :, 3]) % 1.0).round(12) % 1.0, axis=0)
              for p in positions]
    frac = np.concatenate(orbits)
    lattice = np.eye(3) * 5.0
    tol = SymmetryTolerance()
    one_element = np.full(len(frac), 11)
    assert tol.space_group(lattice, frac, one_element) == higher
    assert not CubicGroup.of(table).excludes_higher_symmetry(lattice, frac, one_element, 0.01)
    # A second element on the second position removes the extra symmetry: the shortcut decides, as spglib.
    two_elements = np.repeat([11, 17], [len(orbits[0]), len(orbits[1])])
    assert tol.space_group(lattice, frac, two_elements) == n
    assert CubicGroup.of(table).excludes_higher_symmetry(lattice, frac, two_elements, 0.01)


def test_nearly_overlapping_atoms_are_left_to_spglib():
    table = wyckoff_table(221)  # Pm-3m; an atom on 6e (x, 0, 0) at x = 1e-4: six atoms within 0.01 A of 1a
    frac = (table.ops[table.index("6e")][:, :, :3] @ np.array([1e-4, 0, 0]) + table.ops[table.index("6e")][:, :, 3]) % 1.0
    frac = np.concatenate([frac, [[0.5, 0.5, 0.5]]])
    numbers = np.array([8] * 6 + [11])
    assert not CubicGroup.of(table).excludes_higher_symmetry(np.eye(3) * 5.0, frac, numbers, 0.01)


def test_cubic_shortcut_only_judges_cubes():
    table = wyckoff_table(221)
    frac, numbers = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]), np.array([11, 17])
    assert CubicGroup.of(table).excludes_higher_symmetry(np.eye(3) * 4.0, frac, numbers, 0.01)
    assert not CubicGroup.of(table).excludes_higher_symmetry(np.diag([4.0, 4.0, 4.5]), frac, numbers, 0.01)
