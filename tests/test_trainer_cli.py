"""``python -m trainer`` end to end on a tiny budget (a small slice of the default database, a
hermetic cache folder): the default run with Ray generation and evaluator actors, and a resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["database.limit=1500", "statistics.min_crystals_per_class=10", "cluster.batch_size=8",
        "evaluation.max_test_crystals=16", "evaluation.synthetic_size=16", "trainer.log_every=2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trainer_cli_cache")


def run_trainer(cache: Path, *overrides: str, timeout: float = 85, path_first: Path | None = None) -> list[str]:
    path = str(ROOT) if path_first is None else os.pathsep.join([str(path_first), str(ROOT)])
    env = {**os.environ, "CRYSTALSTREAM_CACHE": str(cache), "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-m", "trainer", *TINY, *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


@pytest.mark.slow
def test_default_run_end_to_end(cache, tmp_path):
    from trainer.checkpoint import load_for_inference

    out = tmp_path / "run"
    lines = run_trainer(cache, f"trainer.output_dir={out}", "trainer.max_steps=4", "evaluation.interval_steps=2",
                        "trainer.checkpoint_every=2")
    assert lines[-1] == f"Final checkpoint: {out / 'checkpoints' / 'step_0000004'}"
    text = "\n".join(lines)
    assert "Evaluation at step 4" in text and "test_database" in text and "synthetic" in text
    model, meta = load_for_inference(out)
    assert meta.step == 4 and meta.final and meta.model["name"] == "convnet_logq"
    assert meta.model["axis_two_theta"] == [5.0, 90.0]   # the simulated grid's range, stored for inference
    assert meta.input_length == 8501 and meta.simulation["wavelength"] == pytest.approx(1.5406)
    assert meta.config["cluster"]["source"] == "ray"
    evals = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in evals if r["kind"] == "eval"}) == [2, 4]
    assert (out / "train.csv").exists() and (out / "eval.csv").exists() and (out / "curves.png").exists()
    assert (out / "config.yaml").exists()


@pytest.mark.slow
def test_resume_from_the_command_line(cache, tmp_path):
    out = tmp_path / "run"
    local = [f"trainer.output_dir={out}", "cluster=local", "evaluation=none", "trainer.checkpoint_every=2"]
    run_trainer(cache, *local, "trainer.max_steps=2")
    lines = run_trainer(cache, *local, "trainer.max_steps=4", f"trainer.resume={out}")
    assert lines[-1].endswith("step_0000004")
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]


@pytest.mark.slow
def test_without_ray_or_the_database_within_a_time_budget(cache, tmp_path):
    """The GPU-box recipe on the CPU: generation in local processes, statistics from a saved folder,
    the steps planned from a wall-clock budget; Ray is never imported."""
    from generator.pipeline import prepare_data
    from trainer.checkpoint import load_meta

    saved = tmp_path / "statistics"
    env_cache = os.environ.get("CRYSTALSTREAM_CACHE")
    os.environ["CRYSTALSTREAM_CACHE"] = str(cache)
    try:
        prepare_data({"database": {"limit": 1500}, "statistics": {"min_crystals_per_class": 10}}).statistics.save(saved)
    finally:
        if env_cache is None:
            os.environ.pop("CRYSTALSTREAM_CACHE")
        else:
            os.environ["CRYSTALSTREAM_CACHE"] = env_cache
    guard = tmp_path / "no_ray" / "ray"
    guard.mkdir(parents=True)
    (guard / "__init__.py").write_text('raise ImportError("this run must not import ray")\n')
    out = tmp_path / "run"
    lines = run_trainer(cache, f"trainer.output_dir={out}", "cluster=process", "cluster.num_actors=1",
                        f"statistics.path={saved}", "database.path=/no/such/database.db", "evaluation=none",
                        "trainer.max_steps=100000", "trainer.time_budget_s=8", "trainer.checkpoint_every=0",
                        "trainer.progress=false", timeout=120, path_first=guard.parent)
    meta = load_meta(out)
    assert meta.final and 0 < meta.step < 100000
    assert meta.config["trainer"]["max_steps"] == meta.step == int(lines[-1].rsplit("_", 1)[1])
    assert meta.config["cluster"]["source"] == "process"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["source/actors_alive"] == 1.0 and rows[-1]["source/replacements"] == 0.0
