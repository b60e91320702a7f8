"""Evaluation metrics on hand-made predictions."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import metrics as M

# classes: 0 -> P-1 (2, triclinic), 1 -> P2_1/c (14, monoclinic), 2 -> Pnma (62, orthorhombic),
# 3 -> C2/c (15, monoclinic)
SPACE_GROUPS = [2, 14, 62, 15]
SCORES = np.array([
    [0.7, 0.1, 0.1, 0.1],   # true 0, top1 0
    [0.1, 0.2, 0.6, 0.1],   # true 1, top1 2, top2 {2, 1}
    [0.1, 0.1, 0.1, 0.7],   # true 1, top1 3 (same system), 1 in top 3? order 3, then 0/1/2 tied -> 0, 1
    [0.0, 0.1, 0.9, 0.0],   # true 2, top1 2
    [0.5, 0.0, 0.4, 0.1],   # true 2, top1 0, top2 {0, 2}
])
LABELS = np.array([0, 1, 1, 2, 2])


def test_top_k():
    assert M.top_k_accuracy(SCORES, LABELS, 1) == pytest.approx(2 / 5)
    assert M.top_k_accuracy(SCORES, LABELS, 2) == pytest.approx(4 / 5)
    assert M.top_k_accuracy(SCORES, LABELS, 4) == 1.0
    assert M.top_k_accuracy(SCORES, LABELS, 10) == 1.0     # k larger than the classes
    assert np.isnan(M.top_k_accuracy(np.zeros((0, 4)), np.zeros(0, int), 1))
    with pytest.raises(ValueError):
        M.top_k_accuracy(SCORES, LABELS[:3], 1)


def test_recalls_and_crystal_systems():
    pred = SCORES.argmax(1)                                 # [0, 2, 3, 2, 0]
    assert M.per_space_group_recall(pred, LABELS, SPACE_GROUPS) == {2: 1.0, 14: 0.0, 62: 0.5}
    rec = M.per_class_recall(pred, LABELS, 4)
    assert np.isnan(rec[3]) and rec[0] == 1.0
    by_system = M.accuracy_by_crystal_system(pred, LABELS, SPACE_GROUPS)
    assert by_system == {"triclinic": 1.0, "monoclinic": 0.0, "orthorhombic": 0.5}
    # predicted system right: yes, no (62 for 14), yes (15 for 14), yes, no (2 for 62)
    assert M.crystal_system_accuracy(pred, LABELS, SPACE_GROUPS) == pytest.approx(3 / 5)


def test_gap_and_summary():
    assert M.gap(0.9, 0.6) == pytest.approx(0.3)
    s = M.summarize(SCORES, LABELS, SPACE_GROUPS, topk=(1, 2), log_volume_pred=np.ones(5), log_volume_true=np.zeros(5))
    assert s["n"] == 5 and s["top1"] == pytest.approx(0.4) and s["top2"] == pytest.approx(0.8)
    assert s["balanced_accuracy"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert s["log_volume_mae"] == pytest.approx(1.0)
    assert s["per_space_group_recall"][62] == 0.5


def test_scope_metrics_count_out_of_scope_crystals_wrong():
    s = M.summarize(SCORES, LABELS, SPACE_GROUPS, topk=(1, 2))
    out = M.scope_metrics(s, 3, (1, 2))
    assert out["n_out_of_scope"] == out["n_unclassified"] == 3
    assert out["top1_all"] == pytest.approx(2 / 8) and out["top2_all"] == pytest.approx(4 / 8)
    assert M.scope_metrics(s, 0, (1,))["top1_all"] == s["top1"]
    empty = M.summarize(np.zeros((0, 4)), np.zeros(0, int), SPACE_GROUPS, topk=(1,))
    assert M.scope_metrics(empty, 2, (1,))["top1_all"] == 0.0 and np.isnan(M.scope_metrics(empty, 0, (1,))["top1_all"])
