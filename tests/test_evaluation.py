"""Evaluators and test sets: hand-made predictions, non-blocking submission, failures, cached patterns
(a dead evaluator actor: tests/test_faults_runs.py)."""
from __future__ import annotations

import dataclasses
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evaluation import testsets as T
from evaluation.config import EvaluationConfig
from cluster.evaluators import Evaluator, make_evaluator, reserved_cpus
from evaluation.scoring import LocalEvaluator, score
from evaluation.testsets import TestSet, build_test_sets

sys.path.insert(0, str(Path(__file__).parent))
from toy_statistics import toy_statistics  # noqa: E402

ray = pytest.importorskip("ray")

SPACE_GROUPS = [2, 14, 62, 15]
# an identity Linear layer turns these patterns into these logits
REAL = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.6, 0.1], [0.1, 0.1, 0.1, 0.7], [0.0, 0.1, 0.9, 0.0]], np.float32)
REAL_LABELS = np.array([0, 1, 1, 2])         # top-1: 2 of 4 right
SYN = np.eye(4, dtype=np.float32)
SYN_LABELS = np.array([0, 1, 2, 0])           # top-1: 3 of 4 right


def _set(name, kind, x, y):
    return TestSet(name, kind, x.astype(np.float16), y, np.array(SPACE_GROUPS)[y].astype(np.int16),
                   np.zeros(len(y), np.float32))


SETS = [_set("test_spglib", "real", REAL, REAL_LABELS), _set("synthetic", "synthetic", SYN, SYN_LABELS)]
FACTORY = functools.partial(torch.nn.Linear, 4, 4, bias=False)
IDENTITY = {"weight": torch.eye(4)}
REVERSED = {"weight": torch.eye(4).flip(0)}   # logits reversed: class 3 - argmax


class WithVolume(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4, bias=False)

    def forward(self, x):
        return {"logits": self.lin(x), "log_volume": torch.ones(len(x))}


def test_score_on_hand_made_predictions():
    out = score(FACTORY(), {"weight": np.eye(4, dtype=np.float32)}, SETS, SPACE_GROUPS, batch_size=3,
                topk=(1, 2), gap_reference="test_spglib")
    m = out["metrics"]
    assert m["test_spglib/top1"] == pytest.approx(0.5) and m["test_spglib/top2"] == pytest.approx(0.75)
    assert m["synthetic/top1"] == pytest.approx(0.75)
    assert m["gap"] == pytest.approx(0.25) and m["gap/test_spglib"] == pytest.approx(0.25)
    assert m["test_spglib/n_out_of_scope"] == 0 and m["test_spglib/top1_all"] == m["test_spglib/top1"]
    assert out["details"]["test_spglib"]["per_space_group_recall"] == {2: 1.0, 14: 0.0, 62: 1.0}
    assert out["details"]["test_spglib"]["accuracy_by_crystal_system"]["monoclinic"] == 0.0


def test_local_evaluator_loads_weights_and_reads_dict_outputs():
    ev = LocalEvaluator(WithVolume, SETS, SPACE_GROUPS, {"backend": "local", "topk": [1]})
    ev.submit({"lin.weight": torch.eye(4)}, step=3)
    ev.submit({"lin.weight": torch.eye(4).flip(0)}, step=4)
    a, b = ev.poll()
    assert (a["step"], b["step"]) == (3, 4)
    assert a["metrics"]["test_spglib/top1"] == pytest.approx(0.5)
    assert b["metrics"]["test_spglib/top1"] != a["metrics"]["test_spglib/top1"]
    assert a["metrics"]["test_spglib/log_volume_mae"] == pytest.approx(1.0)
    assert ev.poll() == []


def test_make_evaluator_and_reserved_cpus():
    assert make_evaluator({"enabled": False}, FACTORY, SETS, SPACE_GROUPS) is None
    assert isinstance(make_evaluator({"backend": "local"}, FACTORY, SETS, SPACE_GROUPS), LocalEvaluator)
    assert reserved_cpus({"num_evaluators": 2, "evaluator_cpus": 1.0}) == 2.0
    assert reserved_cpus({"backend": "local"}) == 0.0


def _cfg(**kw):
    return EvaluationConfig(**{"num_evaluators": 1, "evaluator_cpus": 1.0, "max_pending": 1, "topk": [1],
                               "gap_reference": "test_spglib", **kw})


def _wait_for(ev, n, timeout=60.0):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += ev.poll()
        time.sleep(0.05)
    return got


def test_ray_evaluator_is_non_blocking_and_matches_local(ray_local):
    ev = Evaluator(FACTORY, SETS, SPACE_GROUPS, _cfg())
    try:
        t0 = time.perf_counter()
        assert ev.submit(IDENTITY, step=10)
        assert time.perf_counter() - t0 < 1.0         # the actor is still starting: submit did not wait
        assert ev.poll() == [] and ev.busy == 1
        (res,) = _wait_for(ev, 1)
        local = LocalEvaluator(FACTORY, SETS, SPACE_GROUPS, _cfg(backend="local"))
        local.submit(IDENTITY, step=10)
        assert res["metrics"] == local.poll()[0]["metrics"]
        assert res["step"] == 10 and res["metrics"]["gap"] == pytest.approx(0.25)
    finally:
        ev.close()


