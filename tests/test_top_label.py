"""The top answer's own calibration map, applied inside its crystal system."""
from __future__ import annotations

import numpy as np
import pytest

from inference.calibration import CalibrationConfig, calibrate_logits, expected_calibration_error
from inference.ensemble import softmax
from inference.top_label import (apply_top_label_map, check_top_label_map, fit_top_label_map, system_index,
                                 top_label_confidence)

# triclinic 1, 2; monoclinic 4, 14, 15; orthorhombic 62; cubic 225 alone in its system
SPACE_GROUPS = [1, 2, 4, 14, 15, 62, 225]


def _outcomes(params: dict, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    return p, rng.random(n) < top_label_confidence(p, params)


@pytest.mark.parametrize("params", [{"a": 1.5, "b": 0.4, "c": 0.3}, {"a": 0.6, "b": 1.2, "c": -0.5}])
def test_fit_recovers_a_known_map(params):
    p, right = _outcomes(params, 40000)
    fitted = fit_top_label_map(p, right)
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(top_label_confidence(grid, fitted), top_label_confidence(grid, params), atol=0.02)


def test_a_calibrated_top_probability_is_left_close_to_itself():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 40000)
    fitted = fit_top_label_map(p, rng.random(len(p)) < p)
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(top_label_confidence(grid, fitted), grid, atol=0.02)


def test_the_map_moves_mass_only_inside_the_crystal_system_and_keeps_the_ranking():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(len(SPACE_GROUPS), 0.3), 500)
    systems = system_index(SPACE_GROUPS)
    for params in ({"a": 1.0, "b": 1.0, "c": -1.5}, {"a": 1.0, "b": 1.0, "c": 1.5}, {"a": 3.0, "b": 0.2, "c": 0.0}):
        out = apply_top_label_map(probs, params, systems)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
        assert (out >= 0).all()
        np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
        one_hot = np.eye(systems.max() + 1)[systems]     # (C, S)
        np.testing.assert_allclose(out @ one_hot, probs @ one_hot, atol=1e-12)
        # other classes keep their order, and classes of the other systems their values
        rows = np.arange(len(probs))
        top = probs.argmax(axis=1)
        other_system = systems[None, :] != systems[top][:, None]
        np.testing.assert_allclose(out[other_system], probs[other_system])
        # where neither the ranking nor the system's mass bounds it, the top probability is the map's value
        p1, q = probs[rows, top], top_label_confidence(probs[rows, top], params)
        same = (systems[None, :] == systems[top][:, None]) & (np.arange(len(SPACE_GROUPS))[None, :] != top[:, None])
        rest, largest = np.where(same, probs, 0).sum(axis=1), np.where(same, probs, 0).max(axis=1)
        floor = np.maximum(np.where(other_system, probs, 0).max(axis=1), largest * (rest + p1) / (rest + largest + 1e-300))
        free = (rest > 0) & (q > floor + 1e-6) & (q < p1 + rest)
        assert free.sum() > 20
        np.testing.assert_allclose(out[rows, top][free], q[free], atol=1e-9)


def test_a_top_class_alone_in_its_system_is_left_alone():
    probs = np.array([[0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.6]])   # 225 on top, the only cubic class
    out = apply_top_label_map(probs, {"a": 1.0, "b": 1.0, "c": -2.0}, system_index(SPACE_GROUPS))
    np.testing.assert_allclose(out, probs)
    np.testing.assert_allclose(apply_top_label_map(probs, None, system_index(SPACE_GROUPS)), probs)


def test_bad_maps_are_named():
    assert check_top_label_map({}, "x") is None and check_top_label_map(None, "x") is None
    with pytest.raises(ValueError, match="calibration.json: top_label needs finite a >= 0"):
        check_top_label_map({"a": -1.0, "b": 1.0, "c": 0.0}, "calibration.json")
    with pytest.raises(ValueError, match="calibration.json: top_label must hold numbers"):
        check_top_label_map({"a": 1.0, "b": 1.0}, "calibration.json")


def _overconfident_at_the_top(n: int = 6000, seed: int = 3):
    """Logits whose temperature-scaled top probability runs ahead of the accuracy where it is high and
    behind it where it is low: a shape one temperature cannot fix, and patterns outside the classes."""
    rng = np.random.default_rng(seed)
    c = len(SPACE_GROUPS)
    z = rng.normal(0.0, 2.0, (n, c))
    p = softmax(z)
    top = p.argmax(axis=1)
    right = rng.random(n) < 0.15 + 0.5 * p.max(axis=1)
    wrong = (top + rng.integers(1, c, n)) % c
    labels = np.where(right, top, wrong)
    labels[rng.random(n) < 0.1] = -1
    return z, labels


