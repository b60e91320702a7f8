"""Temperature scaling, calibration error and the calibrated refusal threshold."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference.calibration import (CALIBRATION, CalibrationConfig, calibrate_logits, choose_refusal_threshold,
                                 expected_calibration_error, fit_temperature, load_calibration,
                                 negative_log_likelihood)
from inference.ensemble import softmax


def _sharpened(t0: float, n: int = 4000, c: int = 10, seed: int = 0):
    """Logits t0 * z with labels drawn from softmax(z): the calibrating temperature is t0."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, c))
    p = softmax(z)
    labels = np.array([rng.choice(c, p=row) for row in p])
    return t0 * z, labels


@pytest.mark.parametrize("t0", [0.5, 2.5])
def test_fit_recovers_a_known_temperature_and_lowers_the_ece(t0):
    logits, labels = _sharpened(t0)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(t0, rel=0.06)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits / t), labels)
    assert after < before and after < 0.03
    assert negative_log_likelihood(logits, labels, t) < negative_log_likelihood(logits, labels)


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin (0.867, 0.933]: accuracy 0.5, confidence 0.9; bin (0.533, 0.6]: accuracy 1, confidence 0.6
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 0]), bins=1) == pytest.approx(1 - 0.75)


def test_refusal_threshold_is_the_smallest_that_reaches_the_target():
    conf = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0], bool)
    probs = np.concatenate([conf[:, None], np.repeat((1 - conf[:, None]) / 9, 9, axis=1)], axis=1)
    labels = np.where(correct, 0, 1)
    # kept at >= 0.61: 4 of 4 right; at >= 0.5: 5 of 6; at >= 0.4: 5 of 7
    assert choose_refusal_threshold(probs, labels, 1.0, 0.45, step=0.01, min_kept=1) == (0.61, True)
    assert choose_refusal_threshold(probs, labels, 0.8, 0.45, step=0.01, min_kept=1) == (0.41, True)
    assert choose_refusal_threshold(probs, labels, 0.6, 0.45, step=0.01, min_kept=1) == (0.0, True)
    assert choose_refusal_threshold(probs, labels, 1.0, 0.45, step=0.01, min_kept=5) == (0.45, False)


def test_calibrate_logits_report_and_fallback():
    logits, labels = _sharpened(3.0, n=2000)
    labels = labels.copy()
    labels[:10] = -1  # outside the model's classes: left out
    c = calibrate_logits(logits, labels, CalibrationConfig(target_accuracy=0.9), default_threshold=0.45,
                         space_groups=list(range(1, 11)))
    assert c.n == 1990 and c.n_out_of_scope == 10
    assert c.synthetic["n"] == 1990 and c.synthetic["top1"] == pytest.approx(c.accuracy)
    assert c.synthetic["top1"] < c.synthetic["top5"] < 1.0
    # space groups 1-2 are triclinic, 3-10 monoclinic: a wrong class is often the right system
    assert c.synthetic["top1"] < c.synthetic["crystal_system_accuracy"] < 1.0
    assert c.temperature == pytest.approx(3.0, rel=0.1) and c.ece_after < c.ece_before
    assert c.target_reached and 0.0 < c.refusal_threshold <= 1.0 and c.accuracy_at_threshold >= 0.9
    assert c.coverage_accuracy["coverage"][0] == 1.0
    never = calibrate_logits(logits, labels, CalibrationConfig(target_accuracy=1.0, min_kept=500,
                                                               default_threshold=0.33))
    assert never.refusal_threshold == 0.33 and not never.target_reached


def test_bad_calibration_files_and_knobs_are_named(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"")
    (ckpt / "meta.json").write_text("{}")
    assert load_calibration(ckpt) is None
    (ckpt / CALIBRATION).write_text(json.dumps({"temperature": -1.0}))
    with pytest.raises(ValueError, match="calibration.json: temperature"):
        load_calibration(ckpt)
    (ckpt / CALIBRATION).write_text(json.dumps({"temperature": 1.5, "refusal_threshold": 0.6}))
    assert load_calibration(ckpt)["temperature"] == 1.5
    with pytest.raises(ValueError, match="target_accuracy"):
        CalibrationConfig(target_accuracy=1.5).validate()
    from inference.predict import load_config

    bad = tmp_path / "inference.yaml"
    bad.write_text("calibration:\n  temperature_bounds: [2.0, 1.0]\n")
    with pytest.raises(ValueError, match="inference.yaml.*temperature_bounds"):
        load_config(bad)