def test_busy_evaluators_drop_old_pending_weights(ray_local):
    ev = Evaluator(FACTORY, SETS, SPACE_GROUPS, _cfg(max_pending=1))
    try:
        ev.submit(IDENTITY, 1)      # dispatched (the actor is still being created)
        ev.submit(REVERSED, 2)      # pending
        ev.submit(IDENTITY, 3)      # displaces 2
        results = ev.wait(timeout=60)
        assert [r["step"] for r in results] == [1, 3] and ev.dropped == 1
    finally:
        ev.close()


def test_failing_evaluation_is_logged_and_training_goes_on(ray_local, caplog):
    ev = Evaluator(FACTORY, SETS, SPACE_GROUPS, _cfg())
    try:
        ev.submit({"wrong.key": torch.eye(4)}, 1)       # raises inside the evaluator
        assert ev.wait(timeout=60) == []
        assert "evaluation of step 1 failed" in caplog.text
        ev.submit(IDENTITY, 2)                           # the same evaluator scores the next weights
        assert [r["step"] for r in ev.wait(timeout=60)] == [2]
    finally:
        ev.close()


# ---------------------------------------------------------------------------------------------
# test sets from a small prepared database of real-but-simple crystals


@dataclass
class _Record:
    crystal: object
    space_group: int
    database_space_group: int
    partial_occupancy: bool

    @property
    def volume(self):
        return self.crystal.volume

    def to_crystal(self):
        return self.crystal

    @property
    def structure(self):
        return self.crystal.to_structure()


@pytest.fixture(scope="module")
def prepared():
    from generator import CrystalSampler

    stats = toy_statistics()
    crystals = CrystalSampler(stats, seed=4).sample_many(12)
    db = {}
    for i, c in enumerate(crystals):
        # record 0 has a database label outside the classes; record 1 is disordered
        db[f"c{i}"] = _Record(c, c.space_group, 1 if i == 0 else c.space_group, i == 1)
    split = SimpleNamespace(statistics_ids=[f"c{i}" for i in range(8)], test_ids=[f"c{i}" for i in range(8, 12)] +
                            ["c0", "c1"], hash="split-hash")
    return stats, SimpleNamespace(database=db, split=split)


def test_build_test_sets_labels_subsets_and_cache(prepared, tmp_path, monkeypatch):
    stats, prep = prepared
    cfg = EvaluationConfig(test_sets=["test_database", "test_spglib", "test_ordered", "statistics_real", "synthetic"],
                           synthetic_size=5, cache_dir=str(tmp_path))
    sets = {t.name: t for t in build_test_sets(cfg, stats, prep)}
    assert list(sets) == cfg.test_sets
    assert len(sets["test_spglib"]) == 6
    assert len(sets["test_database"]) == 5 and "c0" not in sets["test_database"].ids   # label 1 is not a class
    assert len(sets["test_ordered"]) == 5 and "c1" not in sets["test_ordered"].ids
    # crystals outside the classes are not scored but counted
    assert sets["test_database"].n_out_of_scope == sets["test_database"].n_unclassified == 1
    assert sets["test_spglib"].n_out_of_scope == sets["test_ordered"].n_out_of_scope == 0

    small = dataclasses.replace(sets["test_database"], patterns=np.eye(4, dtype=np.float16)[[0, 1, 2, 3, 0]],
                                labels=np.array([0, 1, 2, 3, 1]))
    m = score(FACTORY(), {"weight": np.eye(4, dtype=np.float32)}, [small], SPACE_GROUPS, topk=(1,))["metrics"]
    assert m["test_database/n"] == 5 and m["test_database/n_out_of_scope"] == m["test_database/n_unclassified"] == 1
    assert m["test_database/top1"] == pytest.approx(4 / 5) and m["test_database/top1_all"] == pytest.approx(4 / 6)
    assert len(sets["statistics_real"]) == 8 and len(sets["synthetic"]) == 5
    t = sets["test_spglib"]
    assert t.patterns.dtype == np.float16 and t.patterns.shape[1] == 8501
    assert np.all(np.array(stats.space_groups)[t.labels] == t.space_groups)
    assert np.allclose(t.patterns.max(axis=1), 1.0, atol=1e-3)
    n_files = len(list(tmp_path.iterdir()))
    assert n_files == 3

    # a second build reads the cache: nothing is simulated
    monkeypatch.setattr(T, "simulate_crystals", lambda *a, **k: pytest.fail("simulated again"))
    import generator

    monkeypatch.setattr(generator.CrystalSampler, "from_config", lambda *a, **k: pytest.fail("sampled again"))
    again = {t.name: t for t in build_test_sets(cfg, stats, prep)}
    assert np.array_equal(again["test_spglib"].patterns, t.patterns)
    monkeypatch.undo()

    # another simulation config is another cache entry
    build_test_sets(EvaluationConfig(test_sets=["test_spglib"], cache_dir=str(tmp_path)), stats, prep,
                    simulation_cfg={"sqrt": False})
    assert len(list(tmp_path.iterdir())) == n_files + 1


