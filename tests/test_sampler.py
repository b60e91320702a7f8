"""Synthetic crystal sampler: distributions, placement rules, exact volumes, spglib agreement, seeds, errors."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from generator import CrystalSampler, GenerationError, GeneratorConfig, SymmetryTolerance
from generator.elements import atomic_volume
from generator.statistics import DensityKDE
from toy_statistics import TOY_PRIOR, toy_statistics

CONF = Path(__file__).resolve().parents[1] / "conf" / "generator"


@pytest.fixture(scope="module")
def stats():
    return toy_statistics()


@pytest.fixture(scope="module")
def crystals(stats):
    sampler = CrystalSampler(stats, seed=7)
    return sampler, sampler.sample_many(150)


def _only(stats, n, **fields):
    """Statistics reduced to one space group with some per-group fields replaced."""
    import copy

    s = copy.deepcopy(stats)
    s.space_groups = [n]
    s.prior = np.ones(1)
    s.per_space_group = {n: s.per_space_group[n]}
    for k, v in fields.items():
        setattr(s.per_space_group[n], k, v)
    return s


def test_prior_frequencies_match_database_prior(stats):
    sampler = CrystalSampler(stats, seed=3)
    draws = Counter(sampler.draw_space_group() for _ in range(5000))
    for n, p in TOY_PRIOR.items():
        # 5 sigma of a binomial count
        assert abs(draws[n] - 5000 * p) < 5 * np.sqrt(5000 * p * (1 - p)), (n, draws[n])


def test_uniform_prior_is_uniform(stats):
    sampler = CrystalSampler(stats, seed=3, spacegroup_prior="uniform")
    draws = Counter(sampler.draw_space_group() for _ in range(6000))
    assert set(draws) == set(TOY_PRIOR)
    assert all(abs(c - 1000) < 5 * np.sqrt(1000 * 5 / 6) for c in draws.values()), draws


@pytest.mark.slow
def test_sampled_space_groups_follow_prior(stats):
    sampler = CrystalSampler(stats, seed=11)
    crystals = sampler.sample_many(800)
    counts = Counter(c.space_group for c in crystals)
    expected = np.array([TOY_PRIOR[n] for n in sorted(TOY_PRIOR)]) * 800
    observed = np.array([counts[n] for n in sorted(TOY_PRIOR)])
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    assert chi2 < 20.5  # p = 0.001 with 5 degrees of freedom


def test_every_crystal_has_its_space_group_by_spglib(crystals):
    sampler, cs = crystals
    tol = SymmetryTolerance()
    assert {c.space_group for c in cs} == set(TOY_PRIOR)
    for c in cs:
        assert tol.space_group(c.lattice, c.frac_coords, c.atomic_numbers) == c.space_group
        assert c.frac_coords.shape == (c.n_atoms, 3)
        assert np.all((c.frac_coords >= 0) & (c.frac_coords < 1))
        assert c.volume <= 7000.0
        assert 0 < c.n_asym < 100


def test_labels_index_statistics_space_groups(crystals, stats):
    sampler, cs = crystals
    labels = sampler.labels(cs)
    assert [stats.space_groups[i] for i in labels] == [c.space_group for c in cs]


def test_atoms_per_wyckoff_site_match_multiplicities(crystals):
    _, cs = crystals
    for c in cs:
        assert sum(int(name[:-1]) for name in c.wyckoff_letters) == c.n_atoms


def test_every_repetition_is_placed(stats):
    # Each of 3 elements carries exactly 3 general-position sites: 9 placements, none dropped.
    s = _only(stats, 14, n_unique_elements={3: 1.0}, repetitions={3: 1.0}, wyckoff_occupation={"4e": 1.0})
    sampler = CrystalSampler(s, seed=0)
    for c in sampler.sample_many(20):
        assert c.n_asym == 9 and c.n_atoms == 36
        assert sorted(Counter(c.atomic_numbers.tolist()).values()) == [12, 12, 12]


def test_per_element_repetitions_are_used(stats):
    s = _only(stats, 14, n_unique_elements={1: 1.0}, element_probabilities={"O": 1.0},
              repetitions={1: 1.0}, repetitions_per_element={"O": {5: 1.0}}, wyckoff_occupation={"4e": 1.0})
    pooled = CrystalSampler(s, seed=0).sample()
    per_element = CrystalSampler(s, seed=0, per_element_repetitions=True).sample()
    assert pooled.n_asym == 1 and per_element.n_asym == 5


def test_fixed_positions_take_at_most_one_atom(stats):
    s = _only(stats, 225, n_unique_elements={2: 1.0}, repetitions={1: 1.0},
              wyckoff_occupation={"4a": 0.5, "4b": 0.5})
    tol = SymmetryTolerance()
    for c in CrystalSampler(s, seed=1).sample_many(20):
        assert sorted(c.wyckoff_letters) == ["4a", "4b"]
        # cubic, all positions fixed: verdicts are reused across crystals and must still hold for each
        assert tol.space_group(c.lattice, c.frac_coords, c.atomic_numbers) == 225


def test_reused_verdicts_reject_what_spglib_rejects(stats):
    # One element on 4a and 4b of Fm-3m is a simple cubic lattice (Pm-3m): never 225.
    s = _only(stats, 225, n_unique_elements={1: 1.0}, repetitions={2: 1.0}, element_probabilities={"Na": 1.0},
              wyckoff_occupation={"4a": 0.5, "4b": 0.5})
    sampler = CrystalSampler(s, seed=1, max_restarts=3)
    with pytest.raises(GenerationError):
        sampler.sample()
    assert sampler.rejections["spglib_mismatch"] == 60


def test_impossible_statistics_raise_clear_error(stats):
    # Three elements but only two fixed positions: no crystal can exist.
    s = _only(stats, 225, n_unique_elements={3: 1.0}, repetitions={1: 1.0},
              wyckoff_occupation={"4a": 0.5, "4b": 0.5})
    sampler = CrystalSampler(s, seed=1, max_restarts=5)
    with pytest.raises(GenerationError, match="space group 225"):
        sampler.sample()
    assert sampler.rejections["wyckoff_exhausted"] == 5 * 20


def test_too_many_unique_elements_raise(stats):
    s = _only(stats, 14, n_unique_elements={4: 1.0}, element_probabilities={"O": 0.5, "Na": 0.5})
    with pytest.raises(GenerationError):
        CrystalSampler(s, seed=1, max_restarts=3).sample()


def test_unknown_wyckoff_name_is_rejected_at_construction(stats):
    s = _only(stats, 14, wyckoff_occupation={"4e": 0.5, "8z": 0.5})
    with pytest.raises(KeyError, match="8z"):
        CrystalSampler(s)


def test_bad_prior_name(stats):
    with pytest.raises(ValueError, match="spacegroup_prior"):
        CrystalSampler(stats, spacegroup_prior="flat")


def test_volume_equals_density_factor_times_atomic_volume(stats):
    # A (numerically) delta-shaped density KDE at f = 2.5: V_cell must be 2.5 V_atomic exactly.
    import copy

    s = copy.deepcopy(stats)
    s.density_kde = DensityKDE(np.array([[2.5, 100.0], [2.5, 2000.0]]), np.array([1e-12, 500.0]))
    for c in CrystalSampler(s, seed=5).sample_many(40):
        assert c.volume == pytest.approx(2.5 * atomic_volume(c.atomic_numbers), rel=1e-9)


def test_volume_limit_and_asym_limit(stats):
    sampler = CrystalSampler(stats, seed=2, max_volume=400.0, max_asym_atoms=4)
    cs = sampler.sample_many(40)
    assert all(c.volume <= 400.0 and c.n_asym < 4 for c in cs)
    assert sampler.rejections["volume"] > 0 and sampler.rejections["asym_atoms"] > 0


def test_same_seed_same_crystals_different_seeds_differ(stats):
    a = CrystalSampler(stats, seed=42).sample_many(10)
    b = CrystalSampler(stats, seed=42).sample_many(10)
    c = CrystalSampler(stats, seed=43).sample_many(10)
    for x, y in zip(a, b):
        assert x.space_group == y.space_group and x.wyckoff_letters == y.wyckoff_letters
        np.testing.assert_array_equal(x.lattice, y.lattice)
        np.testing.assert_array_equal(x.frac_coords, y.frac_coords)
    assert not all(np.array_equal(x.lattice, y.lattice) for x, y in zip(a, c))


def test_spawned_seeds_give_independent_streams(stats):
    children = np.random.SeedSequence(9).spawn(2)
    a = CrystalSampler(stats, seed=children[0]).sample_many(5)
    b = CrystalSampler(stats, seed=children[1]).sample_many(5)
    assert not any(np.array_equal(x.frac_coords, y.frac_coords) for x in a for y in b if x.n_atoms == y.n_atoms)


def test_config_from_yaml_builds_sampler(stats):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(CONF), version_base="1.3"):
        default = OmegaConf.merge(OmegaConf.structured(GeneratorConfig), compose("default"))
        uniform = OmegaConf.merge(OmegaConf.structured(GeneratorConfig), compose("uniform"))
    assert default.spacegroup_prior == "database" and uniform.spacegroup_prior == "uniform"
    assert "max_volume" not in default and "seed" not in default  # conf/split's filter; the caller's seed
    sampler = CrystalSampler.from_config(stats, uniform, seed=1)
    np.testing.assert_allclose(sampler.prior, np.full(len(TOY_PRIOR), 1 / len(TOY_PRIOR)))
    assert sampler.sample().space_group in TOY_PRIOR
