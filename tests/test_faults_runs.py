"""Fault injection on running jobs: a generation actor killed while the trainer trains (the run goes on,
the actor is replaced), a dead evaluator actor (replaced, its job resubmitted), ``python -m trainer``
killed with SIGKILL and resumed into the same folder (each step logged once, the checkpoint loads),
torn last lines of the metric files and partial checkpoints left by a kill.

Actors run on a real local Ray instance and the trainer in a real subprocess."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.checkpoint import load_for_inference, remove_partial_checkpoints
from trainer.loop import fit
from trainer.metrics_log import MetricsLog, read_records, truncate_metrics
from trainer.run import prepare_output_dir

from test_resume_ops import LENGTH, csv_steps, spec
from trainer_doubles import ToySource

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("one_torch_thread")]
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- actors


class KillingSource:
    """A batch source that SIGKILLs generation actor 0 of its Ray stream just before get() number ``kill_at``."""

    def __init__(self, stream, kill_at: int):
        self.stream, self.kill_at, self.calls, self.killed_pid = stream, kill_at, 0, None

    def get(self, timeout: float):
        import ray

        self.calls += 1
        if self.calls == self.kill_at:
            self.killed_pid = ray.get(self.stream.slots[0].actor.getpid.remote())
            os.kill(self.killed_pid, signal.SIGKILL)
        return self.stream.get(timeout)

    def metrics(self) -> dict[str, float]:
        return self.stream.metrics()

    def close(self) -> None:
        self.stream.close()


def test_training_goes_on_when_a_generation_actor_is_killed(ray_local, tmp_path):
    from cluster.config import ClusterConfig
    from cluster.producer import NoiseProducerFactory
    from cluster.stream import RayStream

    factory = NoiseProducerFactory(batch_size=8, n_points=LENGTH, n_classes=4)
    cfg = ClusterConfig(num_actors=1, batch_size=8, queue_size=2, poll_s=0.2, put_timeout_s=0.2,
                        get_timeout_s=30.0, seed=7)
    run = tmp_path / "run"
    with RayStream(factory, cfg) as stream:
        source = KillingSource(stream, kill_at=3)
        # 9 batches after the kill: more than the queue (2) and the prefetch buffer (2) can hold from the
        # dead actor, so the stream must notice the death and replace it for training to finish
        result = fit(spec(run, max_steps=12, eval_every=100, checkpoint_every=6), source)
        assert source.killed_pid is not None
        assert stream.replacements >= 1 and stream.slots[0].incarnation >= 1
        assert "actor 0.0" in stream.deaths[0]
        new_pid = ray_local.get(stream.slots[0].actor.getpid.remote())
    assert new_pid != source.killed_pid
    assert [r["step"] for r in read_records(run / "metrics.jsonl") if r["kind"] == "train"] == list(range(1, 13))
    assert result.final_checkpoint is not None and load_for_inference(run)[1].step == 12


def test_dead_evaluator_is_replaced_and_the_job_resubmitted(ray_local, caplog):
    from cluster.evaluators import Evaluator
    from test_evaluation import FACTORY, IDENTITY, SETS, SPACE_GROUPS, _cfg

    ev = Evaluator(FACTORY, SETS, SPACE_GROUPS, _cfg())
    try:
        pid = ray_local.get(ev.actors[0].getpid.remote())
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        with caplog.at_level(logging.WARNING, logger="cluster.evaluators"):
            ev.submit(IDENTITY, 5)          # dispatched to the dead actor
            results = ev.wait(timeout=60)
        assert [r["step"] for r in results] == [5]
        assert ev.replacements == 1
        assert "evaluator died during step 5" in caplog.text and "resubmitting" in caplog.text
        assert ray_local.get(ev.actors[0].getpid.remote()) != pid
        assert results[0]["metrics"]["test_spglib/top1"] == pytest.approx(0.5)
    finally:
        ev.close()


# ------------------------------------------------------------------------ a killed trainer process


@pytest.fixture(scope="module")
def cif_folder(tmp_path_factory) -> Path:
    """Seven cubic textbook crystals: a database that parses in a second (no tetragonal crystals: too
    few for a lattice KDE)."""
    from small_crystals import write_small_cifs

    folder = write_small_cifs(tmp_path_factory.mktemp("faults_cifs"))
    for name in ("TiO2", "SnO2"):
        (folder / f"{name}.cif").unlink()
    return folder


def trainer_command(cif_folder: Path, *overrides: str) -> list[str]:
    # seed 4 of a random 80:20 split keeps 225, 221 and 216 on the statistics side with >= 2 crystals each
    return [sys.executable, "-m", "trainer", "database=cif", f"database.path={cif_folder}", "database.workers=1",
            "split=random", "split.statistics_fraction=0.8", "split.seed=4", "statistics.min_crystals_per_class=2",
            "cluster=local", "cluster.batch_size=8", "evaluation=none", "model=parkcnn_small", "model.channels=4",
            "model.hidden=[16]",
            "trainer.log_every=1", "trainer.checkpoint_every=1", "trainer.progress=false", *overrides]


def latest_step(run: Path) -> int:
    """The step of the run's newest complete checkpoint (0 before the first)."""
    try:
        return int(json.loads((run / "checkpoints" / "latest.json").read_text())["step"])
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_a_killed_trainer_resumes_into_its_folder_with_each_step_once(cif_folder, tmp_path):
    env = {**os.environ, "CRYSTALSTREAM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    run = tmp_path / "run"
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(trainer_command(cif_folder, f"trainer.output_dir={run}", "trainer.max_steps=100000"),
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while latest_step(run) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert latest_step(run) >= 3, "no third checkpoint within 240 s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)   # the kill: no chance to flush or clean up
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_step(run)
    # what a kill during a write leaves behind: a torn metrics line and a partial checkpoint folder
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 99999, "lo')
    partial = run / "checkpoints" / f".step_{killed_at + 1:07d}.0badc0de.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half a tensor")

    target = killed_at + 2
    cache = tmp_path / "cache"

    def outside_the_run():
        return sorted(p for p in tmp_path.rglob("*") if not {run, cache} & {p, *p.parents})

    outside = outside_the_run()
    resumed = subprocess.run(trainer_command(cif_folder, f"trainer.resume={run}", f"trainer.max_steps={target}"),
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert output.strip().splitlines()[-1] == f"Final checkpoint: {run / 'checkpoints' / f'step_{target:07d}'}"
    assert "dropped a torn last line" in output and "removed partial checkpoint" in output
    assert not partial.exists()
    # the same folder: nothing new outside the run (no fresh run folder), Hydra's files of the resume inside it
    assert outside_the_run() == outside
    assert len(list((run / ".hydra").glob("resume_*"))) == 1
    records = read_records(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, target + 1))
    assert csv_steps(run / "train.csv") == list(range(1, target + 1))
    model, meta = load_for_inference(run)
    assert meta.step == target and meta.final and meta.n_classes == 3


# ------------------------------------------------------------------- torn files and partial checkpoints


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    jsonl = tmp_path / "metrics.jsonl"
    good = [{"kind": "train", "step": s, "loss": 1.0 / s} for s in (1, 2, 3)]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"kind": "train", "step": 4, "lo')
    with caplog.at_level(logging.WARNING, logger="trainer.metrics_log"):
        assert read_records(jsonl) == good
    assert "torn last line" in caplog.text

    # a resume truncates without a JSONDecodeError, and later appends start on a fresh line
    truncate_metrics(tmp_path, 2)
    assert read_records(jsonl) == good[:2]
    jsonl.write_text(jsonl.read_text() + '{"kind": "train", "st')
    log = MetricsLog(tmp_path, {"name": "none"})
    log.log("train", 3, {"loss": 0.5})
    assert [r["step"] for r in read_records(jsonl)] == [1, 2, 3]
    assert jsonl.read_text().endswith("\n")


def test_a_torn_csv_row_is_dropped_on_resume(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "train", "step": s, "loss": 0.1}) + "\n" for s in (1, 2, 3)))
    (tmp_path / "train.csv").write_text("step,loss\n1,0.1\n2,0.1\n3,0.1\n4,0.")
    truncate_metrics(tmp_path, 3)
    assert csv_steps(tmp_path / "train.csv") == [1, 2, 3]
    (tmp_path / "other.csv").write_text("step,x\n9,1\n")  # not a metrics kind: left alone
    truncate_metrics(tmp_path, 1)
    assert csv_steps(tmp_path / "train.csv") == [1] and csv_steps(tmp_path / "other.csv") == [9]


def test_corruption_before_the_last_line_names_file_and_line(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text('{"kind": "train", "step": 1}\nnot json\n{"kind": "train", "step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2"):
        read_records(jsonl)


def test_partial_checkpoints_are_removed_at_start(tmp_path, caplog):
    run = tmp_path / "run"
    fit(spec(run, max_steps=3), ToySource(length=LENGTH, seed=0))
    ckpts = run / "checkpoints"
    torn = ckpts / ".step_0000006.1a2b3c4d.tmp"
    old = ckpts / ".step_0000003.5e6f7a8b.old"
    for d in (torn, old):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"partial")
    with caplog.at_level(logging.INFO, logger="trainer.checkpoint"):
        prepare_output_dir(run)
    assert not torn.exists() and not old.exists()
    assert (ckpts / "step_0000003" / "meta.json").exists() and (ckpts / "latest.json").exists()
    assert "removed partial checkpoint" in caplog.text and torn.name in caplog.text
    assert remove_partial_checkpoints(tmp_path / "absent") == []
