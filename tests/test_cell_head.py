"""The cell-shape head: a crystal's scale-free cell shape, carried by array and peak batches, regressed
next to the space group and learnt in a short run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cluster.producer import crystal_batch
from generator.crystal import SyntheticCrystal
from trainer.batches import cell_shape_targets
from trainer.loop import RunSpec, compute_loss, fit
from trainer.models import build_model

from trainer_doubles import ToySource

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTH = 256
TINY = {"name": "tiny", "arch": "park", "hidden": [32], "channels": 8, "kernels": [20, 10, 5],
        "strides": [2, 2, 1], "cell_head": True, "cell_hidden": [16]}


def crystal(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> SyntheticCrystal:
    from pymatgen.core import Lattice

    lattice = Lattice.from_parameters(a, b, c, alpha, beta, gamma).matrix
    return SyntheticCrystal(lattice, np.zeros((1, 3)), np.array([14]), 1)


def test_cell_shape_is_free_of_size_axis_order_and_angle_choice():
    cubic = crystal(4.0, 4.0, 4.0, 90, 90, 90).cell_shape
    np.testing.assert_allclose(cubic, 0.0, atol=1e-6)
    hexagonal = crystal(3.0, 3.0, 5.0, 90, 90, 120).cell_shape
    np.testing.assert_allclose(hexagonal, [0.0, np.log(5 / 3), 0.0, 0.0, 0.5], atol=1e-6)
    mono = crystal(5.0, 7.0, 6.0, 90, 104, 90)
    shape = mono.cell_shape
    # sorted lengths 5 < 6 < 7 (a, c, b): the a-c angle (beta) lies between axes 0 and 1, opposite axis 2
    np.testing.assert_allclose(shape, [np.log(6 / 5), np.log(7 / 5), 0.0, 0.0, abs(np.cos(np.radians(104)))],
                               atol=1e-6)
    np.testing.assert_allclose(crystal(10.0, 14.0, 12.0, 90, 104, 90).cell_shape, shape, atol=1e-6)   # size
    np.testing.assert_allclose(crystal(7.0, 5.0, 6.0, 104, 90, 90).cell_shape, shape, atol=1e-6)      # order
    np.testing.assert_allclose(crystal(5.0, 7.0, 6.0, 90, 76, 90).cell_shape, shape, atol=1e-6)       # obtuse/acute
    assert shape.shape == (5,) and shape.dtype == np.float32


def test_array_and_peak_batches_carry_the_cells():
    from cluster.peak_batch import draw_peak_batch
    from simulator.pattern import PatternSimulator

    crystals = [crystal(4.0, 4.0, 4.0, 90, 90, 90), crystal(5.0, 7.0, 6.0, 90, 104, 90)]
    crystals[0].space_group, crystals[1].space_group = 225, 14
    batch = crystal_batch(np.zeros((2, 8), np.float32), crystals, {225: 0, 14: 1})
    np.testing.assert_allclose(batch.cell_shape, [c.cell_shape for c in crystals])
    peaks = draw_peak_batch(PatternSimulator(), crystals, np.random.default_rng(0), patterns_per_crystal=2,
                            labels=np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(peaks.cell_shape, [c.cell_shape for c in crystals for _ in range(2)])
    target = cell_shape_targets(peaks, torch.device("cpu"))
    assert target.shape == (4, 5) and target.dtype == torch.float32


def test_cell_term_joins_the_loss_only_with_a_head_and_targets():
    torch.manual_seed(0)
    model = build_model(TINY, 4, LENGTH)
    x, y = torch.rand(8, LENGTH), torch.tensor([0, 1, 2, 3] * 2)
    cells = torch.rand(8, 5)
    out = model(x)
    assert out["cell_shape"].shape == (8, 5)
    plain, parts_plain = compute_loss(out, y, torch.zeros(8), None, 1.0)
    with_cells, parts = compute_loss(out, y, torch.zeros(8), None, 1.0, cell_shape=cells, cell_weight=2.0)
    assert "cell_mae" not in parts_plain
    expected = (out["cell_shape"] - cells).abs().mean()
    assert with_cells.item() == pytest.approx(plain.item() + 2.0 * expected.item(), rel=1e-5)
    with_cells.backward()
    assert model.cell[0].weight.grad is not None and model.cell[0].weight.grad.abs().sum() > 0
    no_head = build_model({**TINY, "cell_head": False}, 4, LENGTH)
    assert "cell_shape" not in no_head(x)


class CellSource(ToySource):
    """Toy batches whose cell shape is a function of the pattern (the mean of its first quarter), so a
    head can learn it."""

    def get(self, timeout: float):
        batch = super().get(timeout)
        level = np.asarray(batch.patterns, np.float32)[:, : LENGTH // 4].mean(1, keepdims=True)
        batch.cell_shape = np.repeat(level, 5, axis=1).astype(np.float32)
        return batch


def test_a_short_run_learns_the_cell_shape(tmp_path):
    cfg = {"max_steps": 40, "log_every": 10, "checkpoint_every": 40, "eval_every": 1000, "progress": False,
           "output_dir": str(tmp_path), "seed": 3, "final_eval": False, "cell_loss_weight": 1.0}
    spec = RunSpec(model=TINY, optimizer={"lr": 3e-3}, trainer=cfg, space_groups=[2, 14, 62, 225],
                   input_length=LENGTH, simulation={"wavelength": 1.5406})
    fit(spec, CellSource(length=LENGTH, batch_size=32, seed=0), None)
    train = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
             if "cell_mae" in r]
    assert len(train) == 4
    assert train[-1]["cell_mae"] < 0.5 * train[0]["cell_mae"]
