"""Imperfect patterns train: a short run on the paper's imperfections (and on the measured-pattern config)
lowers the cross-entropy clearly below the level of always answering the class prior.

The paper's Park CNN collapsed to a constant output on these inputs: after min-max scaling and the square
root, additive noise puts a floor of ~0.2 under every pattern, which without any normalisation layer
dominates the first convolutions' outputs, and Adam at 1e-3 drives the network to the prior. The compact
CNN normalises every layer (GroupNorm) and warms its learning rate up; this test guards that recipe.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.producer import SyntheticProducerFactory
from cluster.sources import LocalStream
from simulator.config import SimulationConfig
from toy_statistics import toy_statistics
from trainer.loop import RunSpec, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONF = Path(__file__).resolve().parents[1] / "conf"
SMALL_CNN = {"name": "convnet", "arch": "convnet", "hidden": [128], "stage_channels": [16, 24, 32, 48, 64, 64],
             "kernel_size": 9, "stem_channels": 16, "stem_kernel": 15, "stem_stride": 2, "norm_groups": 8}


def _prior_cross_entropy(prior: np.ndarray) -> float:
    p = np.asarray(prior, float) / np.sum(prior)
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
@pytest.mark.parametrize("simulation", ["imperfections"])
def test_short_imperfect_run_beats_the_prior(tmp_path, simulation):
    stats = toy_statistics(seed=0)
    sim = SimulationConfig.from_yaml(CONF / "simulation" / f"{simulation}.yaml")
    sim.grid.step = 0.04  # 2126 points: enough for a test, half the cost
    sim.profile.min_fwhm_deg = max(sim.profile.min_fwhm_deg, 0.08)
    factory = SyntheticProducerFactory(stats, {}, sim, batch_size=32, dtype="float16", patterns_per_crystal=2)
    source = LocalStream(factory, seed=1)
    steps = 300
    spec = RunSpec(model=SMALL_CNN,
                   optimizer={"name": "adamw", "lr": 2e-3, "weight_decay": 0.05, "schedule": "cosine",
                              "warmup_steps": 20, "total_steps": steps, "grad_clip": 1.0},
                   trainer={"max_steps": steps, "log_every": 10, "checkpoint_every": 0, "eval_every": 0,
                            "progress": False, "output_dir": str(tmp_path), "seed": 0, "final_eval": False},
                   space_groups=stats.space_groups, input_length=sim.n_points, simulation={})
    torch.manual_seed(0)
    fit(spec, source)
    losses = [r["ce"] for r in _train_records(tmp_path)]
    prior = _prior_cross_entropy(stats.prior)
    last = float(np.mean(losses[-5:]))
    # the prior's level is ~1.66 nats for the six toy classes; the Park CNN at 1e-3 stays within 0.05 of it
    # over the same 300 steps of the same stream, the compact CNN ends ~0.2 (imperfections) to ~0.5 below
    assert last < prior - 0.12, f"{simulation}: cross-entropy {last:.3f} vs the prior's {prior:.3f}"


def _train_records(run: Path) -> list[dict]:
    import json

    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
