"""Training loop: a step learns, logs and checkpoints are written, resume continues exactly, bad
batches are skipped, an empty source times out with a clear message."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainer.checkpoint import load_for_inference, load_training_state
from trainer.config import OptimizerConfig
from trainer.hooks import ModelFactory
from trainer.loop import RunSpec, compute_loss, fit, to_tensors
from trainer.models import build_model
from trainer.optim import lr_factor, make_optimizer

from trainer_doubles import FaultySource, ToySource, local_evaluator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LENGTH = 512
TINY = {"name": "tiny", "arch": "park", "hidden": [32], "channels": 8, "kernels": [20, 10, 5],
        "strides": [2, 2, 1], "volume_head": True, "volume_hidden": [16]}


def spec(tmp_path, **trainer):
    cfg = {"max_steps": 6, "log_every": 2, "checkpoint_every": 3, "eval_every": 3, "progress": False,
           "output_dir": str(tmp_path), "seed": 3, "keep_checkpoints": 5, **trainer}
    return RunSpec(model=TINY, optimizer={"lr": 3e-3}, trainer=cfg, space_groups=[2, 14, 62, 225],
                   input_length=LENGTH, simulation={"wavelength": 1.5406}, volume_norm={"mean": 5.0, "std": 0.3},
                   config={"note": "test"})


@pytest.mark.parametrize("device", DEVICES)
def test_one_step_changes_weights_and_lowers_loss(device):
    torch.manual_seed(0)
    model = build_model(TINY, 4, LENGTH).to(device)
    opt = make_optimizer(model.parameters(), {"lr": 1e-3})
    batch = ToySource(length=LENGTH, batch_size=32, seed=1).get(1.0)
    x, y, v = to_tensors(batch, torch.device(device))
    norm = {"mean": 5.0, "std": 0.3}

    def loss_value():
        with torch.no_grad():
            return compute_loss(model(x), y, v, norm, 1.0)[0].item()

    before = loss_value()
    weights = [p.detach().clone() for p in model.parameters()]
    loss, parts = compute_loss(model(x), y, v, norm, 1.0)
    assert set(parts) >= {"ce", "volume_mae", "correct"}
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert loss_value() < before


def test_fit_logs_checkpoints_and_evaluates(tmp_path):
    synthetic = ToySource(length=LENGTH, batch_size=64, seed=99).get(1.0)
    real = ToySource(length=LENGTH, batch_size=48, seed=98).get(1.0)
    evaluator = local_evaluator(ModelFactory(TINY, 4, LENGTH), {"test_spglib": real, "synthetic": synthetic})
    result = fit(spec(tmp_path), ToySource(length=LENGTH, seed=0), evaluator)
    assert result.step == 6 and result.samples_seen == 96
    assert result.final_checkpoint == tmp_path / "checkpoints" / "step_0000006"
    assert result.eval_step == 6
    # the gap under the keys production writes, against the final weights scored independently here
    final, _ = load_for_inference(result.final_checkpoint)
    with torch.no_grad():
        top1 = {name: float((final(torch.as_tensor(b.patterns, dtype=torch.float32))["logits"].argmax(1).numpy()
                             == np.asarray(b.labels)).mean()) for name, b in (("real", real), ("synthetic", synthetic))}
    assert result.eval_metrics["test_spglib/top1"] == pytest.approx(top1["real"])
    assert result.eval_metrics["gap/test_spglib"] == pytest.approx(top1["synthetic"] - top1["real"])
    assert result.eval_metrics["gap"] == result.eval_metrics["gap/test_spglib"]
    assert "test_spglib/gap" not in result.eval_metrics
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert {"loss", "ce", "volume_mae", "accuracy", "lr", "samples_per_s"} <= set(records[0])
    header = (tmp_path / "train.csv").read_text().splitlines()[0].split(",")
    assert "loss" in header and "source/delivered" in header
    assert (tmp_path / "eval.csv").exists() and (tmp_path / "curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["step"] == 6
    model, meta = load_for_inference(tmp_path)
    assert meta.step == 6 and meta.final and meta.space_groups == [2, 14, 62, 225]
    assert meta.volume_norm == {"mean": 5.0, "std": 0.3} and "test_spglib/top1" in meta.metrics
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_0000003", "step_0000006"]


def test_learns_the_toy_task(tmp_path):
    result = fit(spec(tmp_path, max_steps=60, log_every=20, checkpoint_every=0, eval_every=0),
                 ToySource(length=LENGTH, batch_size=32, seed=0))
    assert result.train_metrics["accuracy"] > 0.9


def test_resume_continues_exactly(tmp_path):
    full = fit(spec(tmp_path / "full"), ToySource(length=LENGTH, seed=0))
    fit(spec(tmp_path / "part", max_steps=3), ToySource(length=LENGTH, seed=0))
    # A fresh source with another seed: its state is restored from the checkpoint.
    source = ToySource(length=LENGTH, seed=12345)
    resumed = fit(spec(tmp_path / "part", resume=str(tmp_path / "part" / "checkpoints" / "step_0000003")), source)
    assert resumed.step == full.step == 6 and resumed.samples_seen == full.samples_seen
    a = load_training_state(full.final_checkpoint)
    b = load_training_state(resumed.final_checkpoint)
    for k in a.weights:
        torch.testing.assert_close(a.weights[k], b.weights[k], rtol=0, atol=0)
    assert a.extra["sources"] == b.extra["sources"]  # same next batch
    assert a.scheduler == b.scheduler
    assert a.optimizer["state"][0]["step"] == b.optimizer["state"][0]["step"] == 6
    steps = [json.loads(l)["step"] for l in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["kind"] == "train"]
    assert steps == [2, 3, 4, 6]  # 2 and 3 (end) before the interruption, 4 and 6 after


def test_resume_refuses_other_classes(tmp_path):
    fit(spec(tmp_path, max_steps=3), ToySource(length=LENGTH, seed=0))
    other = spec(tmp_path, resume=str(tmp_path))
    other.space_groups = [1, 2, 3, 4]
    with pytest.raises(ValueError, match="other classes"):
        fit(other, ToySource(length=LENGTH, seed=0))


def test_init_weights_starts_from_a_checkpoint_with_a_fresh_schedule(tmp_path):
    first = fit(spec(tmp_path / "first", max_steps=3), ToySource(length=LENGTH, seed=0))
    start = load_training_state(first.final_checkpoint).weights
    fresh = spec(tmp_path / "second", max_steps=0, init_weights=str(tmp_path / "first"))
    second = fit(fresh, ToySource(length=LENGTH, seed=1))
    assert second.step == 0 and second.samples_seen == 0                         # counters start again
    loaded = load_training_state(second.final_checkpoint).weights
    for k in start:
        torch.testing.assert_close(loaded[k], start[k], rtol=0, atol=0)
    longer = fit(spec(tmp_path / "third", max_steps=2, init_weights=str(tmp_path / "first")),
                 ToySource(length=LENGTH, seed=1))
    state = load_training_state(longer.final_checkpoint)
    assert state.optimizer["state"][0]["step"] == 2                              # a new optimizer
    other = spec(tmp_path / "fourth", init_weights=str(tmp_path / "first"))
    other.space_groups = [1, 2, 3, 4]
    with pytest.raises(ValueError, match="trainer.init_weights.*other classes"):
        fit(other, ToySource(length=LENGTH, seed=0))


def test_resume_with_another_cosine_end_warns(tmp_path, caplog):
    from trainer.optim import schedule_jump

    cosine = {"lr": 3e-3, "schedule": "cosine", "warmup_steps": 1, "total_steps": 6}
    assert schedule_jump(3, cosine, cosine, 900) is None
    old, new = schedule_jump(3, cosine, {**cosine, "total_steps": 12}, 900)
    assert new > old                                          # a later end: a higher rate at step 3
    assert schedule_jump(3, {"schedule": "nonsense"}, cosine, 900) is None

    from dataclasses import replace

    first = replace(spec(tmp_path, max_steps=3), optimizer=cosine, config={"optimizer": cosine})
    fit(first, ToySource(length=LENGTH, seed=0))
    longer = replace(spec(tmp_path, max_steps=6, resume=str(tmp_path)), optimizer={**cosine, "total_steps": 12})
    fit(longer, ToySource(length=LENGTH, seed=0))
    assert "learning-rate schedule differs" in caplog.text and "step 3" in caplog.text


def test_bad_batches_are_skipped(tmp_path, caplog):
    source = FaultySource({2: "nan", 3: "shape", 4: "raise", 5: "label"}, length=LENGTH, seed=0)
    result = fit(spec(tmp_path, max_steps=4, checkpoint_every=0), source)
    assert result.step == 4 and result.skipped_batches == 4
    assert "skipped a batch" in caplog.text


def test_too_many_bad_batches_give_up(tmp_path):
    source = FaultySource({i: "nan" for i in range(1, 100)}, length=LENGTH, seed=0)
    with pytest.raises(RuntimeError, match="bad batches in a row"):
        fit(spec(tmp_path, max_bad_batches=3), source)


def test_empty_source_times_out_with_a_clear_message(tmp_path):
    source = FaultySource({1: "timeout"}, length=LENGTH, seed=0)
    with pytest.raises(TimeoutError, match="batch_timeout_s"):
        fit(spec(tmp_path), source)


def test_paper_schedules():
    resnet = OptimizerConfig(lr=1e-4, schedule="step", step_epochs=500, gamma=0.5)
    assert lr_factor(0, resnet, 900) == 1.0
    assert lr_factor(500 * 900 - 1, resnet, 900) == 1.0
    assert lr_factor(500 * 900, resnet, 900) == 0.5
    assert lr_factor(1500 * 900, resnet, 900) == 0.125
    assert lr_factor(10**6, OptimizerConfig(schedule="constant"), 150) == 1.0
    assert lr_factor(4, OptimizerConfig(warmup_steps=10), 150) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lr_factor(0, OptimizerConfig(schedule="cosine"), 1)


def test_gpu_options_fall_back_on_the_cpu(tmp_path):
    from trainer.device import cpu_bf16_supported
    from trainer.loop import resolve_device, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None
    # explicit bf16 on the CPU only where it is native (emulated bf16 is slower than fp32)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16 if cpu_bf16_supported() else None)
    assert resolve_precision("fp32", cpu) is None
    with pytest.raises(ValueError):
        resolve_precision("fp8", cpu)
    if not torch.cuda.is_available():
        assert resolve_device("cuda").type == "cpu" and resolve_device("auto").type == "cpu"
    result = fit(spec(tmp_path, max_steps=2, precision="bf16", compile=True, device="auto", checkpoint_every=0),
                 ToySource(length=LENGTH, seed=0))
    assert result.step == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_step_on_cuda(tmp_path):
    result = fit(spec(tmp_path, max_steps=4, precision="bf16", device="cuda", checkpoint_every=0),
                 ToySource(length=LENGTH, seed=0))
    assert result.step == 4 and np.isfinite(result.train_metrics["loss"])


def test_resume_restores_the_real_structure_source(tmp_path):
    """The baseline's shuffled epochs over fixed patterns continue where they stopped."""
    from cluster.sources import ArraySource

    def source(seed):
        toy = ToySource(length=LENGTH, batch_size=40, seed=5).get(1.0)
        return ArraySource(toy.patterns, toy.labels, toy.space_groups, toy.log_volume, batch_size=16, seed=seed)

    full = fit(spec(tmp_path / "full"), source(0))
    fit(spec(tmp_path / "part", max_steps=3), source(0))
    resumed = fit(spec(tmp_path / "part", resume=str(tmp_path / "part")), source(99))
    a = load_training_state(full.final_checkpoint)
    b = load_training_state(resumed.final_checkpoint)
    for k in a.weights:
        torch.testing.assert_close(a.weights[k], b.weights[k], rtol=0, atol=0)
    sa, sb = a.extra["sources"]["0"], b.extra["sources"]["0"]
    assert sa["rng"] == sb["rng"] and torch.equal(sa["order"], sb["order"]) and sa["epochs"] == sb["epochs"]


