"""Growing a trained model: a deeper convnet (residual refine branches in every stage) that starts from the
weights of one without them computes exactly what it did, then trains its new branches."""
from __future__ import annotations

import pytest
import torch

from trainer.checkpoint import load_for_inference, load_training_state
from trainer.loop import RunSpec, fit
from trainer.models import build_model

from trainer_doubles import ToySource

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTH = 256
SHALLOW = {"name": "tiny_convnet", "arch": "convnet", "hidden": [16], "stage_channels": [8, 12, 16],
           "stem_channels": 8, "norm_groups": 4, "kernel_size": 5, "stem_kernel": 7, "stage_double": False}
DEEP = {**SHALLOW, "stage_double": True}


def spec(tmp_path, model, **trainer):
    cfg = {"max_steps": 3, "log_every": 1, "checkpoint_every": 0, "eval_every": 0, "progress": False,
           "output_dir": str(tmp_path), "seed": 3, **trainer}
    return RunSpec(model=model, optimizer={"lr": 3e-3}, trainer=cfg, space_groups=[2, 14, 62, 225],
                   input_length=LENGTH, simulation={"wavelength": 1.5406}, config={"note": "test"})


def test_grown_model_starts_as_the_checkpoint_and_trains_its_new_branches(tmp_path):
    first = fit(spec(tmp_path / "shallow", SHALLOW), ToySource(length=LENGTH, seed=0))
    grown = fit(spec(tmp_path / "grown", DEEP, max_steps=0, init_weights=str(tmp_path / "shallow"),
                     init_weights_grow=True), ToySource(length=LENGTH, seed=1))
    shallow_model, _ = load_for_inference(first.final_checkpoint)
    deep_model, _ = load_for_inference(grown.final_checkpoint)
    n_shallow = sum(p.numel() for p in shallow_model.parameters())
    assert sum(p.numel() for p in deep_model.parameters()) > n_shallow   # it did grow
    x = torch.rand(5, LENGTH)
    with torch.no_grad():
        torch.testing.assert_close(deep_model(x)["logits"], shallow_model(x)["logits"], rtol=1e-5, atol=1e-6)

    trained = fit(spec(tmp_path / "trained", DEEP, max_steps=3, init_weights=str(tmp_path / "shallow"),
                       init_weights_grow=True), ToySource(length=LENGTH, seed=1))
    weights = load_training_state(trained.final_checkpoint).weights
    branch_scales = [w for k, w in weights.items() if ".refine.1.weight" in k]
    assert len(branch_scales) == len(SHALLOW["stage_channels"])
    assert all(w.abs().max() > 0 for w in branch_scales)                 # the new branches learn


def test_growing_needs_the_flag_and_refuses_other_layers(tmp_path):
    fit(spec(tmp_path / "shallow", SHALLOW), ToySource(length=LENGTH, seed=0))
    with pytest.raises(ValueError, match="trainer.init_weights: the weights of .* do not fit"):
        fit(spec(tmp_path / "plain", DEEP, init_weights=str(tmp_path / "shallow")), ToySource(length=LENGTH, seed=1))
    wider = {**DEEP, "stage_channels": [8, 12, 24]}                      # not a branch: a reshaped layer
    with pytest.raises(ValueError, match="do not fit"):
        fit(spec(tmp_path / "wider", wider, init_weights=str(tmp_path / "shallow"), init_weights_grow=True),
            ToySource(length=LENGTH, seed=1))


def test_a_checkpoint_with_the_branches_loads_them_as_they_are(tmp_path):
    """Growing from a model that already has every branch starts nothing fresh."""
    from trainer.checkpoint import load_grown_state

    torch.manual_seed(0)
    source = build_model(DEEP, 4, LENGTH)
    target = build_model(DEEP, 4, LENGTH)
    assert load_grown_state(target, source.state_dict()) == []
    x = torch.rand(3, LENGTH)
    with torch.no_grad():
        torch.testing.assert_close(target(x)["logits"], source(x)["logits"], rtol=0, atol=0)
