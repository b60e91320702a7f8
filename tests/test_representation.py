"""simulator.representation: the 2-theta pattern, the ideal 1/d profile and G(r) behind one interface, and
their way through the stream, the test sets, the checkpoints and the preparation of measured scans."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from generator.config import conf_dir
from simulator import PatternSimulator
from simulator.ideal import lorentz_polarisation, two_theta_to_inverse_d
from simulator.representation import (MEASURED_PDF_ERROR, MeasuredDataError, Representation, from_description,
                                      make_representation, representation_kind)
from small_crystals import SMALL_CRYSTALS, small_structure

# A G(r) window small enough for a fast test (the operator is built once per config).
SMALL_PDF = {"kind": "pdf", "r_min": 1.5, "r_max": 12.0, "r_step": 0.1366, "q_max": 18.0}


def simulation(name: str):
    return OmegaConf.load(conf_dir() / "simulation" / f"{name}.yaml")


@pytest.fixture(scope="module")
def crystals():
    return [small_structure(*e) for e in SMALL_CRYSTALS[:3]] + [small_structure(*SMALL_CRYSTALS[9])]  # 3 cubic, rutile


@pytest.mark.parametrize("name, kind, axis, length", [("default", "two_theta", "two_theta_deg", 8501),
                                                      ("measured", "two_theta", "two_theta_deg", 4251),
                                                      ("ideal", "ideal", "inverse_d_per_angstrom", 10001),
                                                      ("pdf", "pdf", "r_angstrom", 209)])
def test_kind_axis_shape_and_description(name, kind, axis, length):
    rep = make_representation(simulation(name))
    assert isinstance(rep, Representation)
    assert rep.kind == kind and rep.axis.name == axis and rep.shape == (1, length)
    assert rep.axis.values.shape == (length,) and np.all(np.diff(rep.axis.values) > 0)
    desc = json.loads(json.dumps(rep.describe()))  # JSON-able
    assert desc["kind"] == kind and desc["axis"] == axis and desc["shape"] == [1, length]
    again = from_description(desc)
    assert again.kind == kind and np.array_equal(again.grid, rep.grid)


def test_ideal_and_pdf_yaml_equal_their_dataclass_defaults():
    from simulator.ideal import IdealProfileConfig
    from simulator.pdf import PDFConfig

    for name, cls in (("ideal", IdealProfileConfig), ("pdf", PDFConfig)):
        assert OmegaConf.to_container(simulation(name)) == OmegaConf.to_container(OmegaConf.structured(cls)), name


@pytest.mark.parametrize("name", ["default", "imperfections"])
def test_two_theta_is_byte_identical_to_pattern_simulator(crystals, name):
    cfg = simulation(name)
    want = PatternSimulator(cfg).patterns(crystals, np.random.default_rng(3))
    rep = make_representation(cfg)
    got = rep.patterns(crystals, np.random.default_rng(3))
    assert got.tobytes() == want.tobytes()
    sim, ok = rep.simulate(crystals, np.random.default_rng(3))
    assert ok.all() and sim.tobytes() == want.tobytes()


def test_ideal_profile_peaks_sit_at_inverse_d(crystals):
    rep = make_representation(simulation("ideal"))
    x, ok = rep.simulate(crystals, np.random.default_rng(0))
    assert ok.all() and x.shape == (4, 10001) and x.dtype == np.float32
    assert np.allclose(x.max(1), 1.0) and x.min() == 0.0
    a = SMALL_CRYSTALS[0][2]  # NaCl (200): 1/d = 2 / a
    near = np.abs(rep.grid - 2 / a) < 2e-4
    assert x[0, near].max() > 0.1
    assert x[0, np.abs(rep.grid - 1.5 / a) < 2e-4].max() == 0  # (1.5 0 0) is no reflection


def test_pdf_simulates_and_a_failure_is_reported(crystals):
    rep = make_representation(SMALL_PDF)
    x, ok = rep.simulate(crystals + [None], np.random.default_rng(0))
    assert x.shape == (5, len(rep.grid)) and ok.tolist() == [True, True, True, True, False]
    assert np.allclose(x[:4].max(1), 1.0) and np.allclose(x[:4].min(1), 0.0) and not x[4].any()
    nacl = rep.grid[np.argmax(x[0])]  # strongest pair peak of NaCl near the Na-Cl distance or beyond
    assert nacl > 2.5


def _measured_scan(wavelength: float, inv_d_peaks, step: float = 0.004):
    """A scan at ``wavelength`` whose peaks are Gaussians in 1/d (the same sample at any wavelength), carrying
    the Lorentz-polarisation factor as a measurement does."""
    two_theta = np.arange(3.0, 150.0, step)
    s = two_theta_to_inverse_d(two_theta, wavelength)
    y = sum(h * np.exp(-0.5 * ((s - p) / 0.002) ** 2) for p, h in inv_d_peaks) + 0.01
    return two_theta, 500 * y * lorentz_polarisation(two_theta)


def test_measured_scans_at_two_wavelengths_give_the_same_inverse_d_input():
    rep = make_representation(simulation("ideal"))
    peaks = [(0.25, 1.0), (0.41, 0.6), (0.57, 0.3), (0.71, 0.5)]
    cu = rep.prepare_measured(*_measured_scan(1.5406, peaks), 1.5406)
    mo = rep.prepare_measured(*_measured_scan(0.7093, peaks), 0.7093)
    assert cu.values.shape == mo.values.shape == (10001,)
    both = cu.mask & mo.mask
    assert both.mean() > 0.6
    assert np.abs(cu.values[both] - mo.values[both]).max() < 0.03
    top = rep.grid[both][np.argmax(cu.values[both])]
    assert abs(top - 0.25) < 1e-3  # the Lorentz-polarisation factor is divided out: the first peak is the tallest
    # without that division the low-angle peak would not dominate in the same way at both wavelengths
    raw_cu = rep.preprocess(*_on(rep, *_measured_scan(1.5406, peaks), 1.5406))
    assert np.abs(raw_cu[both] - cu.values[both]).max() > 0.1


def _on(rep, two_theta, y, wavelength):
    from simulator.representation import onto_grid

    return onto_grid(rep.grid, two_theta_to_inverse_d(two_theta, wavelength), y)


def test_two_theta_prepare_measured_matches_inference_preparation():
    from pathlib import Path

    from inference.patterns import PatternConfig, prepare_pattern
    from inference.readers import MeasuredPattern
    from inference.predict import input_spec

    rep = make_representation(simulation("measured"))
    tt, y = _measured_scan(0.7093, [(0.3, 1.0), (0.5, 0.4)], step=0.01)
    ours = rep.prepare_measured(tt, y, 0.7093)
    theirs = prepare_pattern(MeasuredPattern(tt, y, 0.7093, Path("mo.xy")), input_spec(rep),
                             PatternConfig(baseline="none", min_coverage=0.0))
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-6)
    assert np.array_equal(ours.mask, theirs.mask)


def test_pdf_refuses_measured_scans_with_a_clear_error():
    from pathlib import Path

    from inference.patterns import PatternConfig, prepare_pattern
    from inference.readers import MeasuredPattern, PatternError
    from inference.predict import input_spec

    rep = make_representation(SMALL_PDF)
    tt, y = _measured_scan(1.5406, [(0.3, 1.0)])
    with pytest.raises(MeasuredDataError, match="total-scattering"):
        rep.prepare_measured(tt, y, 1.5406)
    with pytest.raises(PatternError, match="total-scattering") as err:
        prepare_pattern(MeasuredPattern(tt, y, 1.5406, Path("scan.xy")), input_spec(rep), PatternConfig())
    assert err.value.problem == MEASURED_PDF_ERROR


def test_kind_errors_name_the_choices():
    assert representation_kind(None) == "two_theta" and representation_kind({"wavelength": 1.0}) == "two_theta"
    with pytest.raises(ValueError, match="zone_axis_run"):
        make_representation({"kind": "zone_axis"})
    with pytest.raises(ValueError, match="two_theta"):
        make_representation({"kind": "neutron"})
    with pytest.raises(ValueError, match="unknown option"):
        make_representation({"kind": "ideal", "wavelength": 1.54})


def test_simulation_hash_of_two_theta_configs_is_unchanged():
    from evaluation.testsets import config_hash, simulation_hash
    from simulator import SimulationConfig

    assert simulation_hash(None) == config_hash(SimulationConfig())
    assert simulation_hash(simulation("default")) == config_hash(SimulationConfig.from_any(simulation("default")))
    assert simulation_hash({"kind": "two_theta"}) == simulation_hash(None)
    hashes = {simulation_hash(simulation(n)) for n in ("default", "ideal", "pdf")}
    assert len(hashes) == 3


def test_test_sets_simulate_through_the_representation(crystals):
    from evaluation.testsets import simulate_crystals

    rep = make_representation(simulation("ideal"))
    pats, ok = simulate_crystals(crystals, rep, np.random.default_rng(0), "float32", variants=2)
    assert pats.shape == (8, 10001) and ok.all()
    np.testing.assert_array_equal(pats[0], rep.patterns(crystals[:1], None)[0])


def test_peak_payload_refuses_other_kinds():
    from cluster.producer import SyntheticProducerFactory

    with pytest.raises(ValueError, match="cluster.payload=array"):
        SyntheticProducerFactory(None, None, simulation("ideal"), 8, payload="peaks")
    SyntheticProducerFactory(None, None, simulation("default"), 8, payload="peaks")  # 2-theta: allowed


def test_stream_batches_have_the_representation_length():
    from cluster.producer import SyntheticProducer
    from toy_statistics import toy_statistics

    stats = toy_statistics()
    producer = SyntheticProducer(stats, None, simulation("ideal"), 4, "float16", np.random.SeedSequence(0))
    batch = producer.next_batch()
    assert batch.patterns.shape == (4, 10001) and batch.patterns.dtype == np.float16
    assert np.allclose(batch.patterns.max(1), 1.0)


def test_checkpoint_carries_the_representation(tmp_path):
    from inference.predict import load_member
    from trainer.checkpoint import CheckpointMeta, load_meta, save_checkpoint
    from trainer.config import to_dict
    from trainer.models import build_model

    rep = make_representation(simulation("ideal"))
    model_cfg = {"name": "tiny", "arch": "park", "hidden": [16], "channels": 4}
    model = build_model(model_cfg, 3, rep.shape[1])
    meta = CheckpointMeta(space_groups=[2, 14, 225], model=model_cfg, input_length=rep.shape[1],
                          simulation=to_dict(rep.config), representation=rep.describe())
    path = save_checkpoint(tmp_path / "step_1", model, meta)
    loaded = load_meta(path)
    assert loaded.representation_kind == "ideal"
    again = loaded.input_representation()
    assert again.kind == "ideal" and np.array_equal(again.grid, rep.grid)
    member = load_member(path)
    assert member.spec.axis == "inverse_d" and member.spec.lorentz_polarisation is False
    # a checkpoint written before representations had kinds is a 2-theta pattern of its simulation
    old = json.loads((path / "meta.json").read_text())
    old.pop("representation")
    old["simulation"], old["input_length"] = {"grid": {"step": 0.02}}, 4251
    (path / "meta.json").write_text(json.dumps(old))
    legacy = load_meta(path)
    assert legacy.representation_kind == "two_theta"
    assert legacy.input_representation().shape == (1, 4251)
    bad = dict(old, representation={"kind": "xyz", "config": {}})
    (path / "meta.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="representation"):
        load_meta(path)


def test_crystal_system_loss_only_for_models_with_that_head():
    from trainer.loop import compute_loss, crystal_system_of_classes

    systems = crystal_system_of_classes([2, 14, 62, 225])
    assert systems.tolist() == [0, 1, 2, 6]
    y = torch.tensor([0, 3, 3])
    out = {"logits": torch.zeros(3, 4)}
    plain, parts = compute_loss(out, y, torch.zeros(3), None, 1.0, class_systems=systems)
    assert "crystal_system_ce" not in parts
    cs = torch.zeros(3, 7)
    cs[:, 6] = 5.0  # right for the two cubic samples, wrong for the triclinic one
    loss, parts = compute_loss({**out, "crystal_system_logits": cs}, y, torch.zeros(3), None, 1.0,
                               class_systems=systems)
    assert float(parts["crystal_system_correct"]) == 2
    assert float(loss) == pytest.approx(float(plain) + float(parts["crystal_system_ce"]))


def test_calibration_simulates_with_the_checkpoint_representation(tmp_path):
    from inference.calibration import CalibrationConfig, calibrate_checkpoint
    from toy_statistics import toy_statistics
    from trainer.checkpoint import CheckpointMeta, save_checkpoint
    from trainer.config import to_dict
    from trainer.models import build_model

    stats = toy_statistics()
    rep = make_representation(simulation("ideal"))
    model_cfg = {"name": "tiny", "arch": "park", "hidden": [16], "channels": 4}
    sgs = [int(s) for s in stats.space_groups]
    model = build_model(model_cfg, len(sgs), rep.shape[1])
    meta = CheckpointMeta(space_groups=sgs, model=model_cfg, input_length=rep.shape[1],
                          simulation=to_dict(rep.config), representation=rep.describe())
    path = save_checkpoint(tmp_path / "step_1", model, meta)
    result, written = calibrate_checkpoint(path, CalibrationConfig(n=16, batch_size=8, source="synthetic"),
                                           statistics=stats)
    assert result.n == 16 and written is not None and written.is_file()
    # a 2-theta config for a 1/d model is refused by its length, naming both
    with pytest.raises(ValueError, match="points, the model at"):
        calibrate_checkpoint(path, CalibrationConfig(n=16, simulation="default", source="synthetic"), statistics=stats,
                             write=False)
