"""Generation statistics: extraction from the statistics side, portable round trip, cached pipeline, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from generator.split import structure_type_split
from generator.statistics import Statistics, extract_statistics

MIN = 8  # below 8, seed 11 classifies space group 2 on 7 triclinic crystals too alike for a lattice KDE


@pytest.fixture(scope="module")
def split(oqmd_small):
    return structure_type_split(oqmd_small, seed=11)


@pytest.fixture(scope="module")
def stats(oqmd_small, split):
    return extract_statistics(oqmd_small, split, min_crystals_per_class=MIN)


def test_classes_are_the_groups_above_the_threshold(oqmd_small, split, stats):
    counts = Counter(oqmd_small[i].space_group for i in split.statistics_ids)
    expected = sorted(g for g, n in counts.items() if n >= MIN)
    assert stats.space_groups == expected
    np.testing.assert_allclose(stats.prior, [counts[g] / sum(counts[h] for h in expected) for g in expected])
    assert set(stats.per_space_group) == set(expected)
    assert all(stats.per_space_group[g].count == counts[g] for g in expected)


def test_probabilities_are_normalised(stats):
    assert stats.prior.sum() == pytest.approx(1.0)
    assert sum(stats.element_probabilities.values()) == pytest.approx(1.0)
    for sg in stats.per_space_group.values():
        for dist in (sg.n_unique_elements, sg.element_probabilities, sg.repetitions, sg.wyckoff_occupation):
            assert sum(dist.values()) == pytest.approx(1.0)
        for per_el in (sg.repetitions_per_element, sg.wyckoff_occupation_per_element):
            assert set(per_el) == set(sg.element_probabilities)
            assert all(sum(d.values()) == pytest.approx(1.0) for d in per_el.values())


def test_counts_match_a_hand_count(oqmd_small, split, stats):
    g = stats.space_groups[int(np.argmax(stats.prior))]
    recs = [oqmd_small[i] for i in split.statistics_ids if oqmd_small[i].space_group == g]
    # repetitions: per crystal, per unique element, the number of Wyckoff placements it carries
    reps = Counter(n for r in recs for n in Counter(r.asym_elements).values())
    total = sum(reps.values())
    assert stats.per_space_group[g].repetitions == pytest.approx({k: v / total for k, v in reps.items()})
    oxygen = sum("O" in r.asym_elements for r in recs)
    elements = sum(len(set(r.asym_elements)) for r in recs)
    if oxygen:
        assert stats.per_space_group[g].element_probabilities["O"] == pytest.approx(oxygen / elements)


def test_lattice_data_has_unit_volume(stats):
    assert set(stats.lattice_kdes) >= {"cubic", "tetragonal", "orthorhombic", "monoclinic"}
    ortho = stats.lattice_kdes["orthorhombic"]
    assert ortho.parameters == ("a", "b", "c")
    np.testing.assert_allclose(np.prod(ortho.data, axis=1), 1.0, rtol=1e-6)
    tet = stats.lattice_kdes["tetragonal"]
    np.testing.assert_allclose(tet.data[:, 0] ** 2 * tet.data[:, 1], 1.0, rtol=1e-6)
    mono = stats.lattice_kdes["monoclinic"]
    assert mono.parameters == ("a", "b", "c", "beta")
    beta = np.radians(mono.data[:, 3])
    np.testing.assert_allclose(np.prod(mono.data[:, :3], axis=1) * np.sin(beta), 1.0, rtol=1e-6)
    assert ortho.factor == pytest.approx(len(ortho.data) ** (-1 / 7))


def test_descriptors_and_density(oqmd_small, split, stats):
    d = stats.descriptors
    assert set(d) == {"volume", "density_factor", "n_asym", "n_unique_elements", "space_group"}
    assert all(len(v) == split.n_statistics for v in d.values())
    first = oqmd_small[split.statistics_ids[0]]
    assert d["volume"][0] == pytest.approx(first.volume)
    from generator.elements import atomic_volume

    assert d["density_factor"][0] == pytest.approx(first.volume / atomic_volume(first.atomic_numbers))
    assert stats.density_kde.data.shape[1] == 2
    assert np.all(stats.density_kde.bandwidth > 0)


def test_round_trip_rebuilds_the_kdes(stats, tmp_path):
    loaded = Statistics.load(stats.save(tmp_path / "stats"))
    assert loaded.space_groups == stats.space_groups
    assert loaded.per_space_group == stats.per_space_group
    assert loaded.provenance == stats.provenance
    for cs, kde in stats.lattice_kdes.items():
        if not kde.parameters:
            continue
        a = kde.kde().resample(4000, seed=0)
        b = loaded.lattice_kdes[cs].kde().resample(4000, seed=1)
        np.testing.assert_allclose(a.mean(axis=1), b.mean(axis=1), rtol=0.05, atol=0.05)
        np.testing.assert_allclose(np.std(a, axis=1), np.std(b, axis=1), rtol=0.15, atol=0.05)
    f, v = np.array([1.2, 1.6, 2.5]), np.array([80.0, 150.0, 400.0])
    np.testing.assert_allclose(loaded.density_kde.kde().pdf(f, v), stats.density_kde.kde().pdf(f, v))
    for name in stats.descriptors:
        np.testing.assert_array_equal(loaded.descriptors[name], stats.descriptors[name])


def test_provenance(stats, split, oqmd_small):
    p = stats.provenance
    assert p["split_hash"] == split.hash and p["source_hash"] == oqmd_small.source_hash
    assert p["seed"] == 11
    assert p["symmetry_tolerance"]["symprec"] == oqmd_small.tolerance.symprec
    assert "spglib" in p["libraries"]


def test_same_seed_identical_statistics_other_seed_different(oqmd_small, stats, tmp_path):
    again = extract_statistics(oqmd_small, structure_type_split(oqmd_small, seed=11), min_crystals_per_class=MIN)
    other = extract_statistics(oqmd_small, structure_type_split(oqmd_small, seed=12), min_crystals_per_class=MIN)
    a = json.loads((stats.save(tmp_path / "a") / "statistics.json").read_text())
    b = json.loads((again.save(tmp_path / "b") / "statistics.json").read_text())
    c = json.loads((other.save(tmp_path / "c") / "statistics.json").read_text())
    assert a == b
    assert a != c
    np.testing.assert_array_equal(stats.lattice_kdes["monoclinic"].data, again.lattice_kdes["monoclinic"].data)


def test_threshold_too_high_is_a_clear_error(oqmd_small, split):
    with pytest.raises(ValueError, match="min_crystals_per_class"):
        extract_statistics(oqmd_small, split, min_crystals_per_class=10_000)


def test_default_config_composes_the_conf_groups():
    from generator.pipeline import default_config

    cfg = default_config()
    assert cfg.database.name == "oqmd" and cfg.database.limit is None
    assert cfg.split.kind == "structure_type" and cfg.split.statistics_fraction == 0.7
    assert cfg.split.max_volume == 7000 and cfg.split.max_asym_atoms == 100
    assert cfg.statistics.min_crystals_per_class == 50


def test_prepare_data_caches(tmp_path):
    from generator.pipeline import prepare_data

    # 7: the 6 triclinic statistics crystals of this split are too few for a classified group 2
    cfg = {"database": {"name": "oqmd", "limit": 120, "workers": 1},
           "split": {"seed": 2}, "statistics": {"min_crystals_per_class": 7, "cache_dir": str(tmp_path)}}
    try:
        first = prepare_data(cfg)
    except FileNotFoundError as exc:
        pytest.skip(f"default database unavailable: {exc}")
    second = prepare_data(cfg)
    assert not first.report["database_cached"] and not first.report["statistics_cached"]
    assert second.report["database_cached"] and second.report["statistics_cached"]
    assert second.split.hash == first.split.hash
    assert second.statistics.space_groups == first.statistics.space_groups
    assert second.report["n_statistics"] + second.report["n_test"] + sum(second.report["filtered"].values()) == 120


@pytest.mark.slow
def test_cli_end_to_end_on_a_cif_folder(bad_cif_folder, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "generator.statistics", "database=cif", f"database.path={bad_cif_folder}",
           "database.workers=1", "statistics.min_crystals_per_class=3", f"statistics.cache_dir={tmp_path / 'cache'}",
           f"output_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classes" in result.stdout and "skipped: unparsable" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == {"unparsable": 1, "empty file": 1}
    assert report["parsed"] == 12
    assert (out / "space_groups.png").stat().st_size > 1000
    stats = Statistics.load(out / "statistics")
    assert stats.n_classes == report["n_classes"] >= 1
    assert Path(out / "split.json").is_file() and Path(out / "skipped.json").is_file()


def _small_cif_split(folder, cache_dir):
    """The small CIF database and a split with its rutile-type (tetragonal) crystals on the statistics side."""
    from generator.database import load_database

    db = load_database(name="cif", path=str(folder), workers=1, cache_dir=cache_dir)
    for seed in range(50):
        split = structure_type_split(db, seed=seed)
        if {db[i].crystal_system for i in split.statistics_ids} >= {"tetragonal", "cubic"}:
            return db, split
    pytest.skip("no split puts the tetragonal crystals on the statistics side")


def test_too_few_crystals_for_a_lattice_kde_is_a_clear_error(tmp_path):
    from small_crystals import write_small_cifs

    folder = write_small_cifs(tmp_path / "cifs")
    (folder / "SnO2.cif").unlink()  # one tetragonal crystal left: scipy's "more dimensions than samples"
    db, split = _small_cif_split(folder, tmp_path / "cache")
    n_tetragonal = sum(db[i].crystal_system == "tetragonal" for i in split.statistics_ids)
    assert n_tetragonal == 1
    with pytest.raises(ValueError) as err:
        extract_statistics(db, split, min_crystals_per_class=1)
    msg = str(err.value)
    assert f"crystal system 'tetragonal' has {n_tetragonal} statistics crystal" in msg
    assert "[136]" in msg and f"statistics.min_crystals_per_class above {n_tetragonal}" in msg
    # what the message says to do works: the tetragonal group is no longer classified
    stats = extract_statistics(db, split, min_crystals_per_class=n_tetragonal + 1)
    assert 136 not in stats.space_groups and "tetragonal" not in stats.lattice_kdes


def test_threshold_above_every_group_says_what_to_lower(bad_cif_folder, cache_dir):
    from generator.database import load_database

    db = load_database(name="cif", path=str(bad_cif_folder), workers=1, cache_dir=cache_dir)
    split = structure_type_split(db, seed=0)
    with pytest.raises(ValueError, match=r"lower statistics\.min_crystals_per_class \(to at most \d+\) or add"):
        extract_statistics(db, split, min_crystals_per_class=50)


def test_degenerate_lattice_data_of_a_classified_system_is_a_clear_error(tmp_path):
    from pymatgen.io.cif import CifWriter

    from small_crystals import small_structure, write_small_cifs

    folder = write_small_cifs(tmp_path / "cifs")
    for name in ("TiO2", "SnO2"):
        (folder / f"{name}.cif").unlink()
    # three rutile-type crystals on one and the same cell: their unit-volume (a, c) coincide, so the
    # tetragonal lattice data span no area and scipy's KDE has a singular covariance
    for metal in ("Ti", "Sn", "Ge"):
        structure = small_structure(f"{metal}O2", 136, (4.59, 2.96), [metal, "O"], [[0, 0, 0], [0.305, 0.305, 0]])
        CifWriter(structure, symprec=0.01).write_file(folder / f"{metal}O2.cif")
    for name, a, species in (("NaBr", 5.97, ["Na", "Br"]), ("KBr", 6.60, ["K", "Br"]), ("AgCl", 5.55, ["Ag", "Cl"])):
        # more rock salts: a cubic group that stays classified above the tetragonal count
        structure = small_structure(name, 225, a, species, [[0, 0, 0], [0.5, 0.5, 0.5]])
        CifWriter(structure, symprec=0.01).write_file(folder / f"{name}.cif")
    from generator.database import load_database

    db = load_database(name="cif", path=str(folder), workers=1, cache_dir=tmp_path / "cache")
    splits = (structure_type_split(db, seed=seed) for seed in range(50))
    split = next((s for s in splits if Counter(db[i].space_group for i in s.statistics_ids)[225] >= 4
                  and any(db[i].space_group == 136 for i in s.statistics_ids)), None)
    if split is None:
        pytest.skip("no split puts the rutile and rock-salt crystals on the statistics side")
    n_tetragonal = sum(db[i].crystal_system == "tetragonal" for i in split.statistics_ids)
    assert n_tetragonal == 3  # more crystals than lattice parameters, yet no KDE
    with pytest.raises(ValueError) as err:
        extract_statistics(db, split, min_crystals_per_class=1)
    msg = str(err.value)
    assert f"crystal system 'tetragonal' has {n_tetragonal} statistics crystal(s), too alike" in msg
    assert "needs at least 3 crystals with differing lattices" in msg and "[136]" in msg
    assert "Add tetragonal structures (CIFs)" in msg
    assert f"statistics.min_crystals_per_class above {n_tetragonal}" in msg
    # the advice works: with the tetragonal group unclassified the build succeeds without its KDE
    stats = extract_statistics(db, split, min_crystals_per_class=n_tetragonal + 1)
    assert 136 not in stats.space_groups and "tetragonal" not in stats.lattice_kdes and stats.space_groups


def test_a_saved_statistics_folder_stands_in_for_the_database(stats, tmp_path):
    from generator.pipeline import prepare_data
    from trainer.run import validate_config
    from test_config_validation import compose_train

    stats.save(tmp_path / "saved")
    prepared = prepare_data({"statistics": {"path": str(tmp_path / "saved")}})
    assert prepared.database is None and prepared.split is None
    assert prepared.statistics.space_groups == stats.space_groups
    assert prepared.report["split_hash"] == stats.provenance["split_hash"] and prepared.report["n_test"] == 0
    with pytest.raises(ValueError, match=r"^statistics\.path: .*no saved statistics"):
        prepare_data({"statistics": {"path": str(tmp_path / "missing")}})
    # only the synthetic test set can be evaluated without the database's crystals
    validate_config(compose_train([f"statistics.path={tmp_path / 'saved'}", "evaluation.test_sets=[synthetic]"]))


def test_a_run_from_saved_statistics_is_scored_on_the_database_it_was_split_from(oqmd_small, cache_dir, tmp_path):
    from generator.pipeline import prepare_crystals, prepare_data

    cfg = {"database": {"name": "oqmd", "limit": 300, "workers": 1},
           "split": {"seed": 11}, "statistics": {"min_crystals_per_class": MIN, "cache_dir": str(cache_dir)}}
    prepare_data(cfg).statistics.save(tmp_path / "saved")
    with_path = {**cfg, "statistics": {**cfg["statistics"], "path": str(tmp_path / "saved")}}
    prepared = prepare_crystals(with_path)
    assert prepared.database is not None and len(prepared.split.test_ids) > 0
    assert prepared.split.hash == Statistics.load(tmp_path / "saved").provenance["split_hash"]
    assert with_path["statistics"]["path"] == str(tmp_path / "saved")   # the caller's config is left as it was
    with pytest.raises(ValueError, match="was drawn from split"):
        prepare_crystals({**with_path, "split": {"seed": 12}})
