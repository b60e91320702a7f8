"""Evaluation on labelled sets: metrics, plots, JSON; manifest of measured patterns and CIF folders."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from trainer.evaluate import evaluate, evaluate_predictions, load_cif_dir, load_manifest, main
from trainer.patterns import write_xy
from trainer.predict import PatternPrediction, Predictor, load_config

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
    assert (m["n"], m["n_answered"], m["n_errors"], m["n_out_of_scope"]) == (5, 4, 1, 1)
    assert (m["top1_count"], m["top2_count"], m["top3_count"]) == (1, 3, 3)
    assert m["top1"] == pytest.approx(0.25) and m["top2_of_all"] == pytest.approx(0.6)
    assert m["crystal_system_count"] == 2  # 225 -> cubic ok, 221 -> predicted 225 (cubic) ok
    cm = np.asarray(m["confusion_crystal_system"]["matrix"])
    labels = m["confusion_crystal_system"]["labels"]
    assert cm.sum() == 4 and cm[labels.index("tetragonal"), labels.index("hexagonal")] == 1
    assert cm[labels.index("monoclinic"), labels.index("cubic")] == 1
    assert m["per_space_group_recall"] == {225: 1.0, 221: 0.0, 136: 0.0, 14: 0.0}
    assert m["refusal"]["kept"] == 2 and m["refusal"]["correct_kept"] == 1
    assert m["coverage_accuracy"]["coverage"][0] == 1.0


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
    assert (m["n"], m["n_answered"], m["n_errors"], m["n_out_of_scope"]) == (6, 5, 1, 1)
    assert m["top1_count"] == 4 and m["top4_count"] == 4  # the out-of-scope label is never found
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
    assert "top-1      4 of 6" in out and "ERR empty: " in out
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
    assert (m["n"], m["n_answered"], m["n_errors"]) == (5, 4, 1)
    assert m["top1_count"] == 4 and m["crystal_system_count"] == 4
    assert "log_volume_mae" in m  # the tiny model has a volume head and CIFs give true volumes


@pytest.mark.slow
@pytest.mark.skipif(not XRED.exists(), reason="shared measured patterns not available")
def test_xred_manifest_every_pattern_answered(predictor, tmp_path):
    data = load_manifest(XRED / "manifest.csv")
    result = evaluate(predictor, data, tmp_path)
    m = result.metrics
    in_scope = sum(int(s) in predictor.space_groups for s in data.space_groups)
    assert (m["n"], m["n_answered"], m["n_out_of_scope"]) == (17, 17, 17 - in_scope)
    assert m["top4_count"] == in_scope  # four classes: every in-scope label is within the top 4


@pytest.mark.slow
def test_heldout_split_is_simulated_and_scored(predictor, tmp_path):
    from trainer.evaluate import load_heldout

    run_config = {"database": {"limit": 400, "workers": 1},
                  "statistics": {"min_crystals_per_class": 5, "cache_dir": str(tmp_path / "cache")}}
    data = load_heldout(run_config, limit=12, seed=0)
    assert len(data) == 12 and data.name.startswith("heldout-")
    assert (data.space_groups >= 1).all() and np.isfinite(data.log_volumes).all()
    result = evaluate(predictor, data, None)
    m = result.metrics
    assert m["n"] == 12 and m["n_answered"] + m["n_errors"] == 12
    answered = [int(s) for s, r in zip(data.space_groups, result.predictions) if r.ok]
    assert m["n_out_of_scope"] == sum(s not in predictor.space_groups for s in answered)
    assert m["top1_count"] <= len(answered) - m["n_out_of_scope"]


@pytest.mark.slow
def test_bundled_model_evaluated_with_json_output(tmp_path, monkeypatch, capsys):
    import shutil

    import trainer.pretrained as pretrained
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
    assert m["n"] == 6 and m["checkpoints"] == [str(folder)] and m["temperatures"] == [2.0]
    for key in ("top1", "top5", "crystal_system_accuracy"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["top1"] == pytest.approx(4 / 5)  # over the 5 answered items; the out-of-scope one is wrong
    assert m["refusal"]["threshold"] == 0.6 and m["refusal"]["source"] == "calibration"
    assert (tmp_path / "out" / "metrics.json").exists()
