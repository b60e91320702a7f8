"""Wyckoff tables: names, multiplicities, degrees of freedom and orbits that carry the space group."""
from __future__ import annotations

import numpy as np
import pytest

from generator import SymmetryTolerance
from generator.wyckoff import wyckoff_table


def test_known_tables():
    t = wyckoff_table(225)
    assert t.names[0] == "192l" and t.names[-1] == "4a" and len(t.names) == 12
    assert t.dof[t.index("4a")] == 0 and t.dof[t.index("24e")] == 1 and t.dof[t.index("192l")] == 3
    t = wyckoff_table(62)
    assert list(t.names) == ["8d", "4c", "4b", "4a"] and list(t.dof) == [3, 2, 0, 0]
    assert wyckoff_table(1).names == ("1a",)


@pytest.mark.parametrize("n", [1, 2, 14, 15, 62, 139, 148, 166, 194, 227])
def test_orbits_have_multiplicity_distinct_points(n):
    t = wyckoff_table(n)
    rng = np.random.default_rng(n)
    for i, m in enumerate(t.multiplicities):
        assert t.ops[i].shape == (m, 3, 4)
        pts = t.orbit(i, rng.random(3))
        assert pts.shape == (m, 3) and np.all((pts >= 0) & (pts < 1))
        d = pts[:, None, :] - pts[None, :, :]
        d -= np.round(d)
        dist = np.linalg.norm(d, axis=-1) + np.eye(m)
        assert dist.min() > 1e-6, (n, t.names[i])


@pytest.mark.parametrize("n, lattice", [
    (14, [[5.0, 0, 0], [0, 6.0, 0], [-1.2, 0, 7.0]]),
    (62, np.diag([5.0, 6.0, 7.0])),
    (166, [[4.0, 0, 0], [-2.0, 2 * np.sqrt(3), 0], [0, 0, 11.0]]),
    (227, np.eye(3) * 8.0),
])
def test_general_position_orbit_has_the_space_group(n, lattice):
    t = wyckoff_table(n)
    pts = t.orbit(0, np.random.default_rng(0).random(3))
    assert SymmetryTolerance().space_group(np.asarray(lattice, float), pts, np.ones(len(pts), int)) == n


def test_free_parameters_round_trip():
    t = wyckoff_table(62)
    i = t.index("4c")
    xyz = np.array([0.13, 0.7, 0.31])
    p = t.orbit(i, xyz)[0]
    np.testing.assert_allclose(t.orbit(i, t.free_parameters(i, p)), t.orbit(i, xyz), atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError):
        wyckoff_table(231)
    with pytest.raises(KeyError, match="8z"):
        wyckoff_table(14).index("8z")


@pytest.mark.parametrize("n", [22, 63, 139, 166, 227, 38])
def test_primitive_members_give_the_primitive_cell(n):
    t = wyckoff_table(n)
    rng = np.random.default_rng(1)
    lattice = np.diag([5.0, 6.0, 7.0]) if n < 75 else (np.diag([5.0, 5.0, 9.0]) if n == 139 else None)
    if n == 166:
        lattice = np.array([[4.0, 0, 0], [-2.0, 2 * np.sqrt(3), 0], [0, 0, 11.0]])
    if n == 227:
        lattice = np.eye(3) * 8.0
    pts = t.orbit(0, rng.random(3))
    prim = (pts[t.primitive_members[0]] @ np.linalg.inv(t.to_primitive)) % 1.0
    order = round(1 / abs(np.linalg.det(t.to_primitive)))
    assert t.centring != "P" and len(prim) * order == len(pts)
    tol = SymmetryTolerance()
    found = tol.space_group(t.to_primitive @ lattice, prim, np.ones(len(prim), int))
    assert found == tol.space_group(lattice, pts, np.ones(len(pts), int))
    # One orbit of the polar group Amm2 gains a mirror normal to z (Cmmm); the others keep their group.
    assert found == (65 if n == 38 else n)
