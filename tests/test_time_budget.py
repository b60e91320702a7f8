"""``trainer.time_budget_s``: the run's length planned from the measured step rate, the cosine ending with it."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from trainer.loop import fit
from trainer.optim import make_optimizer, make_scheduler
from trainer.time_budget import TimeBudget, apply_plan

from test_training import LENGTH, spec
from trainer_doubles import ToySource

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plan_waits_for_the_probe_then_fits_the_rate_into_the_budget():
    clock = Clock()
    budget = TimeBudget(100.0, start_step=0, max_steps=10_000, probe_steps=10, clock=clock)
    clock.t = 5.0
    assert budget.plan(5) is None                 # start-up: no rate yet
    clock.t = 10.0
    assert budget.plan(10) is None                # the rate is measured from here
    clock.t = 20.0
    assert budget.plan(30) == 30 + 2 * 80         # 2 steps/s over the 80 s left
    clock.t = 40.0
    assert budget.plan(110) == 110 + int(100 / 30 * 60)  # re-planned from the longer measurement
    clock.t = 60.0
    assert budget.plan(200) is None               # past half the budget the plan stays
    clock.t = 100.0
    assert budget.plan(300) == 300                # spent: stop now


def test_plan_never_exceeds_max_steps_and_rejects_no_budget():
    clock = Clock()
    budget = TimeBudget(1000.0, start_step=50, max_steps=200, probe_steps=10, clock=clock)
    budget.plan(60)
    clock.t = 1.0
    assert budget.plan(80) == 200
    with pytest.raises(ValueError, match="time_budget_s"):
        TimeBudget(0.0, 0, 10)


def test_apply_plan_moves_the_cosine_end_and_the_current_rate():
    model = torch.nn.Linear(2, 2)
    ocfg = {"name": "adamw", "lr": 1e-3, "schedule": "cosine", "warmup_steps": 0, "total_steps": 1000,
            "min_lr_factor": 0.0}
    opt = make_optimizer(model.parameters(), ocfg)
    sched = make_scheduler(opt, ocfg, 900)
    for _ in range(50):
        opt.step()
        sched.step()
    before = opt.param_groups[0]["lr"]
    tcfg = type("T", (), {"max_steps": 1000, "batches_per_epoch": 900})()
    config = {"trainer": {"max_steps": 1000}, "optimizer": dict(ocfg)}
    new = apply_plan(100, tcfg, ocfg, sched, opt, config)
    assert new.total_steps == 100 and tcfg.max_steps == 100
    assert config["trainer"]["max_steps"] == 100 and config["optimizer"]["total_steps"] == 100
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)   # half-way through the new cosine
    assert opt.param_groups[0]["lr"] < before
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # and it ends with the plan


def test_a_budgeted_run_ends_by_itself_with_its_cosine_finished(tmp_path):
    cosine = {"lr": 3e-3, "schedule": "cosine", "warmup_steps": 2, "total_steps": 10**6, "min_lr_factor": 0.01}
    run = replace(spec(tmp_path, max_steps=10**6, time_budget_s=4.0, checkpoint_every=0, eval_every=0,
                       log_every=1), optimizer=cosine, config={"optimizer": dict(cosine), "trainer": {}})
    result = fit(run, ToySource(length=LENGTH, seed=0))
    assert 60 < result.step < 10**6
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if r["kind"] == "train"]
    assert lrs[-1] < 0.05 * max(lrs)              # decayed to (near) its floor when the budget ended
    meta = json.loads((tmp_path / "checkpoints" / f"step_{result.step:07d}" / "meta.json").read_text())
    assert meta["config"]["trainer"]["max_steps"] == result.step
    assert meta["config"]["optimizer"]["total_steps"] == result.step
