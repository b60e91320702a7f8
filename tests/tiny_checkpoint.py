"""A tiny classifier trained for a few seconds on simulated patterns of four simple crystals, saved
with the real checkpoint format; shared by the inference tests."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

# Coarse grid so that simulating and training take seconds.
SIMULATION = {"wavelength": 1.5406, "grid": {"two_theta_min": 10.0, "two_theta_max": 80.0, "step": 0.1}}
MODEL = {"name": "tiny", "arch": "park", "hidden": [32], "channels": 8, "kernels": [15, 9, 5],
         "strides": [2, 2, 2], "pool_sizes": [2, 2, 2], "pool_strides": [2, 2, 2], "volume_head": True,
         "volume_hidden": [16]}


def structures() -> dict[int, object]:
    """Space group -> a pymatgen Structure of a textbook crystal."""
    from pymatgen.core import Lattice, Structure

    return {
        225: Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        221: Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.11), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        136: Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]]),
        186: Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.82, 6.26), ["Zn", "S"],
                                       [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.375]]),
    }


def simulate(simulator, structure, rng, strain: float = 0.0):
    """One model input of ``structure`` with its lattice scaled isotropically by (1 + strain)."""
    s = structure.copy()
    if strain:
        s.scale_lattice(s.volume * (1.0 + strain) ** 3)
    return simulator.pattern(s, rng)


def train_tiny_checkpoint(directory: str | Path, steps: int = 60, seed: int = 0) -> Path:
    """Train the tiny model on strained copies of :func:`structures` and save it; returns the checkpoint."""
    from simulator import PatternSimulator
    from trainer.checkpoint import CheckpointMeta, save_checkpoint
    from trainer.models import build_model

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sim = PatternSimulator(SIMULATION)
    crystals = structures()
    groups = sorted(crystals)
    # a fixed pool of strained patterns, reused across steps
    xs, ys, vs = [], [], []
    for label, sg in enumerate(groups):
        for _ in range(12):
            strain = rng.uniform(-0.015, 0.015)
            xs.append(simulate(sim, crystals[sg], rng, strain))
            ys.append(label)
            vs.append(np.log(crystals[sg].volume * (1.0 + strain) ** 3))
    x = torch.as_tensor(np.stack(xs))
    y = torch.as_tensor(ys)
    logv = np.asarray(vs)
    norm = {"mean": float(logv.mean()), "std": float(logv.std())}
    z = torch.as_tensor((logv - norm["mean"]) / norm["std"], dtype=torch.float32)
    model = build_model(MODEL, len(groups), len(sim.grid))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (32,))
        out = model(x[idx])
        volume_loss = (out["log_volume"] - z[idx]).abs().mean()
        loss = torch.nn.functional.cross_entropy(out["logits"], y[idx]) + 0.1 * volume_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = CheckpointMeta(space_groups=groups, model=MODEL, input_length=len(sim.grid),
                          simulation=OmegaConf.to_container(OmegaConf.structured(sim.config)),
                          volume_norm=norm, step=steps, samples_seen=32 * steps)
    return save_checkpoint(Path(directory) / f"step_{steps:06d}", model.eval(), meta, include_rng=False)


@lru_cache(maxsize=None)
def shared_tiny_checkpoint() -> Path:
    """One tiny checkpoint per test process (trained on first use, removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix="tiny-checkpoint-"))
    atexit.register(shutil.rmtree, directory, True)
    return train_tiny_checkpoint(directory)


class PreparedRecord:
    """A prepared-database record of a pymatgen Structure with a given label."""

    def __init__(self, structure, space_group: int):
        self.structure, self.space_group, self.database_space_group = structure, space_group, space_group
        self.partial_occupancy = False

    @property
    def volume(self):
        return self.structure.volume

    def to_crystal(self):
        return self.structure


def tiny_prepared():
    """Strained copies of the tiny checkpoint's four crystals plus two crystals outside its classes."""
    from types import SimpleNamespace

    from pymatgen.core import Lattice, Structure

    db = {}
    for sg, s in structures().items():
        for j, strain in enumerate((-0.01, 0.0, 0.012)):
            c = s.copy()
            c.scale_lattice(s.volume * (1 + strain) ** 3)
            db[f"{sg}-{j}"] = PreparedRecord(c, sg)
    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    db["si-0"], db["si-1"] = PreparedRecord(silicon, 227), PreparedRecord(silicon.copy(), 227)
    split = SimpleNamespace(test_ids=list(db), statistics_ids=[], hash="tiny-split", kind="tiny")
    return SimpleNamespace(database=db, split=split)