def _wandb_history(run_dir):
    """The history rows of an offline W&B run, read from its ``.wandb`` file (a LevelDB-style log of
    protobuf records: 7-byte file header, 32 KiB blocks, 7-byte record headers). W&B's service may
    still be writing when ``finish()`` returns: wait (up to 60 s) for the run's exit record."""
    import time

    deadline = time.monotonic() + 60.0
    while True:
        rows, complete = _read_wandb_file(run_dir)
        if complete or time.monotonic() > deadline:
            assert complete, f"{run_dir}: no exit record after 60 s"
            return rows
        time.sleep(0.2)


def _read_wandb_file(run_dir):
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = list(run_dir.glob("*.wandb"))
    data = path.read_bytes()
    complete = False
    if data[:4] != b":W&B":
        return [], False
    pos, block, buf, rows = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(buf)
            except Exception:  # a record still being written
                return rows, False
            buf = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
            complete = complete or record.WhichOneof("record_type") == "exit"
    return rows, complete


def test_wandb_offline_logger(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    s = spec(tmp_path, max_steps=6, checkpoint_every=0, eval_every=3)
    s.logger = type(s.logger)(name="wandb", mode="offline", project="crystalstream-test")
    evaluator = local_evaluator(ModelFactory(TINY, 4, LENGTH),
                                   {"synthetic": ToySource(length=LENGTH, batch_size=16, seed=99).get(1.0)})
    result = fit(s, ToySource(length=LENGTH, seed=0), evaluator)
    assert result.step == 6
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert (tmp_path / "train.csv").exists()  # local metrics are written as well
    assert load_training_state(result.final_checkpoint).extra["wandb_id"]
    history = _wandb_history(runs[0])
    assert [r["eval/step"] for r in history if "eval/step" in r] == [3, 6]  # every evaluation is kept
    assert all("eval/synthetic/top1" in r for r in history if "eval/step" in r)
    assert [r["train/step"] for r in history if "train/step" in r] == [2, 4, 6]
    assert f"wandb sync {runs[0]}" in capsys.readouterr().out  # where the offline run went, and how to upload it


def test_wandb_keeps_evaluations_that_arrive_after_later_training_steps(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from trainer.metrics_log import MetricsLog

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    log = MetricsLog(tmp_path, {"name": "wandb", "mode": "offline", "project": "crystalstream-test"})
    log.log("train", 10, {"loss": 1.0})
    log.log("eval", 5, {"top1": 0.25})  # an evaluation of step 5 finishing after step 10 was logged
    log.log("train", 20, {"loss": 0.5})
    log.log("eval", 15, {"top1": 0.5})
    log.close()
    (run,) = list((tmp_path / "wandb").glob("offline-run-*"))
    history = _wandb_history(run)
    assert [(r["eval/step"], r["eval/top1"]) for r in history if "eval/step" in r] == [(5, 0.25), (15, 0.5)]
    assert [(r["train/step"], r["train/loss"]) for r in history if "train/step" in r] == [(10, 1.0), (20, 0.5)]


def test_cosine_schedule_warms_up_and_decays():
    from trainer.config import OptimizerConfig
    from trainer.optim import lr_factor

    cfg = OptimizerConfig(schedule="cosine", warmup_steps=10, total_steps=110, min_lr_factor=0.1)
    assert lr_factor(0, cfg, 100) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 100) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 100) == pytest.approx(0.55)
    assert lr_factor(110, cfg, 100) == pytest.approx(0.1)
    assert lr_factor(500, cfg, 100) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_steps"):
        lr_factor(0, OptimizerConfig(schedule="cosine"), 100)