def test_unknown_test_set_and_missing_data_are_errors(prepared):
    stats, _ = prepared
    with pytest.raises(ValueError, match="unknown test sets"):
        build_test_sets({"test_sets": ["nonsense"]}, stats, None)
    with pytest.raises(ValueError, match="prepared database"):
        build_test_sets({"test_sets": ["test_spglib"]}, stats, None)


def test_real_training_arrays_and_source(prepared, tmp_path):
    from cluster.sources import ArraySource, make_source

    stats, prep = prepared
    cfg = {"source": "real", "batch_size": 4, "real": {"variants": 2}}
    src = make_source(cfg, stats, prepared=prep, cache_dir=str(tmp_path))
    assert isinstance(src, ArraySource)
    assert len(src.labels) == 16                     # 8 statistics-side crystals x 2 variants
    assert not np.array_equal(src.patterns[0], src.patterns[1])   # two crystallite sizes of one crystal
    b = src.get(1.0)
    assert b.patterns.shape == (4, 8501) and b.patterns.dtype == np.float16


def test_randomised_sets_keep_labels_and_change_patterns(prepared, tmp_path):
    stats, prep = prepared
    names = ["test_spglib", "randomised_coordinates", "randomised_lattice", "randomised_both"]
    sets = {t.name: t for t in build_test_sets(EvaluationConfig(test_sets=names, cache_dir=str(tmp_path)), stats, prep)}
    base = sets["test_spglib"]
    for name in names[1:]:
        t = sets[name]
        assert len(t) >= len(base) - 2 and len(t) > 0          # a crystal may resist randomisation
        common = [i for i in t.ids if i in base.ids]
        a = t.patterns[[t.ids.index(i) for i in common]]
        b = base.patterns[[base.ids.index(i) for i in common]]
        assert np.array_equal(t.labels[[t.ids.index(i) for i in common]], base.labels[[base.ids.index(i) for i in common]])
        assert not np.allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-2)


def test_real_source_patterns_are_the_same_on_every_worker_and_after_a_resume(prepared, tmp_path):
    """Only the shuffling of the baseline's fixed training set depends on the rank and the start step."""
    from trainer.run import SourceBuilder

    stats, prep = prepared

    def source(rank, start_step):
        return SourceBuilder(cluster={"source": "real", "batch_size": 4, "seed": 3,
                                      "real": {"variants": 1, "max_structures": 6}},
                             statistics=stats, generator={}, simulation=None, prepared=prep,
                             cache_dir=str(tmp_path), start_step=start_step)(rank)

    first, resumed, other_rank = source(0, 0), source(0, 5), source(1, 0)
    for s in (resumed, other_rank):
        assert np.array_equal(s.patterns, first.patterns) and np.array_equal(s.labels, first.labels)
    assert len(list(tmp_path.iterdir())) == 1          # simulated and cached once
    assert not np.array_equal(first.get(1.0).patterns, other_rank.get(1.0).patterns)


def test_impurity_partners_are_other_usable_crystals_of_the_set():
    a = T.impurity_partners(6, np.random.default_rng(5), usable=[True, True, False, True, True, True])
    assert a == T.impurity_partners(6, np.random.default_rng(5), usable=[True, True, False, True, True, True])
    for i, tries in enumerate(a):
        assert len(tries) == 3 and len(set(tries)) == 3 and i not in tries and 2 not in tries
    assert T.impurity_partners(1, np.random.default_rng(0)) == [[]]


def test_real_test_crystals_get_an_impurity_phase_from_another_crystal_of_the_set(prepared, tmp_path):
    """With the impurity phase on (weight 1: the impurity alone), every held-out pattern looks like
    the pattern of another crystal of the set; reproducible, and cached apart from impurity-free ones."""
    stats, prep = prepared
    cfg = EvaluationConfig(test_sets=["test_spglib"], cache_dir=str(tmp_path / "a"), dtype="float32")
    impure = {"impurity": {"enabled": True, "weight": [1.0, 1.0]}}
    (clean,) = build_test_sets(cfg, stats, prep)
    (mixed,) = build_test_sets(cfg, stats, prep, simulation_cfg=impure)
    assert len(list((tmp_path / "a").iterdir())) == 2
    again = build_test_sets(dataclasses.replace(cfg, cache_dir=str(tmp_path / "b")), stats, prep,
                            simulation_cfg=impure)[0]
    assert np.array_equal(again.patterns, mixed.patterns)

    def unit(x):
        x = x.astype(np.float64) - x.mean(axis=1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    corr = unit(mixed.patterns) @ unit(clean.patterns).T
    most_alike = corr.argmax(axis=1)
    assert np.all(most_alike != np.arange(len(mixed)))          # never its own pattern
    assert len(set(most_alike.tolist())) > 1                    # partners differ between crystals
    assert np.all(corr.max(axis=1) > 0.8)

