"""The clean second view of a training pattern: what it renders, the loss it adds, and a run that uses it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster.peak_batch import clean_view, draw_peak_batch, render_reference
from cluster.torch_render import TorchRenderer
from simulator import PatternSimulator, SimulationConfig
from trainer.clean_view import clean_view_loss, split_outputs
from trainer.config import CleanViewConfig

sys.path.insert(0, str(Path(__file__).parent))
from toy_statistics import toy_statistics  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
EFFECTS = ("strain", "shift", "texture", "impurity", "gp_background", "vecsei_background", "hump", "counting",
           "noise", "window")


@pytest.fixture(scope="module")
def crystals():
    from generator import CrystalSampler

    return CrystalSampler(toy_statistics(), seed=0).sample_many(8)


def _measured() -> SimulationConfig:
    return SimulationConfig.from_yaml(CONF / "simulation" / "measured.yaml")


def _effects_off(cfg: SimulationConfig) -> SimulationConfig:
    for name in EFFECTS:
        getattr(cfg, name).enabled = False
    return cfg


def test_clean_view_renders_each_peak_list_without_the_measurement(crystals):
    sim = PatternSimulator(_measured())
    batch = draw_peak_batch(sim, crystals, np.random.default_rng(3), noise_seed=5)
    measured = TorchRenderer()(batch).numpy()
    # the drawn profiles, nothing else: the simulator with every effect off renders the same peak lists so
    plain = clean_view(batch)
    out = TorchRenderer()(plain).numpy()
    assert np.abs(out - render_reference(plain, PatternSimulator(_effects_off(_measured())))).max() <= 1e-4
    plain.noise_seed = 6
    assert np.array_equal(out, TorchRenderer()(plain).numpy())                  # no noise left to draw
    assert (out.min(axis=1) == 0).all() and not np.allclose(out, measured)      # no background floor
    # pure sharp peaks: Gaussian Scherrer peaks of 50 nm, no K-alpha2, as a pure simulation renders them
    sharp = clean_view(batch, 50.0)
    pure_cfg = _effects_off(_measured())
    pure_cfg.profile.shape, pure_cfg.profile.width, pure_cfg.profile.kalpha2 = "gaussian", "scherrer", False
    pure = TorchRenderer()(sharp).numpy()
    assert np.abs(pure - render_reference(sharp, PatternSimulator(pure_cfg))).max() <= 1e-4
    small = batch.profile[:, 0] < 20                                            # broad drawn peaks get sharper
    assert small.any()
    assert ((pure > 0.5).sum(axis=1)[small] < (out > 0.5).sum(axis=1)[small]).all()
    # the drawn batch is left as it was; labels and peak lists are shared
    assert batch.window is not None and batch.spec.kalpha2 and np.array_equal(TorchRenderer()(batch).numpy(), measured)
    assert sharp.labels is batch.labels and sharp.two_theta is batch.two_theta
    with pytest.raises(ValueError, match="crystallite_size_nm"):
        clean_view(batch, 0.0)


def test_clean_view_loss_teaches_the_measured_view_only():
    cfg = CleanViewConfig(enabled=True, ce_weight=0.5, distill_weight=2.0, temperature=2.0)
    torch.manual_seed(0)
    y = torch.tensor([0, 2, 1, 3])
    clean = torch.randn(4, 5, requires_grad=True)
    measured = torch.randn(4, 5, requires_grad=True)
    loss, parts = clean_view_loss(measured, clean, y, cfg)
    assert torch.isclose(parts["clean_ce"], F.cross_entropy(clean, y))
    assert parts["distill"] > 0
    assert torch.isclose(loss, 0.5 * parts["clean_ce"] + 2.0 * parts["distill"])
    # the distillation term moves the measured logits only: the clean ones get the cross-entropy's gradient
    distill_only, _ = clean_view_loss(measured, clean, y, CleanViewConfig(ce_weight=0.0, distill_weight=1.0))
    distill_only.backward()
    assert clean.grad is None or torch.count_nonzero(clean.grad) == 0
    assert torch.count_nonzero(measured.grad) > 0
    same, parts = clean_view_loss(measured.detach(), measured.detach(), y, CleanViewConfig(ce_weight=0.0))
    assert abs(float(same)) < 1e-6 and abs(float(parts["distill"])) < 1e-6
    # a frozen teacher's cross-entropy is reported, not learned from
    frozen, parts = clean_view_loss(measured, clean.detach(), y, cfg, learn_clean=False)
    assert torch.isclose(frozen, 2.0 * parts["distill"]) and parts["clean_ce"] > 0
    out, clean_logits = split_outputs({"logits": torch.arange(8.0).reshape(4, 2), "log_volume": torch.arange(4.0)}, 2)
    assert out["logits"].shape == (2, 2) and out["log_volume"].tolist() == [0.0, 1.0]
    assert clean_logits.tolist() == [[4.0, 5.0], [6.0, 7.0]]


def _short_run(out_dir: Path, clean_view_cfg: dict) -> dict:
    """A 6-step run of a tiny model on measured-looking peak payloads; its last train record."""
    from cluster.producer import SyntheticProducerFactory
    from cluster.sources import LocalStream
    from trainer.loop import RunSpec, fit

    stats = toy_statistics(seed=0)
    sim = _measured()
    sim.grid.step = 0.08  # 1063 points: the plumbing, not the physics
    sim.profile.min_fwhm_deg = 0.16
    factory = SyntheticProducerFactory(stats, {}, sim, batch_size=8, payload="peaks")
    model = {"name": "convnet", "arch": "convnet", "hidden": [32], "stage_channels": [8, 16, 16],
             "kernel_size": 5, "stem_channels": 8, "stem_kernel": 7, "stem_stride": 2, "norm_groups": 4}
    spec = RunSpec(model=model, optimizer={"name": "adamw", "lr": 1e-3},
                   trainer={"max_steps": 6, "log_every": 3, "checkpoint_every": 0, "eval_every": 0,
                            "progress": False, "output_dir": str(out_dir), "seed": 0, "final_eval": False,
                            "clean_view": clean_view_cfg},
                   space_groups=stats.space_groups, input_length=sim.n_points, simulation={})
    torch.manual_seed(0)
    fit(spec, LocalStream(factory, seed=1))
    records = [r for r in map(json.loads, (out_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert [r["step"] for r in records] == [3, 6]
    return records[-1]


def test_a_run_with_clean_views_trains_on_both(tmp_path, one_torch_thread):
    last = _short_run(tmp_path, {"enabled": True, "distill_weight": 1.0})
    assert last["samples_seen"] == 6 * 8                                        # clean views are not counted
    assert last["clean_ce"] > 0 and last["distill"] > 0
    assert abs(last["loss"] - (last["ce"] + last["clean_ce"] + last["distill"])) < 1e-3


def test_a_frozen_teacher_reads_the_clean_view(tmp_path, one_torch_thread):
    _short_run(tmp_path / "teacher", {"enabled": False})
    last = _short_run(tmp_path / "student", {"enabled": True, "teacher": str(tmp_path / "teacher")})
    assert last["clean_ce"] > 0 and last["distill"] > 0
    # the run's model learns from its own cross-entropy and the teacher's predictions, not the clean CE
    assert abs(last["loss"] - (last["ce"] + last["distill"])) < 1e-3
    with pytest.raises(ValueError, match=r"^trainer\.clean_view\.teacher: "):
        _short_run(tmp_path / "bad", {"enabled": True, "teacher": str(tmp_path / "no_run")})
