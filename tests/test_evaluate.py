"""Evaluation on labelled sets: metrics, plots, JSON; manifest of measured patterns and CIF folders."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from inference.evaluate import evaluate, evaluate_predictions, load_cif_dir, load_manifest, main
from inference.readers import write_xy
from inference.predict import PatternPrediction, Predictor, load_config

XRED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental" / "xred"
PLOTS = ("top_k.png", "confusion_crystal_system.png", "recall_per_space_group.png", "coverage_accuracy.png")


def _prediction(probs, source="x"):
    return PatternPrediction(source=source, probabilities=np.asarray(probs, float), n_members=1)


def test_metrics_by_hand():
    classes = [225, 221, 136, 186]
    results = [
        _prediction([0.7, 0.2, 0.1, 0.0]),   # true 225: top-1
        _prediction([0.5, 0.3, 0.2, 0.0]),   # true 221: top-2
        _prediction([0.1, 0.2, 0.3, 0.4]),   # true 136: top-2, crystal system wrong (hexagonal)
        _prediction([0.4, 0.3, 0.2, 0.1]),   # true 14: outside the classes, never right
        PatternPrediction(source="bad", error="empty file"),  # true 186: unusable
    ]
    m = evaluate_predictions(results, [225, 221, 136, 14, 186], classes, max_k=3, n_thresholds=11,
                             refusal_threshold=0.45)
    # scored: the three answered items in the classes; 14 is out of scope; the unusable one is in neither
    assert (m["n"], m["n_out_of_scope"], m["n_unclassified"]) == (3, 1, 1)
    assert (m["n_items"], m["n_answered"], m["n_errors"]) == (5, 4, 1)
    assert (m["top1_count"], m["top2_count"], m["top3_count"]) == (1, 3, 3)
    assert m["top1"] == pytest.approx(1 / 3) and m["top1_all"] == pytest.approx(1 / 4)
    assert m["top2"] == pytest.approx(1.0) and m["top2_all"] == pytest.approx(3 / 4)
    assert m["top2_of_items"] == pytest.approx(0.6) and m["top_k_curve"][2] == pytest.approx(1.0)
    assert m["crystal_system_count"] == 2  # 225 -> cubic ok, 221 -> predicted 225 (cubic) ok
    assert m["crystal_system_accuracy"] == pytest.approx(2 / 3) and m["crystal_system_accuracy_all"] == pytest.approx(0.5)
    cm = np.asarray(m["confusion_crystal_system"]["matrix"])
    labels = m["confusion_crystal_system"]["labels"]
    assert cm.sum() == 4 and cm[labels.index("tetragonal"), labels.index("hexagonal")] == 1
    assert cm[labels.index("monoclinic"), labels.index("cubic")] == 1
    assert m["per_space_group_recall"] == {225: 1.0, 221: 0.0, 136: 0.0, 14: 0.0}
    assert m["refusal"]["kept"] == 2 and m["refusal"]["correct_kept"] == 1
    assert m["coverage_accuracy"]["coverage"][0] == 1.0
    # top probabilities 0.7 (right), 0.5, 0.4 and 0.4 (out of scope: wrong) in bins of 1/15:
    # |1 - 0.7| + |0 - 0.5| + 2 |0 - 0.4|, over the four answered items
    assert m["mean_confidence"] == pytest.approx(0.5)
    assert m["ece"] == pytest.approx((0.3 + 0.5 + 0.8) / 4)


def test_the_crystal_system_of_the_summed_probabilities_can_differ_from_the_top_space_groups():
    classes = [225, 139, 141, 62]                         # cubic, tetragonal, tetragonal, orthorhombic
    results = [_prediction([0.4, 0.35, 0.25, 0.0]),      # true 141: top-1 225 (cubic), summed tetragonal 0.6
               _prediction([0.1, 0.0, 0.0, 0.9]),        # true 62: both orthorhombic, at 0.9
               _prediction([0.8, 0.1, 0.1, 0.0])]        # true 14: outside the classes, system wrong
    m = evaluate_predictions(results, [141, 62, 14], classes, max_k=2, n_thresholds=11)
    assert m["crystal_system_accuracy"] == pytest.approx(1 / 2)
    assert m["crystal_system_summed_accuracy"] == pytest.approx(1.0)
    assert m["crystal_system_summed_accuracy_all"] == pytest.approx(2 / 3)
    # bins: 0.6 right (gap 0.4), 0.9 right (gap 0.1), 0.8 wrong (gap 0.8), each a third of the items
    assert m["crystal_system_summed_ece"] == pytest.approx((0.4 + 0.1 + 0.8) / 3)


@pytest.fixture(scope="module")
def predictor():
    from tiny_checkpoint import shared_tiny_checkpoint

    return Predictor.from_checkpoints([shared_tiny_checkpoint()], load_config())


def _manifest(tmp_path):
    from simulator import PatternSimulator
    from tiny_checkpoint import SIMULATION, structures

    sim = PatternSimulator({**SIMULATION, "grid": {"two_theta_min": 10.0, "two_theta_max": 80.0, "step": 0.02}})
    rng = np.random.default_rng(1)
    rows = []
    for sg, s in structures().items():
        write_xy(tmp_path / f"{sg}.xy", sim.grid, 20 + 1000 * sim.pure(s, rng))
        rows.append({"name": f"sg{sg}", "pattern_file": f"{sg}.xy", "space_group": sg})
    rows.append({"name": "nacl-as-14", "pattern_file": "225.xy", "space_group": 14})  # label the model cannot know
    (tmp_path / "empty.xy").write_text("")
    rows.append({"name": "empty", "pattern_file": "empty.xy", "space_group": 62})
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "pattern_file", "space_group"])
        w.writeheader()
        w.writerows(rows)
    return tmp_path / "manifest.csv"


@pytest.mark.slow
def test_manifest_evaluation_writes_metrics_and_plots(predictor, tmp_path, capsys):
    manifest = _manifest(tmp_path)
    data = load_manifest(manifest)
    assert data.space_groups.tolist() == [225, 221, 136, 186, 14, 62]
    result = evaluate(predictor, data, tmp_path / "out")
    m = result.metrics
    assert (m["n_items"], m["n"], m["n_answered"], m["n_errors"], m["n_out_of_scope"]) == (6, 4, 5, 1, 1)
    assert m["top1_count"] == 4 and m["top4_count"] == 4  # the out-of-scope label is never found
    assert m["top1"] == 1.0 and m["top1_all"] == pytest.approx(4 / 5)
    assert "empty file" in result.predictions[5].error
    for name in PLOTS:
        assert (tmp_path / "out" / name).stat().st_size > 5000
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["top1_count"] == 4 and saved["set"] == tmp_path.name
    items = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [i["correct_top1"] for i in items] == [True, True, True, True, False, False]

    code = main(["--checkpoint", str(predictor.members[0].name), "--manifest", str(manifest),
                 "--output-dir", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert code == 0
    assert "top-1      4 of 4 scored (100.0 %), of 5 with out-of-scope (80.0 %)" in out and "ERR empty: " in out
    assert (tmp_path / "cli" / "top_k.png").exists()


@pytest.mark.slow
def test_cif_folder_is_labelled_and_simulated(predictor, tmp_path):
    from pymatgen.io.cif import CifWriter

    from tiny_checkpoint import structures

    for sg, s in structures().items():
        s = s.copy()
        s.scale_lattice(s.volume * 1.01 ** 3)
        CifWriter(s).write_file(str(tmp_path / f"c{sg}.cif"))
    (tmp_path / "broken.cif").write_text("data_broken\n_cell_length_a 3\n")
    data = load_cif_dir(tmp_path)
    assert sorted(data.space_groups.tolist()) == [0, 136, 186, 221, 225]
    assert any("broken.cif" in e for e in data.errors.values())
    result = evaluate(predictor, data, None)
    m = result.metrics
    assert (m["n_items"], m["n"], m["n_answered"], m["n_errors"]) == (5, 4, 4, 1)
    assert m["top1_count"] == 4 and m["crystal_system_count"] == 4
    assert "log_volume_mae" in m  # the tiny model has a volume head and CIFs give true volumes


@pytest.mark.slow
@pytest.mark.skipif(not XRED.exists(), reason="shared measured patterns not available")
def test_xred_manifest_every_pattern_answered(predictor, tmp_path):
    data = load_manifest(XRED / "manifest.csv")
    result = evaluate(predictor, data, tmp_path)
    m = result.metrics
    in_scope = sum(int(s) in predictor.space_groups for s in data.space_groups)
    assert (m["n_items"], m["n_answered"], m["n"], m["n_out_of_scope"]) == (17, 17, in_scope, 17 - in_scope)
    assert m["top4_count"] == in_scope  # four classes: every in-scope label is within the top 4


@pytest.mark.slow
def test_heldout_split_is_simulated_and_scored(predictor, tmp_path):
    from inference.evaluate import load_heldout

    run_config = {"database": {"limit": 400, "workers": 1},
                  "statistics": {"min_crystals_per_class": 5, "cache_dir": str(tmp_path / "cache")}}
    run_config["evaluation"] = {"cache_dir": str(tmp_path / "patterns")}
    data = load_heldout(run_config, limit=12, seed=0)
    assert len(data) == 12 and data.name.startswith("heldout-")
    assert (data.space_groups >= 1).all() and np.isfinite(data.log_volumes).all()
    result = evaluate(predictor, data, None)
    m = result.metrics
    assert m["n_items"] == 12 and m["n_answered"] + m["n_errors"] == 12
    answered = [int(s) for s, r in zip(data.space_groups, result.predictions) if r.ok]
    assert m["n_out_of_scope"] == sum(s not in predictor.space_groups for s in answered)
    assert m["n"] + m["n_out_of_scope"] == m["n_answered"]
    assert m["top1_count"] <= m["n"]


@pytest.mark.slow
def test_heldout_command_and_in_training_evaluator_give_the_same_numbers(predictor, tmp_path, monkeypatch):
    """One rule, one held-out subset: the same crystals (capped and drawn alike), the same patterns
    (simulated independently into two caches) and the same figures from both evaluation paths."""
    from types import SimpleNamespace

    import generator.pipeline
    from evaluation.config import EvaluationConfig
    from evaluation.scoring import score
    from evaluation.testsets import build_test_sets, heldout_ids
    from trainer.checkpoint import load_for_inference
    from inference.evaluate import load_heldout

    from tiny_checkpoint import tiny_prepared

    prepared = tiny_prepared()
    monkeypatch.setattr(generator.pipeline, "prepare_data", lambda cfg=None: prepared)
    checkpoint = predictor.members[0].name
    model, meta = load_for_inference(checkpoint)
    limit, seed = 11, 3

    cfg = EvaluationConfig(test_sets=["test_spglib"], max_test_crystals=limit, seed=seed,
                           cache_dir=str(tmp_path / "training"))
    (ts,) = build_test_sets(cfg, SimpleNamespace(space_groups=meta.space_groups), prepared,
                            simulation_cfg=meta.simulation)
    training = score(model, None, [ts], meta.space_groups, topk=(1, 2, 3))["metrics"]

    run_config = {"evaluation": {"seed": seed, "max_test_crystals": None, "cache_dir": str(tmp_path / "command")}}
    data = load_heldout(run_config, limit=limit)
    command = evaluate(predictor, data, None).metrics

    ids = heldout_ids(prepared.split.test_ids, limit, seed)
    assert data.ids == ids and len(ids) == limit
    assert ts.ids == [i for i in ids if not i.startswith("si-")]     # same crystals, same order
    assert command["n_errors"] == 0 and command["n"] == training["test_spglib/n"] == len(ts)
    assert command["n_out_of_scope"] == training["test_spglib/n_out_of_scope"] == limit - len(ts) > 0
    assert training["test_spglib/n_unclassified"] == training["test_spglib/n_out_of_scope"]
    for key in ("top1", "top2", "top3", "top1_all", "top2_all", "crystal_system_accuracy", "balanced_accuracy"):
        assert command[key] == pytest.approx(training[f"test_spglib/{key}"], abs=1e-12), key
    assert command["top1_all"] < command["top1"]   # the out-of-scope crystals count wrong there
    assert len(list((tmp_path / "training").iterdir())) == len(list((tmp_path / "command").iterdir())) == 1


def test_heldout_seed_option_reaches_the_draw(monkeypatch, capsys):
    """--seed scores a run on another run's held-out draw (runs of other seeds on the same patterns)."""
    import inference.evaluate as command
    from tiny_checkpoint import shared_tiny_checkpoint

    seen = []

    def draw(run_config, limit=None, seed=None):
        seen.append((limit, seed))
        raise ValueError("drawn")

    monkeypatch.setattr(command, "load_heldout", draw)
    for extra, expected in (([], (7, None)), (["--seed", "5"], (7, 5))):
        code = command.main(["--checkpoint", str(shared_tiny_checkpoint()), "--heldout", "--limit", "7", *extra])
        assert code == 2 and "drawn" in capsys.readouterr().err and seen[-1] == expected


