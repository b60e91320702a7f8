"""benchmarks/bench_learning.py: point planning, run parsing, and a tiny comparison of two configs on
a small slice of the default database (hermetic cache folder, in-process stream, no Ray)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmark_module import benchmark_module

TINY = ["database.limit=1500", "statistics.min_crystals_per_class=10", "cluster=local", "cluster.batch_size=8",
        "evaluation.max_test_crystals=20", "evaluation.synthetic_size=32", "trainer.progress=false",
        "trainer.log_every=1"]


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_learning") as module:
        yield module


def test_points_are_whole_steps_doubling_to_the_last(bench):
    assert bench.plan_steps(200_000, 4, 64) == [391, 782, 1564, 3128]   # 25,024 ... 200,192 patterns
    assert bench.plan_steps(32, 2, 8) == [2, 4]
    assert bench.plan_steps(10, 3, 64) == [1, 2, 4]                      # never below one step
    with pytest.raises(ValueError):
        bench.plan_steps(0, 4, 64)


def test_run_arguments(bench):
    run = bench.parse_run('new=model=resnet10 "optimizer.lr=3e-4"')
    assert run.name == "new" and run.overrides == ["model=resnet10", "optimizer.lr=3e-4"]
    assert bench.parse_run("baseline=").overrides == []
    for bad in ("noequals", "=x", "a b=c", "_warmup="):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_run(bad)
    with pytest.raises(SystemExit):
        bench.parse_args(["--run", "a=", "--run", "a=x=1"])


def test_json_of_one_run_is_the_run_itself(bench):
    one, two = {"name": "a", "points": []}, {"name": "b", "points": []}
    assert bench.payload([one]) is one
    assert bench.payload([one, two]) == {"runs": [one, two]}


@pytest.mark.slow
def test_two_configs_side_by_side(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALSTREAM_CACHE", str(tmp_path / "cache"))
    out, js = tmp_path / "runs", tmp_path / "learning.json"
    result = bench.main([*TINY, "--patterns", "16", "--points", "2", "--warmup", "1", "--run", "base=",
                         "--run", "slow_lr=optimizer.lr=1e-5", "--out", str(out), "--json", str(js)])
    data = json.loads(js.read_text())
    assert data == json.loads(json.dumps(result))
    assert [r["name"] for r in data["runs"]] == ["base", "slow_lr"]
    for run in data["runs"]:
        assert run["error"] is None and run["config"] == "train" and run["heldout_set"] == "test_spglib"
        assert run["fixed"]["evaluation.backend"] == "local" and run["fixed"]["trainer.max_steps"] == 2
        points = run["points"]
        assert [p["patterns"] for p in points] == [8, 16] and [p["step"] for p in points] == [1, 2]
        assert 0 < points[0]["seconds"] < points[1]["seconds"]
        assert points[0]["wall_seconds"] < points[1]["wall_seconds"]
        for p in points:
            assert 0.0 <= p["heldout_top1"] <= 1.0 and 0.0 <= p["synthetic_top1"] <= 1.0
        # the scores are the trainer's own eval records
        evals = [json.loads(line) for line in (Path(run["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        evals = {r["step"]: r for r in evals if r["kind"] == "eval"}
        assert [evals[p["step"]]["test_spglib/top1"] for p in points] == [p["heldout_top1"] for p in points]
    assert data["runs"][1]["overrides"] == ["optimizer.lr=1e-5"]
    assert (out / "learning.png").stat().st_size > 0
    assert not (out / "base" / "checkpoints" / "step_0000001").exists()   # no intermediate checkpoints
    assert not (out / "_warmup").exists()
    with pytest.raises(SystemExit, match="already exist"):                  # never appends to old metrics
        bench.main([*TINY, "--run", "base=", "--out", str(out)])
