"""Impossible config values are rejected up front, with a message naming the key at fault."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from trainer.run import validate_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def compose_train(overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize("name", [None] + EXPERIMENTS)
def test_shipped_configs_are_valid(name):
    validate_config(compose_train([f"+experiment={name}"] if name else []))


@pytest.mark.parametrize("override, key", [
    ("cluster.batch_size=0", "cluster.batch_size"),
    ("cluster.batch_size=-4", "cluster.batch_size"),
    ("cluster.patterns_per_crystal=0", "cluster.patterns_per_crystal"),
    ("cluster.patterns_per_crystal=65", "cluster.patterns_per_crystal"),  # more than the batch of 64
    ("cluster.queue_size=0", "cluster.queue_size"),
    ("cluster.get_max_items=0", "cluster.get_max_items"),
    ("cluster.shard_concurrency=0", "cluster.shard_concurrency"),
    ("cluster.num_actors=0", "cluster.num_actors"),
    ("cluster.source=nowhere", "cluster.source"),
    ("trainer.max_steps=-1", "trainer.max_steps"),
    ("trainer.time_budget_s=0", "trainer.time_budget_s"),
    ("trainer.time_budget_s=60 trainer.num_workers=2", "trainer.time_budget_s"),
    ("statistics.path=/saved/statistics", "statistics.path"),  # the default held-out sets need the database
    ("statistics.path=/saved/statistics evaluation=none cluster=real", "statistics.path"),
    ("trainer.log_every=0", "trainer.log_every"),
    ("trainer.num_workers=0", "trainer.num_workers"),
    ("trainer.init_weights=a trainer.resume=b", "trainer.init_weights"),
    ("trainer.init_weights_grow=true", "trainer.init_weights_grow"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.schedule=linear", "optimizer.schedule"),
    ("optimizer.name=sgd", "optimizer.name"),
    ("evaluation.interval_steps=0", "evaluation.interval_steps"),
    ("trainer.clean_view.enabled=true", "trainer.clean_view.enabled"),  # array payloads hold no peak lists
    ("trainer.clean_view.temperature=0", "trainer.clean_view.temperature"),
    ("trainer.clean_view.crystallite_size_nm=-1", "trainer.clean_view.crystallite_size_nm"),
    ("trainer.clean_view.teacher=somewhere", "trainer.clean_view.teacher"),  # without enabled
    ("trainer.clean_view.enabled=true cluster.payload=peaks trainer.clean_view.teacher=/no/such/run",
     "trainer.clean_view.teacher"),
])
def test_impossible_value_names_its_key(override, key):
    cfg = compose_train(override.split())
    with pytest.raises(ValueError) as err:
        validate_config(cfg)
    assert str(err.value).startswith(key + " "), str(err.value)


def test_cosine_needs_total_steps():
    with pytest.raises(ValueError, match=r"optimizer\.total_steps"):
        validate_config(compose_train(["optimizer=adam", "optimizer.schedule=cosine", "+optimizer.total_steps=0"]))
    validate_config(compose_train(["optimizer=adam", "optimizer.schedule=cosine", "+optimizer.total_steps=100"]))


@pytest.mark.slow  # a Python start with torch and Hydra: ~7 s on a loaded machine
def test_command_line_fails_fast_naming_the_key(tmp_path):
    env = dict(os.environ, CRYSTALSTREAM_CACHE=str(tmp_path / "cache"), HYDRA_FULL_ERROR="0")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trainer", "cluster.batch_size=0",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    assert proc.returncode != 0
    assert "cluster.batch_size must be > 0, got 0" in proc.stdout + proc.stderr
    assert seconds < 60, f"took {seconds:.0f} s: validation must come before the data build"
    assert not (tmp_path / "cache").exists()   # nothing was built


def test_more_actors_than_ray_cpus_is_an_error(monkeypatch):
    import ray

    from cluster.config import ClusterConfig
    from cluster.stream import resolve_num_actors

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    assert resolve_num_actors(ClusterConfig(num_actors=3), reserved_cpus=1.0) == 3      # 3 of 4 - 1
    assert resolve_num_actors(ClusterConfig(num_actors=None, trainer_cpus=1.0)) == 3    # derived
    with pytest.raises(ValueError, match=r"cluster\.num_actors=4 .* at most 3 fit"):
        resolve_num_actors(ClusterConfig(num_actors=4), reserved_cpus=1.0)
    with pytest.raises(ValueError, match=r"cluster\.num_actors=3 .*actor_cpus=2"):
        resolve_num_actors(ClusterConfig(num_actors=3, actor_cpus=2.0))


@pytest.mark.slow  # starts Ray
def test_ray_stream_with_too_many_actors_fails_at_once():
    import ray

    from cluster.sources import make_source

    if ray.is_initialized():
        pytest.skip("Ray already running in this process")
    from cluster.producer import NoiseProducerFactory

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"cluster\.num_actors=3 generation actors need 3 CPUs"):
        make_source(dict(source="ray", num_cpus=2, num_actors=3, batch_size=8), None,
                    factory=NoiseProducerFactory(batch_size=8, n_points=16, n_classes=3))
    assert time.perf_counter() - t0 < 60
    assert not ray.is_initialized()   # the Ray the stream started is shut down again