@pytest.mark.slow
def test_bundled_model_evaluated_with_json_output(tmp_path, monkeypatch, capsys):
    import shutil

    import inference.pretrained as pretrained
    from tiny_checkpoint import shared_tiny_checkpoint

    root = tmp_path / "pretrained"
    folder = root / "tiny"
    folder.mkdir(parents=True)
    for f in ("model.safetensors", "meta.json"):
        shutil.copyfile(shared_tiny_checkpoint() / f, folder / f)
    (folder / "calibration.json").write_text(json.dumps({"temperature": 2.0, "refusal_threshold": 0.6}))
    monkeypatch.setattr(pretrained, "package_root", lambda: root)
    manifest = _manifest(tmp_path)
    code = main(["--manifest", str(manifest), "--json", "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    m = json.loads(out)
    assert m["n_items"] == 6 and m["checkpoints"] == [str(folder)] and m["temperatures"] == [2.0]
    for key in ("top1", "top5", "crystal_system_accuracy", "top1_all"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["n"] == 4 and m["top1"] == pytest.approx(1.0)       # over the 4 scored items
    assert m["top1_all"] == pytest.approx(4 / 5)  # over the 5 answered items; the out-of-scope one is wrong
    assert m["refusal"]["threshold"] == 0.6 and m["refusal"]["source"] == "calibration"
    assert (tmp_path / "out" / "metrics.json").exists()


def test_named_simulation_is_moved_onto_the_model_grid():
    """--simulation: another config's effects on the model's own grid and wavelength; clear errors otherwise."""
    from inference.simulations import simulation_on_grid
    from simulator import make_representation
    from tiny_checkpoint import SIMULATION

    node = simulation_on_grid("measured", SIMULATION)
    rep = make_representation(node)
    own = make_representation(SIMULATION)
    assert np.array_equal(rep.grid, own.grid) and rep.config.wavelength == own.config.wavelength
    assert rep.config.counting.enabled and rep.config.window.enabled      # measured.yaml's effects stay
    assert not own.config.counting.enabled
    with pytest.raises(FileNotFoundError, match="no_such_config"):
        simulation_on_grid("no_such_config", SIMULATION)
    with pytest.raises(ValueError, match="2-theta"):
        simulation_on_grid("ideal", SIMULATION)


def test_simulated_set_scored_on_another_simulation(predictor):
    """The same structures simulated as measurements reach the model as other inputs, and the metrics say so."""
    from inference.labelled_sets import LabelledSet
    from tiny_checkpoint import structures

    crystals = structures()
    data = LabelledSet(name="four", ids=[f"sg{sg}" for sg in crystals],
                       space_groups=np.asarray(list(crystals), np.int64), structures=list(crystals.values()))
    own = evaluate(predictor, data, None)
    cfg = load_config()
    cfg.evaluate.simulation = "measured"
    measured = evaluate(predictor, data, None, cfg=cfg)
    assert own.metrics["simulation"] == "model" and measured.metrics["simulation"] == "measured"
    assert own.metrics["n"] == measured.metrics["n"] == 4
    p_own = np.stack([r.probabilities for r in own.predictions])
    p_measured = np.stack([r.probabilities for r in measured.predictions])
    assert np.abs(p_own - p_measured).max() > 1e-3


def test_simulation_option_checked_before_the_set_is_built(monkeypatch, capsys):
    import inference.evaluate as command
    from tiny_checkpoint import shared_tiny_checkpoint

    def never(*args, **kwargs):
        raise AssertionError("the held-out set was built")

    monkeypatch.setattr(command, "load_heldout", never)
    code = command.main(["--checkpoint", str(shared_tiny_checkpoint()), "--heldout", "--simulation", "nope"])
    assert code == 2 and "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        command.main(["--checkpoint", str(shared_tiny_checkpoint()), "--manifest", "m.csv", "--simulation", "default"])


def test_crystal_system_refusal_counts_kept_systems_out_of_scope_included():
    from inference.evaluate import crystal_system_refusal
    from inference.predictor import CrystalSystemProbability, PatternPrediction

    def answer(system: str, p: float, refused: bool) -> PatternPrediction:
        return PatternPrediction(source="x", crystal_systems=[CrystalSystemProbability(system, p)],
                                 crystal_system_refused=refused)

    results = [answer("cubic", 0.9, False),          # 225: right
               answer("cubic", 0.8, False),          # 62 is orthorhombic: wrong
               answer("monoclinic", 0.7, False),     # 3, a space group outside any small class list: right
               answer("cubic", 0.3, True),           # refused
               PatternPrediction(source="bad", error="unreadable")]
    s = crystal_system_refusal(results, [225, 62, 3, 225, 225], threshold=0.5)
    assert s == {"threshold": 0.5, "kept": 3, "coverage": 0.75, "accuracy_kept": pytest.approx(2 / 3),
                 "correct_kept": 2}
    assert crystal_system_refusal(results, [225, 62, 3, 225, 225], threshold=None) is None
