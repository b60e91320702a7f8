"""Bundled models: the package folder, the packaging command and its model card, the 'no model' error."""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

import inference.pretrained as pretrained

ROOT = Path(__file__).resolve().parents[1]


def test_package_data_ships_the_bundled_model_files():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = data["inference.pretrained"]
    for name in ("tiny/model.safetensors", "tiny/meta.json", "tiny/calibration.json", "tiny/MODEL_CARD.md"):
        assert any(Path(name).match(g) for g in globs), name
    assert (ROOT / "inference" / "pretrained" / "__init__.py").exists()


def test_empty_bundle_and_the_no_model_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "package_root", lambda: tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "meta.json").write_text("{}")  # no weights: not a model
    assert pretrained.bundled_checkpoints() == [] and pretrained.bundled_model_card() is None
    with pytest.raises(pretrained.NoBundledModel, match="no checkpoint given and no model is bundled"):
        pretrained.checkpoints_or_bundled([])
    assert pretrained.checkpoints_or_bundled(["a"]) == ["a"]

    from inference.evaluate import main as evaluate_main
    from inference.predict import main as predict_main

    assert predict_main([str(tmp_path / "scan.xy")]) == 2
    assert "no checkpoint given and no model is bundled" in capsys.readouterr().err
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("pattern_file,space_group\nscan.xy,225\n")
    assert evaluate_main(["--manifest", str(manifest), "--json", "--output-dir", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "no checkpoint given and no model is bundled" in captured.err and captured.out == ""


def test_the_installed_package_holds_no_half_written_model():
    for p in pretrained.bundled_checkpoints():
        assert (p / "meta.json").is_file() and (p / "model.safetensors").is_file() and (p / "MODEL_CARD.md").is_file()
        assert not (p / "training_state.pt").exists()
        assert (p / "model.safetensors").stat().st_size < 50 * 2 ** 20


def _run_folder(tmp_path: Path) -> Path:
    """A run folder as the trainer writes it around a copy of the tiny checkpoint."""
    from tiny_checkpoint import shared_tiny_checkpoint

    run = tmp_path / "run"
    ckpt = shutil.copytree(shared_tiny_checkpoint(), run / "checkpoints" / "step_000060")
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"path": ckpt.name, "step": 60}))
    (run / "config.yaml").write_text("seed: 7\noptimizer:\n  name: adam\n  lr: 0.01\n  schedule: constant\n"
                                     "cluster:\n  batch_size: 32\n  source: local\ntrainer:\n  device: cpu\n"
                                     "  num_workers: 1\n")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- +experiment=parkcnn_medium\n- trainer.max_steps=60\n")
    (run / "summary.json").write_text(json.dumps({"step": 60, "samples_seen": 1920, "final_checkpoint": str(ckpt),
                                                  "train/loss": 0.12, "train/accuracy": 0.97,
                                                  "eval/synthetic/top1": 0.61, "wall_time_s": 3725.0}))
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 60, "loss": 0.12}) + "\n")
    (ckpt / "training_state.pt").write_bytes(b"optimizer state that must not travel")
    (ckpt / "calibration.json").write_text(json.dumps({
        "temperature": 1.7, "ece_before": 0.12, "ece_after": 0.03, "refusal_threshold": 0.55, "n": 2000,
        "simulation": "checkpoint", "target_accuracy": 0.8, "target_reached": True, "bins": 15, "seed": 0,
        "coverage_at_threshold": 0.7, "accuracy_at_threshold": 0.82,
        "coverage_accuracy": {"thresholds": [0.0, 0.45, 0.55, 0.9], "coverage": [1.0, 0.8, 0.7, 0.2],
                              "accuracy": [0.6, 0.75, 0.82, 0.97]}}))
    return run


