"""Checkpoint format: atomic writes, round trips, inference loading."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from trainer.checkpoint import (
    CheckpointMeta,
    load_for_inference,
    load_meta,
    load_training_state,
    mark_latest,
    prune_checkpoints,
    resolve,
    save_checkpoint,
    set_rng_state,
)
from trainer.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = {"name": "tiny", "arch": "park", "hidden": [32, 16], "channels": 8, "volume_head": True, "volume_hidden": [8]}
LENGTH = 1024


def make(step=3):
    torch.manual_seed(0)
    model = build_model(MODEL, 4, LENGTH)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(step):
        out = model(torch.rand(5, LENGTH))
        loss = out["logits"].logsumexp(-1).mean() + out["log_volume"].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    meta = CheckpointMeta(
        space_groups=[2, 14, 62, 225],
        model=MODEL,
        input_length=LENGTH,
        simulation={"grid": {"start": 5.0, "stop": 90.0}, "wavelength": 1.5406, "preprocessing": "sqrt"},
        volume_norm={"mean": 5.5, "std": 0.8},
        step=step,
        samples_seen=5 * step,
    )
    return model, opt, sched, meta


def test_round_trip_for_inference(tmp_path):
    model, opt, sched, meta = make()
    path = save_checkpoint(tmp_path / "checkpoints" / "step_000003", model, meta, opt, sched)
    mark_latest(path)
    loaded, lmeta = load_for_inference(tmp_path / "checkpoints")
    assert not loaded.training
    assert lmeta.space_groups == [2, 14, 62, 225]
    assert lmeta.simulation["wavelength"] == 1.5406
    assert lmeta.step == 3 and lmeta.n_classes == 4
    assert lmeta.log_volume(1.0) == pytest.approx(6.3)
    x = torch.rand(2, LENGTH)
    model.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    torch.testing.assert_close(a["logits"], b["logits"])
    torch.testing.assert_close(a["log_volume"], b["log_volume"])
    # every way of naming the checkpoint resolves to the same directory
    for name in (tmp_path / "checkpoints", tmp_path / "checkpoints" / "latest.json", path, path / "model.safetensors", tmp_path):
        assert resolve(name) == path


def test_training_state_round_trip(tmp_path):
    model, opt, sched, meta = make()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    path = save_checkpoint(tmp_path / "c", model, meta, opt, sched, extra_state={"source": {"step": 3}})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = load_training_state(path)
    set_rng_state(state.rng)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert state.extra == {"source": {"step": 3}}
    opt2 = torch.optim.Adam(build_model(MODEL, 4, LENGTH).parameters(), lr=1e-3)
    opt2.load_state_dict(state.optimizer)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(state.scheduler)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_atomic_overwrite_and_no_temporaries(tmp_path, monkeypatch):
    model, opt, sched, meta = make()
    path = save_checkpoint(tmp_path / "step_000003", model, meta, opt, sched)
    before = (path / "model.safetensors").read_bytes()

    # A failure half-way through leaves the previous checkpoint intact and no temporaries.
    import trainer.checkpoint as ck

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "step_000003", model, meta, opt, sched)
    monkeypatch.undo()
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000003"]

    meta.step = 4
    save_checkpoint(tmp_path / "step_000003", model, meta, opt, sched)
    assert load_meta(path).step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000003"]


def test_prune_keeps_newest(tmp_path):
    model, opt, sched, meta = make(step=1)
    for s in (1, 2, 3, 4):
        meta.step = s
        mark_latest(save_checkpoint(tmp_path / f"step_{s:06d}", model, meta))
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000003", "step_000004"]
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 4


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_for_inference(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_for_inference(tmp_path / "nope")


def test_newer_format_is_refused(tmp_path):
    model, opt, sched, meta = make(step=1)
    path = save_checkpoint(tmp_path / "c", model, meta)
    data = json.loads((path / "meta.json").read_text())
    data["format_version"] = 99
    (path / "meta.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="newer"):
        load_for_inference(path)


@pytest.mark.parametrize("text, problem", [
    ('{"space_groups": [2, 14], "model": {', "not valid JSON"),
    ("[1, 2, 3]", "expected a JSON object"),
    ('{"model": {}, "input_length": 1024}', "missing field(s) space_groups"),
    ('{"space_groups": [2, 14, 62, 225], "model": {}, "input_length": "long"}', "input_length must be"),
    ('{"space_groups": [0, 999], "model": {}, "input_length": 1024}', "space_groups must be"),
    ('{"space_groups": [2, 14, 62, 225], "model": "park", "input_length": 1024}', "model must be an object"),
    ('{"space_groups": [2, 14, 62, 225], "model": {"arch": "nonsense"}, "input_length": 1024}', "cannot be built"),
])
def test_corrupt_meta_json_names_the_file(tmp_path, text, problem):
    model, opt, sched, meta = make(step=1)
    path = save_checkpoint(tmp_path / "c", model, meta)
    (path / "meta.json").write_text(text)
    with pytest.raises(ValueError) as info:
        load_for_inference(path)
    assert str(path / "meta.json") in str(info.value) and problem in str(info.value)


def test_absurd_model_config_is_refused_without_allocating(tmp_path):
    model, opt, sched, meta = make(step=1)
    path = save_checkpoint(tmp_path / "c", model, meta)
    data = json.loads((path / "meta.json").read_text())
    data["model"] = {**MODEL, "hidden": [2_000_000, 2_000_000]}  # 4e12 parameters: terabytes if built
    (path / "meta.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="parameters, more than the limit") as info:
        load_for_inference(path)
    assert str(path / "meta.json") in str(info.value)
    from trainer.checkpoint import count_parameters

    assert count_parameters(meta) == sum(p.numel() for p in model.parameters())  # the count is exact
