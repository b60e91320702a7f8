"""Splits: disjoint structure types, the paper's filters, seeded and hashed."""
from __future__ import annotations

import json

import pytest

from generator.split import Split, make_split, random_split, structure_type_split


def test_structure_types_never_on_both_sides(oqmd_small):
    split = structure_type_split(oqmd_small, seed=7)
    types = {r.id: r.structure_type for r in oqmd_small}
    stat = {types[i] for i in split.statistics_ids}
    test = {types[i] for i in split.test_ids}
    assert stat and test
    assert not stat & test
    assert not set(split.statistics_ids) & set(split.test_ids)
    assert split.n_statistics + split.n_test + sum(split.filtered.values()) == len(oqmd_small)
    # 70 % of the structure types (not of the crystals) go to the statistics side
    assert len(stat) / (len(stat) + len(test)) == pytest.approx(0.7, abs=0.01)


def test_same_seed_same_split_other_seed_other_split(oqmd_small):
    a = structure_type_split(oqmd_small, seed=3)
    b = structure_type_split(oqmd_small, seed=3)
    c = structure_type_split(oqmd_small, seed=4)
    assert a.hash == b.hash and a.statistics_ids == b.statistics_ids
    assert c.hash != a.hash and c.statistics_ids != a.statistics_ids
    assert structure_type_split(oqmd_small, seed=3, statistics_fraction=0.6).hash != a.hash
    assert structure_type_split(oqmd_small, seed=3, max_volume=500.0).hash != a.hash


def test_filters_remove_large_cells_and_asymmetric_units(oqmd_small):
    volumes = sorted(r.volume for r in oqmd_small)
    cut = volumes[len(volumes) // 2]
    split = structure_type_split(oqmd_small, max_volume=cut, max_asym_atoms=5)
    too_big = sum(r.volume > cut for r in oqmd_small)
    too_many = sum(r.volume <= cut and r.n_asym >= 5 for r in oqmd_small)
    assert split.filtered == {"volume": too_big, "asym_atoms": too_many}
    kept = set(split.statistics_ids) | set(split.test_ids)
    assert all(oqmd_small[i].volume <= cut and oqmd_small[i].n_asym < 5 for i in kept)
    assert len(kept) == len(oqmd_small) - too_big - too_many


def test_random_split_fraction_and_reproducibility(oqmd_small):
    a = random_split(oqmd_small, statistics_fraction=0.7, seed=1)
    assert a.kind == "random"
    assert a.n_statistics == round(0.7 * (a.n_statistics + a.n_test))
    assert not set(a.statistics_ids) & set(a.test_ids)
    assert random_split(oqmd_small, seed=1).hash == a.hash
    assert random_split(oqmd_small, seed=2).statistics_ids != a.statistics_ids
    assert a.hash != structure_type_split(oqmd_small, seed=1).hash


def test_save_load_and_tamper_check(oqmd_small, tmp_path):
    split = make_split(oqmd_small, {"kind": "structure_type", "seed": 5})
    path = split.save(tmp_path / "split.json")
    loaded = Split.load(path)
    assert loaded == split
    data = json.loads(path.read_text())
    data["test_ids"] = data["test_ids"][1:]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hash"):
        Split.load(path)


def test_bad_options(oqmd_small):
    with pytest.raises(ValueError, match="kind"):
        make_split(oqmd_small, {"kind": "by_colour"})
    with pytest.raises(ValueError, match="statistics_fraction"):
        structure_type_split(oqmd_small, statistics_fraction=1.5)