@pytest.mark.slow
def test_package_a_run_with_its_card(tmp_path, monkeypatch, capsys):
    from inference.package import main
    from inference.predict import Predictor, load_config

    run = _run_folder(tmp_path)
    xred = tmp_path / "xred.json"
    xred.write_text(json.dumps({"n": 17, "n_answered": 17, "top1": 0.294, "top5": 0.647,
                                "crystal_system_accuracy": 0.588, "crystal_system_summed_accuracy": 0.647,
                                "mean_confidence": 0.412, "ece": 0.137,
                                "coverage_accuracy": {"thresholds": [0.0, 0.3, 0.45], "coverage": [1.0, 0.5, 0.25],
                                                      "accuracy": [0.29, 0.4, None]}}))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"hardware": "1x H200", "evaluations": {"synthetic": {"n": 256, "top1": 0.61,
                                                                                          "top5": 0.9}}}))
    dest = tmp_path / "pretrained"
    code = main([str(run), "--name", "tiny", "--dest", str(dest), "--eval", f"xred={xred}",
                 "--card-extra", str(extra)])
    out = capsys.readouterr().out
    assert code == 0 and "float32" in out
    model = dest / "tiny"
    assert sorted(p.name for p in model.iterdir()) == ["MODEL_CARD.md", "calibration.json", "card_inputs.json",
                                                       "meta.json", "model.safetensors"]
    card = (model / "MODEL_CARD.md").read_text()
    for text in ("+experiment=parkcnn_medium", "1x H200", "1 h 02 min", "29.4 %", "64.7 %", "58.8 %",
                 "| temperature T | 1.700 |", "12.0 %", "3.0 %", "0.55", "| 0.45 | 80.0 % / 75.0 % | 25.0 % / – |",
                 "| 0.55 (in use) | 70.0 % / 82.0 % | – |",
                 "| held-out structure types (simulated) | not measured", "| fresh synthetic crystals | 256 | 61.0 %",
                 "float32", "1,920", "| measured patterns (xred) | 17 | 29.4 % | 64.7 % | 58.8 % | 64.7 % | 41.2 % / 13.7 % |",
                 "fitted on 2000 fresh synthetic patterns (simulation: checkpoint, seed 0);", "| 0.55 (in use) | 70.0 % / 82.0 % |"):
        assert text in card, text

    monkeypatch.setattr(pretrained, "package_root", lambda: dest)
    assert pretrained.bundled_checkpoints() == [model]
    assert pretrained.bundled_model_card() == card

    bundled = Predictor.from_checkpoints(pretrained.checkpoints_or_bundled([]), load_config())
    assert bundled.temperatures == [1.7] and bundled.refusal_threshold == 0.55

    # existing name: refused without --force; float16 halves the file and predicts the same
    assert main([str(run), "--name", "tiny", "--dest", str(dest)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([str(run / "checkpoints" / "step_000060"), "--name", "tiny16", "--dest", str(dest),
                 "--dtype", "float16"]) == 0
    assert "float16" in (dest / "tiny16" / "MODEL_CARD.md").read_text()
    size32, size16 = ((dest / n / "model.safetensors").stat().st_size for n in ("tiny", "tiny16"))
    assert size16 < 0.6 * size32
    x = np.random.default_rng(0).random((4, bundled.members[0].spec.grid.size)).astype(np.float32)
    half = Predictor.from_checkpoints([dest / "tiny16"], load_config())
    p32, _ = bundled.member_outputs(bundled.members[0], x)
    p16, _ = half.member_outputs(half.members[0], x)
    np.testing.assert_allclose(p16, p32, atol=2e-2)
    assert main([str(run), "--name", "big", "--dest", str(dest), "--max-mb", "0.001"]) == 2
    assert "more than --max-mb" in capsys.readouterr().err
    assert not (dest / "big").exists() and not list(dest.glob(".*tmp"))

    # recalibrated and evaluated anew, the card renders again without the run folder
    assert main(["--refresh", "--name", "tiny", "--dest", str(dest)]) == 0
    assert (model / "MODEL_CARD.md").read_text() == card      # the same inputs: the same card
    shutil.rmtree(run)
    calibration = json.loads((model / "calibration.json").read_text())
    calibration.update(temperature=2.25, top_label={"a": 1.1, "b": 0.5, "c": -0.2}, ece_temperature=0.05)
    (model / "calibration.json").write_text(json.dumps(calibration))
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps({"n": 1796, "n_answered": 1796, "top1": 0.315, "top5": 0.665,
                                   "crystal_system_accuracy": 0.633}))
    assert main(["--refresh", "--name", "tiny", "--dest", str(dest), "--eval", f"heldout={heldout}"]) == 0
    refreshed = (model / "MODEL_CARD.md").read_text()
    for text in ("| temperature T | 2.250 |", "| top answer's map a / b / c | 1.100 / 0.500 / -0.200 |",
                 "| held-out structure types (simulated) | 1796 | 31.5 % | 66.5 % | 63.3 %", "1x H200", "1 h 02 min",
                 "+experiment=parkcnn_medium", "| measured patterns (xred) | 17 | 29.4 %", "1,920"):
        assert text in refreshed, text
    assert "| temperature T | 1.700 |" not in refreshed
    assert main(["--refresh", "--name", "nothing", "--dest", str(dest)]) == 2
    assert "no bundled model" in capsys.readouterr().err
    (model / "card_inputs.json").rename(tmp_path / "card_inputs.json")
    assert main(["--refresh", "--name", "tiny", "--dest", str(dest)]) == 2
    assert "card_inputs.json is missing" in capsys.readouterr().err
    (tmp_path / "card_inputs.json").rename(model / "card_inputs.json")


def test_card_says_when_the_weights_are_a_moving_average(tmp_path):
    from inference.package import main

    run = _run_folder(tmp_path)
    dest = tmp_path / "pretrained"
    assert main([str(run), "--name", "plain", "--dest", str(dest)]) == 0
    assert "moving average" not in (dest / "plain" / "MODEL_CARD.md").read_text()
    config = run / "config.yaml"
    config.write_text(config.read_text() + "  ema_decay: 0.999\n")
    assert main([str(run), "--name", "averaged", "--dest", str(dest)]) == 0
    assert "- weights: exponential moving average of the trained weights, decay 0.999" in \
        (dest / "averaged" / "MODEL_CARD.md").read_text()


def test_card_follows_the_weights_a_run_started_from(tmp_path):
    from inference.model_card import _started_from
    from trainer.checkpoint import load_meta

    run = _run_folder(tmp_path)
    earlier = load_meta(run)
    lines = _started_from({"trainer": {"init_weights": str(run)}}, 1000)
    assert f"step {earlier.step:,}" in lines[0] and f"{earlier.samples_seen:,} patterns" in lines[0]
    assert lines[-1].endswith(f"{1000 + earlier.samples_seen:,}")
    assert "grown" not in lines[0]
    grown = _started_from({"trainer": {"init_weights": str(run), "init_weights_grow": True}}, 1000)
    assert "grown: the residual branches" in grown[0]
    assert _started_from({"trainer": {"init_weights": None}}, 1000) == []
    gone = _started_from({"trainer": {"init_weights": str(tmp_path / "gone")}}, 1000)
    assert len(gone) == 1 and "not found" in gone[0]


def test_card_row_in_use_is_the_exact_threshold_not_the_nearest_grid_point():
    from inference.model_card import _coverage_table, _with_point

    grid = {"thresholds": [0.3, 0.35], "coverage": [0.5, 0.25], "accuracy": [0.4, 0.8]}
    exact = _with_point(grid, 0.33, 0.375, 0.6)
    assert exact["thresholds"] == [0.3, 0.33, 0.35] and exact["coverage"][1] == 0.375
    assert _with_point(grid, 0.35, 0.9, 0.9) == grid and _with_point(grid, 0.33, None, None) == grid
    rows = _coverage_table({"xred": exact}, 0.33)
    assert any(r.startswith("| 0.33 (in use) | 37.5 % / 60.0 %") for r in rows), rows


def test_the_card_of_a_model_calibrated_on_heldout_crystals_says_so(tmp_path):
    from inference.model_card import render_card
    from inference.package import run_info
    from trainer.checkpoint import load_meta

    run = _run_folder(tmp_path)
    ckpt = run / "checkpoints" / "step_000060"
    calibration = json.loads((ckpt / "calibration.json").read_text())
    calibration.update(source="heldout", n=1500, excluded={"limit": 2000, "seed": 0},
                       synthetic={"n": 1500, "top1": 0.31, "top5": 0.66, "mean_confidence": 0.33, "ece": 0.021})
    heldout = {"n": 1796, "top1": 0.315, "top5": 0.666, "crystal_system_accuracy": 0.633,
               "mean_confidence": 0.325, "ece": 0.024}
    card = render_card(name="tiny", meta=load_meta(ckpt), info=run_info(ckpt), evaluations={"heldout": heldout},
                       calibration=calibration, extra={}, dtype="float32", size_mb=1.0)
    lines = card.splitlines()
    rows = [line for line in lines if line.startswith("| held-out structure types")]
    assert rows[0].startswith("| held-out structure types (simulated) | 1796 | 31.5 %") and rows[0].endswith(
        "| 32.5 % / 2.4 % |")
    assert rows[1].startswith("| held-out structure types, the calibration crystals | 1500 | 31.0 %")
    assert rows[1].endswith("| 33.0 % / 2.1 % |")
    assert "fitted on 1500 patterns of real crystals of the held-out structure types (simulation: checkpoint, " \
           "seed 0; none of them among the 2000 that `inference.evaluate --heldout --limit 2000 --seed 0` scores);" in card
    assert "fresh synthetic patterns" not in card and "(calibration set)" not in card
    assert "| fresh synthetic crystals | not measured |" in card
    assert "| kept / accuracy at the threshold (calibration crystals) |" in card
    header = next(line for line in lines if line.startswith("| threshold |"))
    assert "held-out (calibration crystals)" in header


def test_card_lineage_stops_where_the_earlier_weights_are_gone_or_replaced(tmp_path):
    from inference.model_card import _started_from
    from trainer.checkpoint_meta import CheckpointMeta

    earlier = tmp_path / "bundled"
    earlier.mkdir()
    (earlier / "model.safetensors").write_bytes(b"")
    own = {"trainer": {"init_weights": str(earlier)}}
    # the folder now holds the weights of the run being described (trained from its own earlier content)
    (earlier / "meta.json").write_text(CheckpointMeta(space_groups=[225], model={}, input_length=10, step=8500,
                                                      samples_seen=1000, config=own).to_json())
    lines = _started_from(own, 1000, stated_total=5000)
    assert lines == [f"- started from the weights of `{earlier}` (since replaced by later weights)",
                     "- patterns seen by these weights in all: 5,000 (as stated at packaging)"]
    gone = {"trainer": {"init_weights": str(tmp_path / "gone")}}
    assert _started_from(gone, 1000) == [f"- started from the weights of `{tmp_path / 'gone'}` "
                                         "(its meta.json was not found at packaging)"]
    # an intact chain sums the patterns itself
    (earlier / "meta.json").write_text(CheckpointMeta(space_groups=[225], model={}, input_length=10, step=70,
                                                      samples_seen=700, config={}).to_json())
    assert _started_from(own, 1000, stated_total=5)[-1] == "- patterns seen by these weights in all: 1,700"
