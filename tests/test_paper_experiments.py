"""The papers' set-ups as experiments (conf/experiment/ozaki_ideal, liu_pdf, vecsei_dense): each composes,
trains a few steps on the CPU with the in-process source on a small slice of the default database, is scored
on held-out structure types, and predicts (measured 2-theta scans for the 1/d and 2-theta models, simulated
G(r) for the PDF model, whose measured scans are refused)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
# Small models and a tiny budget: what is tested is the plumbing of each representation, not accuracy.
TINY = ["database.limit=1500", "statistics.min_crystals_per_class=10", "cluster=local", "cluster.batch_size=8",
        "evaluation.backend=local", "evaluation.max_test_crystals=16", "evaluation.synthetic_size=16",
        "evaluation.test_sets=[test_spglib,synthetic]", "trainer.max_steps=3", "trainer.log_every=1",
        "trainer.progress=false", "trainer.checkpoint_every=0"]
SMALL_MODEL = {"ozaki_ideal": ["model.hidden=[32]", "model.channels=8", "model.volume_hidden=[16]"],
               "liu_pdf": ["model.stage_channels=[16,8]", "model.hidden=[16]"],
               "vecsei_dense": ["model.dense_layers=[64,32]"]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper_experiments_cache")
    old = os.environ.get("CRYSTALSTREAM_CACHE")
    os.environ["CRYSTALSTREAM_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("CRYSTALSTREAM_CACHE", None)
    else:
        os.environ["CRYSTALSTREAM_CACHE"] = old


def train(name: str, out: Path):
    import torch

    from trainer.run import run

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+experiment={name}", *TINY, *SMALL_MODEL[name],
                                                      f"trainer.output_dir={out}"])
    threads = torch.get_num_threads()
    try:
        return cfg, run(cfg)
    finally:
        torch.set_num_threads(threads)


def measured_scan(folder: Path, wavelength: float) -> Path:
    """A 2-theta scan of rock salt at ``wavelength``, as a laboratory measurement would read."""
    from inference.readers import write_xy
    from simulator import PatternSimulator
    from small_crystals import SMALL_CRYSTALS, small_structure

    sim = PatternSimulator({"wavelength": wavelength, "grid": {"two_theta_min": 5.0, "two_theta_max": 80.0,
                                                                "step": 0.02}, "sqrt": False})
    y = sim.patterns([small_structure(*SMALL_CRYSTALS[0])], np.random.default_rng(0))[0]
    return write_xy(folder / f"nacl_{wavelength}.xy", sim.grid, 1000 * y + 20, wavelength)


def check_run(result, kind: str, length: int):
    from trainer.checkpoint import load_meta

    assert result.step == 3 and result.final_checkpoint is not None
    assert 0.0 <= result.eval_metrics["test_spglib/top1"] <= 1.0 and result.eval_metrics["test_spglib/n"] > 0
    meta = load_meta(result.final_checkpoint)
    assert meta.representation_kind == kind and meta.input_length == length
    assert meta.representation["shape"] == [1, length]
    return meta


@pytest.mark.slow
def test_ozaki_ideal_profiles_train_and_answer_scans_at_any_wavelength(cache, tmp_path):
    from inference.predict import Predictor

    cfg, result = train("ozaki_ideal", tmp_path / "run")
    assert cfg.simulation.kind == "ideal" and cfg.model.volume_head
    check_run(result, "ideal", 10001)
    assert "volume_mae" in result.train_metrics
    predictor = Predictor.from_checkpoints([result.final_checkpoint])
    cu, mo = predictor.predict_files([measured_scan(tmp_path, 1.5406), measured_scan(tmp_path, 0.7093)])
    assert cu.ok and mo.ok, (cu.error, mo.error)
    assert cu.volume is not None and len(cu.candidates) == 5
    # the same sample at two wavelengths reaches the model as (nearly) the same 1/d input
    np.testing.assert_allclose(cu.probabilities, mo.probabilities, atol=0.05)


@pytest.mark.slow
def test_liu_pdf_trains_and_answers_simulated_pdfs_only(cache, tmp_path):
    from inference.predict import Predictor
    from small_crystals import SMALL_CRYSTALS, small_structure

    cfg, result = train("liu_pdf", tmp_path / "run")
    assert cfg.simulation.kind == "pdf" and cfg.model.arch == "liu"
    meta = check_run(result, "pdf", 209)
    predictor = Predictor.from_checkpoints([result.final_checkpoint])
    (scan,) = predictor.predict_files([measured_scan(tmp_path, 1.5406)])
    assert not scan.ok and "total-scattering" in scan.error
    rep = meta.input_representation()
    pdfs, ok = rep.simulate([small_structure(*e) for e in SMALL_CRYSTALS[:2]], np.random.default_rng(0))
    ens = predictor.ensemble([pdfs])
    assert ok.all() and ens.probabilities.shape == (2, len(meta.space_groups))
    np.testing.assert_allclose(ens.probabilities.sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_vecsei_dense_trains_both_heads_and_refuses_uncertain_ensembles(cache, tmp_path):
    from inference.predict import Predictor

    cfg, result = train("vecsei_dense", tmp_path / "run")
    assert cfg.simulation.vecsei_background.enabled and cfg.model.crystal_system_head
    check_run(result, "two_theta", 8501)
    assert {"crystal_system_ce", "crystal_system_accuracy"} <= set(result.train_metrics)
    ckpt = result.final_checkpoint
    sure = Predictor.from_checkpoints([ckpt, ckpt], refusal_threshold=0.0)
    unsure = Predictor.from_checkpoints([ckpt, ckpt], refusal_threshold=0.999)
    scan = measured_scan(tmp_path, 1.5406)
    (a,), (b,) = sure.predict_files([scan]), unsure.predict_files([scan])
    assert a.ok and a.n_members == 2 and a.agreement == 2 and not a.refused
    assert b.refused and b.top_probability == pytest.approx(a.top_probability)