def test_label_smoothing_raises_the_loss_of_confident_right_answers():
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    y = torch.tensor([0])
    v = torch.zeros(1)
    plain = compute_loss({"logits": logits}, y, v, None, 1.0)[0]
    smooth = compute_loss({"logits": logits}, y, v, None, 1.0, label_smoothing=0.1)[0]
    assert smooth > plain + 0.1


def test_init_weights_across_grid_steps_only_for_the_same_log_axis(tmp_path):
    """A log-Q model reads any 2-theta step over its range (pure patterns on the paper's 0.01 deg grid, then
    measured-looking ones on 0.02 deg); a model reading 2-theta points directly does not."""
    from trainer.checkpoint import CheckpointMeta, load_initial_weights, save_checkpoint

    log_q = {"name": "c", "arch": "convnet", "hidden": [16], "stage_channels": [8, 8], "stem_channels": 8,
             "norm_groups": 4, "pool": "global", "input_axis": "log_q", "axis_two_theta": [5.0, 90.0],
             "axis_points": 256}
    groups = [2, 14, 62, 225]
    for cfg, other_cfg, fits in ((log_q, log_q, True), (log_q, {**log_q, "axis_points": 512}, False),
                                 ({**log_q, "input_axis": "two_theta"}, {**log_q, "input_axis": "two_theta"}, False)):
        torch.manual_seed(0)
        first = build_model(cfg, 4, 851)
        path = save_checkpoint(tmp_path / f"c{len(list(tmp_path.iterdir()))}", first,
                               CheckpointMeta(space_groups=groups, model=cfg, input_length=851), include_rng=False)
        torch.manual_seed(1)
        second = build_model(other_cfg, 4, 1701)
        if fits:
            load_initial_weights(second, path, groups, 1701, other_cfg)
            for a, b in zip(first.state_dict().values(), second.state_dict().values()):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            x = torch.rand(2, 1, 851)
            fine = torch.nn.functional.interpolate(x, size=1701, mode="linear", align_corners=True)
            torch.testing.assert_close(first.eval()(x), second.eval()(fine), rtol=0.05, atol=0.05)
        else:
            with pytest.raises(ValueError, match="reads 851 points"):
                load_initial_weights(second, path, groups, 1701, other_cfg)