def test_calibrate_logits_fits_the_map_and_lowers_the_error_the_temperature_leaves():
    z, labels = _overconfident_at_the_top()
    with_map = calibrate_logits(z, labels, CalibrationConfig(target_accuracy=0.5), space_groups=SPACE_GROUPS)
    assert set(with_map.top_label) == {"a", "b", "c"}
    assert with_map.ece_after < 0.6 * with_map.ece_temperature
    # the stored errors are those of the probabilities the predictor will show (outside the classes: wrong)
    shown = apply_top_label_map(softmax(z / with_map.temperature), with_map.top_label, system_index(SPACE_GROUPS))
    assert with_map.ece_after == pytest.approx(expected_calibration_error(shown, labels, with_map.bins))
    assert with_map.n + with_map.n_out_of_scope == len(labels)
    plain = calibrate_logits(z, labels, CalibrationConfig(target_accuracy=0.5, top_label=False),
                             space_groups=SPACE_GROUPS)
    assert plain.top_label == {} and plain.ece_after == pytest.approx(plain.ece_temperature)
    assert plain.temperature == pytest.approx(with_map.temperature)


def test_the_crystal_system_threshold_keeps_what_reaches_the_target():
    from inference.top_label import crystal_system_threshold

    rng = np.random.default_rng(4)
    n = 3000
    probs = rng.dirichlet(np.full(len(SPACE_GROUPS), 0.4), n)
    systems = system_index(SPACE_GROUPS)
    one_hot = np.eye(systems.max() + 1)[systems]
    summed = probs @ one_hot
    # the true system is the most probable one with probability its summed probability, else another
    best = summed.argmax(axis=1)
    right = rng.random(n) < summed.max(axis=1)
    present = [int(s) for s in np.unique(systems)]
    class_of_system = {s: SPACE_GROUPS[int(np.flatnonzero(systems == s)[0])] for s in present}
    other = [present[(present.index(int(b)) + 1) % len(present)] for b in best]
    truth = np.array([class_of_system[int(b)] if r else class_of_system[o] for b, r, o in zip(best, right, other)])
    truth[:100] = 0                                              # unknown: left out
    cfg = CalibrationConfig(crystal_system_target_accuracy=0.8)
    threshold, kept = crystal_system_threshold(probs, SPACE_GROUPS, truth, cfg)
    assert kept["n"] == n - 100 and 0.0 < kept["coverage"] < 1.0 and kept["accuracy"] >= 0.8
    confidence, correct = summed[100:].max(axis=1), right[100:]
    assert kept["coverage"] == pytest.approx(np.mean(confidence >= threshold))
    assert kept["accuracy"] == pytest.approx(correct[confidence >= threshold].mean())
    assert correct[confidence >= threshold - cfg.threshold_step].mean() < 0.8   # the smallest such threshold
    assert crystal_system_threshold(probs, SPACE_GROUPS, truth, CalibrationConfig(crystal_system_target_accuracy=1.0,
                                                                                   min_kept=500)) == (None, {})
    assert crystal_system_threshold(probs, SPACE_GROUPS, np.zeros(n, np.int64), cfg) == (None, {})


def test_calibrate_logits_stores_the_crystal_system_threshold_over_all_patterns():
    z, labels = _overconfident_at_the_top()
    true_groups = np.where(labels >= 0, np.asarray(SPACE_GROUPS)[np.maximum(labels, 0)], 0)
    outside = labels < 0
    true_groups[outside] = 3          # monoclinic space groups the model does not classify
    c = calibrate_logits(z, labels, CalibrationConfig(target_accuracy=0.5, crystal_system_target_accuracy=0.6),
                         space_groups=SPACE_GROUPS, true_space_groups=true_groups)
    assert c.crystal_system_threshold is not None and c.crystal_system_kept["n"] == len(labels)
    assert c.crystal_system_kept["accuracy"] >= 0.6 and c.crystal_system_target_accuracy == 0.6
    only_inside = calibrate_logits(z, labels, CalibrationConfig(target_accuracy=0.5, crystal_system_target_accuracy=0.6),
                                   space_groups=SPACE_GROUPS)
    assert only_inside.crystal_system_kept["n"] == int((~outside).sum())
