"""A moving average of the weights (``trainer.ema_decay``): the average follows the EMA update, checkpoints
and evaluators get it, the optimizer's own weights travel in the training state, and a resumed run continues
both exactly."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.checkpoint import load_for_inference, load_training_state
from trainer.config import TrainerConfig
from trainer.ema import WeightAverage
from trainer.loop import fit

from test_training import LENGTH, spec
from trainer_doubles import ToySource, local_evaluator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_average_follows_the_update_rule():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.75)
    history = []
    for value in (1.0, 5.0, -3.0):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        model.train()(torch.randn(4, 3))  # moves the norm's running statistics (buffers are averaged too)
        history.append({k: v.clone() for k, v in model.state_dict().items()})
        average.update(model)
    expected = history[0]["0.weight"]  # the first update copies
    for later in history[1:]:
        expected = 0.75 * expected + 0.25 * later["0.weight"]
    torch.testing.assert_close(average.module.state_dict()["0.weight"], expected)
    mean = history[0]["1.running_mean"]
    for later in history[1:]:
        mean = 0.75 * mean + 0.25 * later["1.running_mean"]
    torch.testing.assert_close(average.module.state_dict()["1.running_mean"], mean)
    assert average.steps == 3


def test_checkpoints_and_evaluations_hold_the_average(tmp_path):
    from trainer.hooks import ModelFactory
    from test_training import TINY

    seen = []

    class Recording:
        def __init__(self, hook):
            self.hook = hook

        def submit(self, weights, step):
            seen.append({k: v.clone() for k, v in weights.items()})
            self.hook.submit(weights, step)

        def __getattr__(self, name):
            return getattr(self.hook, name)

    synthetic = ToySource(length=LENGTH, batch_size=16, seed=9).get(1.0)
    evaluator = Recording(local_evaluator(ModelFactory(TINY, 4, LENGTH), {"synthetic": synthetic},
                                          gap_reference="synthetic"))
    result = fit(spec(tmp_path, ema_decay=0.9, eval_every=6), ToySource(length=LENGTH, seed=0), evaluator)
    state = load_training_state(result.final_checkpoint)
    assert state.extra["ema_steps"] == 6
    trained = state.extra["training_weights"]
    assert trained.keys() == state.weights.keys()
    assert any(not torch.equal(trained[k], state.weights[k]) for k in trained)  # the average is not the last step
    for k, v in seen[-1].items():  # the evaluator scored the average
        torch.testing.assert_close(v, state.weights[k], rtol=0, atol=0)
    model, _ = load_for_inference(result.final_checkpoint)  # inference reads the average
    torch.testing.assert_close(model.state_dict()[k], state.weights[k], rtol=0, atol=0)


def test_a_resumed_run_continues_the_average_and_the_weights_exactly(tmp_path):
    full = fit(spec(tmp_path / "full", ema_decay=0.8), ToySource(length=LENGTH, seed=0))
    fit(spec(tmp_path / "part", ema_decay=0.8, max_steps=3), ToySource(length=LENGTH, seed=0))
    resumed = fit(spec(tmp_path / "part", ema_decay=0.8, resume=str(tmp_path / "part" / "checkpoints" / "step_0000003")),
                  ToySource(length=LENGTH, seed=12345))
    a, b = load_training_state(full.final_checkpoint), load_training_state(resumed.final_checkpoint)
    for k in a.weights:
        torch.testing.assert_close(a.weights[k], b.weights[k], rtol=0, atol=0)
        torch.testing.assert_close(a.extra["training_weights"][k], b.extra["training_weights"][k], rtol=0, atol=0)
    assert a.extra["ema_steps"] == b.extra["ema_steps"] == 6


def test_without_a_decay_checkpoints_hold_the_trained_weights(tmp_path):
    result = fit(spec(tmp_path), ToySource(length=LENGTH, seed=0))
    assert "training_weights" not in load_training_state(result.final_checkpoint).extra


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 2.0])
def test_an_impossible_decay_names_the_key(decay):
    with pytest.raises(ValueError, match="trainer.ema_decay"):
        TrainerConfig(ema_decay=decay).validate()
