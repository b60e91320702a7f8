"""Operations around a resumed run: the resume writes into the checkpoint's run folder, each step
appears once in the metric files, and the command line puts Hydra's files of a resume into the same
folder (torn files and partial checkpoints left by a kill: tests/test_faults_runs.py)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from trainer.__main__ import resume_overrides
from trainer.checkpoint import run_folder
from trainer.hooks import ModelFactory
from trainer.loop import RunSpec, fit
from trainer.metrics_log import read_records
from trainer.run import _output_dir, prepare_output_dir

from trainer_doubles import ToySource, local_evaluator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTH = 256
TINY = {"name": "tiny", "arch": "park", "hidden": [16], "channels": 4, "kernels": [20, 10, 5],
        "strides": [2, 2, 1], "volume_head": False}


def spec(out, **trainer):
    cfg = {"max_steps": 6, "log_every": 1, "checkpoint_every": 3, "eval_every": 2, "progress": False,
           "output_dir": str(out), "seed": 3, "keep_checkpoints": 5, **trainer}
    return RunSpec(model=TINY, optimizer={"lr": 3e-3}, trainer=cfg, space_groups=[2, 14, 62, 225],
                   input_length=LENGTH, simulation={}, volume_norm=None, config={})


def evaluator():
    batch = ToySource(length=LENGTH, batch_size=16, seed=99).get(1.0)
    return local_evaluator(ModelFactory(TINY, 4, LENGTH), {"synthetic": batch})


def csv_steps(path):
    with open(path, newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f)]


def test_a_resume_in_the_same_folder_logs_every_step_once(tmp_path):
    run = tmp_path / "run"
    fit(spec(run), ToySource(length=LENGTH, seed=0), evaluator())  # reached step 6, "killed" after it
    checkpoint = run / "checkpoints" / "step_0000003"
    assert run_folder(checkpoint) == run and run_folder(run) == run

    assert prepare_output_dir(run, str(checkpoint)) == 3
    assert [r["step"] for r in read_records(run / "metrics.jsonl") if r["kind"] == "train"] == [1, 2, 3]
    assert csv_steps(run / "train.csv") == [1, 2, 3] and csv_steps(run / "eval.csv") == [2]

    fit(spec(run, resume=str(checkpoint)), ToySource(length=LENGTH, seed=1), evaluator())
    records = read_records(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [2, 4, 6]
    assert csv_steps(run / "train.csv") == [1, 2, 3, 4, 5, 6]
    assert csv_steps(run / "eval.csv") == [2, 4, 6]


def test_a_resumed_fine_tune_keeps_where_it_began(tmp_path):
    """A run that started from earlier weights keeps that record when it is resumed (model cards follow it)."""
    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from trainer.run import setup_run

    first = tmp_path / "first"
    fit(spec(first, max_steps=3), ToySource(length=LENGTH, seed=0))
    tuned = tmp_path / "tuned"
    fit(replace(spec(tuned, max_steps=3, init_weights=str(first)), config={"trainer": {"init_weights": str(first)}}),
        ToySource(length=LENGTH, seed=1))
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"trainer.resume={tuned}"])
    setup = setup_run(cfg)
    assert setup.out_dir == tuned and setup.start_step == 3
    assert setup.trainer.init_weights == str(first) and cfg.trainer.init_weights == str(first)
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        plain = compose(config_name="train", overrides=[f"trainer.resume={first}"])
    assert setup_run(plain).trainer.init_weights is None     # a run that began from scratch


def test_the_output_folder_rule(tmp_path):
    run = tmp_path / "run"
    fit(spec(run, max_steps=3), ToySource(length=LENGTH, seed=0))

    def cfg(**trainer):
        return OmegaConf.create({"trainer": {"output_dir": None, "resume": None, **trainer}})

    assert _output_dir(cfg(resume=str(run))) == run  # a resume continues its run folder
    assert _output_dir(cfg(resume=str(run / "checkpoints" / "step_0000003"))) == run
    assert _output_dir(cfg(resume=str(run), output_dir=str(tmp_path / "other"))) == tmp_path / "other"
    fresh = _output_dir(cfg())
    assert fresh != run and fresh.parent.name == "train"

    export = tmp_path / "export"  # a checkpoint outside a run's checkpoints/ folder
    (run / "checkpoints" / "step_0000003").rename(export)
    assert run_folder(export) is None and _output_dir(cfg(resume=str(export))) != run


def test_the_command_line_puts_hydra_files_of_a_resume_into_the_run_folder(tmp_path):
    run = tmp_path / "run"
    fit(spec(run, max_steps=3), ToySource(length=LENGTH, seed=0))
    overrides = resume_overrides(["model=resnet10", f"trainer.resume={run / 'checkpoints'}"])
    assert overrides[0] == f"hydra.run.dir={run}"
    assert overrides[1].startswith("hydra.output_subdir=.hydra/resume_")
    assert resume_overrides(["trainer.max_steps=9"]) == []
    assert resume_overrides([f"trainer.resume={run}", f"trainer.output_dir={tmp_path / 'x'}"]) == []
    assert resume_overrides([f"trainer.resume={run}", "hydra.run.dir=elsewhere"]) == []
    assert resume_overrides(["-m", f"trainer.resume={run}"]) == []
    assert resume_overrides([f"trainer.resume={tmp_path / 'missing'}"]) == []
    spaced = tmp_path / "a run"
    fit(spec(spaced, max_steps=3), ToySource(length=LENGTH, seed=0))
    assert resume_overrides([f"trainer.resume={spaced}"])[0] == f"hydra.run.dir='{spaced}'"
