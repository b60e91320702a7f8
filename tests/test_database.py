"""Reading real crystals: OQMD entries and CIF folders become standardised records; bad entries are counted."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from generator.database import Database, load_database
from small_crystals import SMALL_CRYSTALS


def test_oqmd_records_are_consistent(oqmd_small):
    db = oqmd_small
    assert len(db) + sum(db.skipped.values()) == 300
    assert len(db) >= 295
    agree = np.mean([r.space_group == r.database_space_group for r in db])
    assert agree > 0.97, "spglib under the project tolerance should reproduce the OQMD labels"
    for rec in db:
        # Wyckoff multiplicities in the conventional cell add up to its atoms.
        assert sum(int(w.rstrip("abcdefghijklmnopqrstuvwxyzA")) for w in rec.asym_wyckoffs) == rec.n_atoms
        assert rec.n_asym == len(rec.asym_wyckoffs) == len(rec.asym_elements)
        assert rec.volume == pytest.approx(abs(np.linalg.det(rec.lattice)))
        assert not rec.partial_occupancy
        assert rec.structure_type
        assert 1 <= rec.space_group <= 230


def test_wyckoff_names_exist_in_the_standard_setting(oqmd_small):
    from pyxtal.symmetry import Group

    labels = {}
    for rec in list(oqmd_small)[:120]:
        if rec.space_group not in labels:
            labels[rec.space_group] = {wp.get_label() for wp in Group(rec.space_group).Wyckoff_positions}
        assert set(rec.asym_wyckoffs) <= labels[rec.space_group], (rec.id, rec.space_group, rec.asym_wyckoffs)


def test_structure_is_the_conventional_cell(oqmd_small):
    rec = oqmd_small[0]
    s = rec.structure
    assert len(s) == rec.n_atoms
    assert s.volume == pytest.approx(rec.volume)
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    assert SpacegroupAnalyzer(s, symprec=1e-3).get_space_group_number() == rec.space_group
    assert s.composition.reduced_formula == rec.formula


def test_cache_round_trip(oqmd_small, cache_dir):
    again = load_database(name="oqmd", limit=300, workers=1, cache_dir=cache_dir)
    assert again.from_cache
    assert again.source_hash == oqmd_small.source_hash
    assert again.ids == oqmd_small.ids
    for a, b in zip(again.records[:50], oqmd_small.records[:50]):
        assert (a.space_group, a.formula, a.structure_type, a.asym_wyckoffs) == (b.space_group, b.formula, b.structure_type, b.asym_wyckoffs)
        np.testing.assert_allclose(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
    other = load_database(name="oqmd", limit=200, workers=1, cache_dir=cache_dir, use_cache=False)
    assert other.source_hash != oqmd_small.source_hash
    assert len(other) + sum(other.skipped.values()) == 200


def test_bad_cifs_are_counted_not_fatal(bad_cif_db, tmp_path):
    db = bad_cif_db
    assert db.skipped == {"unparsable": 1, "empty file": 1}
    assert {i for i, _, _ in db.skipped_entries} == {"garbage", "empty"}
    assert len(db) == len(SMALL_CRYSTALS) + 1
    partial = db["partial"]
    assert partial.partial_occupancy
    assert sum(r.partial_occupancy for r in db) == 1
    assert partial.space_group == 225
    assert not partial.structure.is_ordered
    assert db["NaCl"].space_group == 225 and db["CsCl"].space_group == 221 and db["TiO2"].space_group == 136
    assert db["NaCl"].database_space_group == 225
    report = db.save_skip_report(tmp_path / "skipped.json").read_text()
    assert "garbage" in report and "empty file" in report


def test_cif_prototypes_and_csv_structure_types(bad_cif_folder, bad_cif_db, tmp_path):
    db = bad_cif_db
    assert db["NaCl"].structure_type == db["KCl"].structure_type != db["CsCl"].structure_type
    csv = tmp_path / "types.csv"
    csv.write_text("CollectionCode,StructureType\nNaCl,NaCl\nKCl,NaCl\nCsCl,CsCl\n")
    typed = load_database(name="cif", path=str(bad_cif_folder), structure_types=str(csv), workers=1, cache_dir=tmp_path)
    assert typed.source_hash != db.source_hash
    assert typed["NaCl"].structure_type == typed["KCl"].structure_type == "NaCl"
    assert typed["CsCl"].structure_type == "CsCl"
    # entries the CSV lacks fall back to computed prototype labels
    assert typed["ZnS"].structure_type == db["ZnS"].structure_type


def test_parallel_parse_matches_serial(bad_cif_folder, bad_cif_db):
    serial = bad_cif_db
    parallel = load_database(name="cif", path=str(bad_cif_folder), workers=2, use_cache=False)
    assert not parallel.from_cache and parallel.skipped == serial.skipped
    assert serial.ids == parallel.ids
    assert [r.space_group for r in serial] == [r.space_group for r in parallel]
    assert [r.structure_type for r in serial] == [r.structure_type for r in parallel]


def test_database_save_load(bad_cif_db, tmp_path):
    db = bad_cif_db
    loaded = Database.load(db.save(tmp_path / "db.npz"))
    assert loaded.ids == db.ids
    assert Counter(r.formula for r in loaded) == Counter(r.formula for r in db)
    np.testing.assert_allclose([r.volume for r in loaded], [r.volume for r in db])
    assert loaded["partial"].disorder == db["partial"].disorder
    assert loaded.skipped == db.skipped


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown database name"):
        load_database(name="icsd")
    with pytest.raises(ValueError, match="database.path"):
        load_database(name="cif", path="???")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_database(name="cif", path=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown option"):
        load_database(name="oqmd", limitt=3)
    bad = tmp_path / "x.npz"
    bad.write_text("not npz")
    with pytest.raises(ValueError, match="x.npz"):
        Database.load(bad)


NO_SYMMETRY_CIF = """data_NaCl_asym
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
{symmetry}
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 1
Cl1 Cl 0.5 0.5 0.5 1
"""


def test_cif_without_symmetry_is_skipped_and_counted(tmp_path):
    import json

    folder = tmp_path / "cifs"
    folder.mkdir()
    # the asymmetric unit of rock salt with neither symmetry operations nor a space group: read as
    # P1 it would be a primitive-cubic crystal (Pm-3m), a wrong label
    (folder / "asym_only.cif").write_text(NO_SYMMETRY_CIF.format(symmetry=""))
    (folder / "with_name.cif").write_text(NO_SYMMETRY_CIF.format(symmetry="_symmetry_space_group_name_H-M 'F m -3 m'"))
    (folder / "with_ops.cif").write_text(NO_SYMMETRY_CIF.format(
        symmetry="loop_\n_space_group_symop_operation_xyz\n'x, y, z'"))
    db = load_database(name="cif", path=str(folder), workers=1, cache_dir=tmp_path / "cache")
    assert db.skipped == {"no symmetry": 1}
    assert [(i, r) for i, r, _ in db.skipped_entries] == [("asym_only", "no symmetry")]
    by_id = {r.id: r for r in db}
    assert by_id["with_name"].space_group == 225       # the space group generates the full cell
    assert by_id["with_ops"].space_group == 221        # explicit P1 operations: the sites are the cell
    report = json.loads(next((tmp_path / "cache" / "databases").glob("*.skipped.json")).read_text())
    assert report["skipped"] == {"no symmetry": 1}
    assert "asymmetric unit" in report["entries"][0]["detail"]
