"""Data-parallel training through Ray Train's TorchTrainer: 2 CPU workers, gloo, each pulling its own batches."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import load_for_inference, load_training_state
from trainer.loop import RunSpec

from trainer_doubles import ToySource

LENGTH = 256
TINY = {"name": "tiny", "arch": "park", "hidden": [16], "channels": 4, "kernels": [10, 5, 3], "strides": [2, 2, 1]}


@dataclass
class ToySourceForRank:
    """Picklable: a differently seeded toy stream per worker."""

    batch_size: int = 8

    def __call__(self, rank: int):
        return ToySource(length=LENGTH, batch_size=self.batch_size, seed=100 + rank)


@pytest.mark.slow
def test_two_gloo_workers(tmp_path):
    import ray

    from trainer.distributed import fit_distributed

    spec = RunSpec(model=TINY, optimizer={"lr": 1e-3},
                   trainer={"max_steps": 4, "log_every": 2, "checkpoint_every": 2, "eval_every": 0, "progress": False,
                            "output_dir": str(tmp_path), "num_workers": 2, "worker_cpus": 1.0, "torch_threads": 1,
                            "ddp_backend": "gloo"},
                   space_groups=[2, 14, 62, 225], input_length=LENGTH)
    here = Path(__file__).resolve().parent
    pythonpath = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    try:
        result = fit_distributed(spec, ToySourceForRank())
    finally:
        ray.shutdown()
    assert result.step == 4
    assert result.samples_seen == 4 * 8 * 2  # both workers contributed a batch per step
    assert result.final_checkpoint is not None and result.final_checkpoint.exists()
    model, meta = load_for_inference(result.final_checkpoint)
    assert meta.step == 4 and meta.samples_seen == 64
    state = load_training_state(result.final_checkpoint)
    assert not any(k.startswith("module.") for k in state.weights)  # unwrapped from DDP
    with torch.no_grad():
        assert model(torch.rand(2, LENGTH))["logits"].shape == (2, 4)