@pytest.mark.slow
def test_calibrate_command_writes_a_file_the_predictor_uses(tmp_path, monkeypatch, capsys):
    from tiny_checkpoint import shared_tiny_checkpoint
    from toy_statistics import toy_statistics

    import inference.calibration_sets as calibration_sets
    from inference.calibrate import main
    from inference.predict import Predictor, load_config
    from inference.top_label import apply_top_label_map, system_index

    ckpt = shutil.copytree(shared_tiny_checkpoint(), tmp_path / "step_000060")
    monkeypatch.setattr(calibration_sets, "load_statistics", lambda which, run_config: toy_statistics())
    code = main(["--checkpoint", str(ckpt), "--source", "synthetic", "--n", "80", "--seed", "1", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)[str(ckpt)]
    stored = json.loads((ckpt / CALIBRATION).read_text())
    for key in ("temperature", "ece_before", "ece_after", "refusal_threshold", "n", "simulation"):
        assert stored[key] == report[key]
    assert stored["simulation"] == "checkpoint" and stored["temperature"] > 0
    # the toy statistics share only space group 225 with the tiny model: the rest is left out
    assert stored["n"] + stored["n_out_of_scope"] == 80 and stored["n"] > 0

    predictor = Predictor.from_checkpoints([ckpt], load_config())
    assert predictor.temperatures == [pytest.approx(stored["temperature"])]
    assert predictor.refusal_threshold == pytest.approx(stored["refusal_threshold"])
    assert predictor.threshold_source == "calibration"
    raw = Predictor.from_checkpoints([ckpt], load_config(overrides={"calibration": {"apply": False}}))
    assert raw.temperatures == [1.0] and raw.threshold_source == "config"
    x = np.random.default_rng(0).random((3, predictor.members[0].spec.grid.size)).astype(np.float32)
    logits, _ = raw.member_logits(raw.members[0], x)
    p, _ = predictor.member_outputs(predictor.members[0], x)
    # the temperature, then the top answer's map fitted with it (inference.top_label)
    assert set(stored["top_label"]) == {"a", "b", "c"}
    shown = apply_top_label_map(softmax(logits / stored["temperature"]), stored["top_label"],
                                system_index(predictor.members[0].space_groups))
    np.testing.assert_allclose(p, shown, atol=1e-6)
    no_map = Predictor.from_checkpoints([ckpt], load_config())
    no_map.members[0].top_label = None
    np.testing.assert_allclose(no_map.member_outputs(no_map.members[0], x)[0], softmax(logits / stored["temperature"]),
                               atol=1e-6)

    # a named simulation whose grid does not fit the model is refused with a clear error
    assert main(["--checkpoint", str(ckpt), "--source", "synthetic", "--n", "4", "--simulation", "imperfections"]) == 2
    assert "expects" in capsys.readouterr().err


def test_heldout_calibration_crystals_never_include_the_evaluation_draw():
    from evaluation.testsets import heldout_ids
    from inference.calibration_sets import heldout_calibration_ids

    ids = [f"c{i:03d}" for i in range(100)]
    evaluated = set(heldout_ids(ids, 30, 0))
    chosen = heldout_calibration_ids(ids, 50, seed=1, exclude_limit=30, exclude_seed=0)
    assert len(chosen) == len(set(chosen)) == 50 and not evaluated & set(chosen)
    assert chosen == heldout_calibration_ids(list(reversed(ids)), 50, 1, 30, 0)    # order of the listing: no matter
    assert chosen != heldout_calibration_ids(ids, 50, 2, 30, 0)
    assert set(heldout_calibration_ids(ids, 100, 0, 0, 0)) == set(ids)               # nothing kept out
    with pytest.raises(ValueError, match="calibration.n = 71 .* only 70 of 100"):
        heldout_calibration_ids(ids, 71, 0, 30, 0)


def test_calibrate_on_heldout_crystals(tmp_path, monkeypatch, capsys):
    from tiny_checkpoint import shared_tiny_checkpoint, tiny_prepared

    import generator.pipeline
    from evaluation.testsets import heldout_ids
    from inference.calibrate import main
    from inference.calibration_sets import heldout_logits
    from trainer.checkpoint import load_for_inference

    prepared = tiny_prepared()                       # 12 crystals in the tiny model's classes, 2 silicon outside
    monkeypatch.setattr(generator.pipeline, "prepare_data", lambda cfg=None: prepared)
    ckpt = shutil.copytree(shared_tiny_checkpoint(), tmp_path / "step_000060")
    model, meta = load_for_inference(ckpt)
    sets = heldout_logits(model, meta.space_groups, None, meta.simulation, 9, seed=0,
                          exclude_limit=5, exclude_seed=3, batch_size=4)
    logits, labels, ids = sets.logits, sets.labels, sets.ids
    assert sets.space_groups.tolist() == [prepared.database[i].space_group for i in ids]
    assert len(ids) == 9 and not set(ids) & set(heldout_ids(prepared.split.test_ids, 5, 3))
    assert logits.shape == (9, len(meta.space_groups)) and np.isfinite(logits).all()
    expected = [meta.space_groups.index(prepared.database[i].space_group)
                if prepared.database[i].space_group in meta.space_groups else -1 for i in ids]
    assert labels.tolist() == expected

    code = main(["--checkpoint", str(ckpt), "--source", "heldout", "--n", "9", "--heldout-exclude-limit", "5",
                 "--heldout-exclude-seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    stored = json.loads((ckpt / CALIBRATION).read_text())
    assert stored["n_out_of_scope"] > 0                 # the draw holds silicon: the left-out path is used
    assert stored["source"] == "heldout" and stored["excluded"] == {"limit": 5, "seed": 3}
    assert stored["n"] == sum(y >= 0 for y in expected) and stored["n"] + stored["n_out_of_scope"] == 9
    assert f"{stored['n']} held-out crystals' patterns" in out and stored["temperature"] > 0
    # more crystals than remain outside the evaluation draw: a clear error, nothing written over
    before = (ckpt / CALIBRATION).read_text()
    assert main(["--checkpoint", str(ckpt), "--source", "heldout", "--n", "10", "--heldout-exclude-limit", "5"]) == 2
    assert "calibration.n = 10 held-out crystals asked for, but only 9 of 14" in capsys.readouterr().err
    assert (ckpt / CALIBRATION).read_text() == before
