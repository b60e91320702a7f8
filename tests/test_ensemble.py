"""Probability averaging, agreement, refusal and the coverage-accuracy curve."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ensemble import align_classes, combine, coverage_accuracy, refused, softmax, top_k


def _probs(rng, b=6, c=5):
    return softmax(rng.normal(size=(b, c)) * 3)


def test_identical_members_equal_one():
    rng = np.random.default_rng(0)
    p = _probs(rng)
    one = combine([p])
    three = combine([p, p.copy(), p.copy()], [np.ones(6), np.ones(6), np.ones(6)])
    np.testing.assert_allclose(three.probabilities, one.probabilities, rtol=0, atol=1e-12)
    assert three.n_members == 3
    assert (three.agreement == 3).all()
    np.testing.assert_allclose(three.log_volume_std, 0.0)


def test_mean_and_agreement_counts():
    a = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    b = np.array([[0.2, 0.7, 0.1], [0.1, 0.7, 0.2]])
    c = np.array([[0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    ens = combine([a, b, c], [np.array([1.0, 2.0]), None, np.array([3.0, 4.0])])
    np.testing.assert_allclose(ens.probabilities[0], [0.5, 0.4, 0.1])
    assert ens.top1.tolist() == [0, 1]
    assert ens.agreement.tolist() == [2, 2]
    np.testing.assert_allclose(ens.log_volume, [2.0, 3.0])  # members without a volume head are skipped


def test_members_must_match():
    with pytest.raises(ValueError, match="shape"):
        combine([np.ones((2, 3)) / 3, np.ones((2, 4)) / 4])
    with pytest.raises(ValueError, match="at least one"):
        combine([])


def test_refusal_threshold():
    p = np.array([[0.44, 0.56], [0.45, 0.55], [0.5, 0.5], [0.9, 0.1]])
    assert refused(p, 0.55).tolist() == [False, False, True, False]
    assert refused(p, 0.56).tolist() == [False, True, True, False]
    assert not refused(p, 0.0).any()
    assert refused(p, 1.0).all()
    with pytest.raises(ValueError):
        refused(p, 1.5)


def test_coverage_accuracy_curve():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 1, 0, -1])  # -1: outside the model's classes, always wrong
    curve = coverage_accuracy(p, labels, np.array([0.0, 0.55, 0.7, 0.85, 0.95]))
    assert curve.coverage.tolist() == [1.0, 1.0, 0.5, 0.25, 0.0]
    np.testing.assert_allclose(curve.accuracy[:4], [0.5, 0.5, 0.5, 1.0])
    assert np.isnan(curve.accuracy[4])
    assert curve.at(0.84) == (0.25, 1.0)
    assert curve.to_dict()["accuracy"][4] is None


def test_top_k_and_alignment():
    p = np.array([[0.1, 0.5, 0.4]])
    idx, val = top_k(p, 2)
    assert idx.tolist() == [[1, 2]]
    np.testing.assert_allclose(val, [[0.5, 0.4]])
    assert top_k(p, 10)[0].shape == (1, 3)
    aligned = align_classes(p, [225, 14, 62], [14, 62, 194, 225])
    np.testing.assert_allclose(aligned, [[0.5, 0.4, 0.0, 0.1]])


def test_crystal_system_probabilities_sum_the_space_groups_of_each_system():
    from inference.space_groups import crystal_system_probabilities

    # 225 cubic, 139 and 141 tetragonal, 62 orthorhombic
    systems = crystal_system_probabilities(np.array([0.3, 0.25, 0.25, 0.2]), [225, 139, 141, 62])
    assert [name for name, _ in systems] == ["tetragonal", "cubic", "orthorhombic"]
    assert [p for _, p in systems] == pytest.approx([0.5, 0.3, 0.2])
    # the top space group's system need not be the most probable system
    assert systems[0][0] != "cubic"
