"""The log-Q front end: peak areas and positions kept, a cell's size becomes a shift, and the models built on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.models import build_model
from trainer.models.log_axis import LogQResample, log_axis_edges

WAVELENGTH = 1.5406
N = 4251  # 5..90 deg in 0.02 deg steps
GRID = np.linspace(5.0, 90.0, N)


def _pattern(d_spacings, width_deg: float = 0.05) -> np.ndarray:
    """Unit Gaussian peaks at the 2-theta of each d-spacing (Cu K-alpha1), on GRID."""
    y = np.zeros(N)
    for d in d_spacings:
        s = WAVELENGTH / (2 * d)
        if s < 1:
            y += np.exp(-0.5 * ((GRID - np.degrees(2 * np.arcsin(s))) / width_deg) ** 2)
    return y


def _resample(front: LogQResample, y: np.ndarray) -> np.ndarray:
    return front(torch.tensor(y, dtype=torch.float32)[None, None])[0, 0].numpy()


@pytest.mark.parametrize("centre", [12.0, 38.5, 61.25, 87.0])
def test_peak_area_and_position_are_kept(centre):
    front = LogQResample(N, 5.0, 90.0, 2048)
    y = np.exp(-0.5 * ((GRID - centre) / 0.03) ** 2)
    out = _resample(front, y)
    edges = log_axis_edges(5.0, 90.0, 2048)
    area_in = np.trapezoid(y, GRID)
    area_out = float((out * np.diff(edges)).sum())
    assert area_out == pytest.approx(area_in, rel=1e-3)
    peak_bin = int(out.argmax())
    assert edges[peak_bin] - 0.05 <= centre <= edges[peak_bin + 1] + 0.05


def test_a_scaled_cell_is_a_shift():
    # cubic cell, a = 4 A and 4.4 A: every d-spacing scales by 1.1, so on the ln Q axis every peak moves
    # by ln(1.1) / (bin width in ln sin theta) bins, whatever its 2-theta
    points = 4096
    front = LogQResample(N, 5.0, 90.0, points)
    hkl2 = np.array([1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12])
    small_2theta, large_2theta = _pattern(4.0 / np.sqrt(hkl2), 0.02), _pattern(4.4 / np.sqrt(hkl2), 0.02)
    small, large = _resample(front, small_2theta), _resample(front, large_2theta)
    du = np.diff(np.log(np.sin(np.radians(log_axis_edges(5.0, 90.0, points) / 2))))[0]
    expected = np.log(1.1) / du
    lags = np.arange(-400, 1)
    score = [np.dot(small[max(0, -k):points - max(0, k)], large[max(0, k):points - max(0, -k)]) for k in lags]
    assert abs(lags[int(np.argmax(score))] + expected) <= 1.0
    assert np.corrcoef(np.roll(small, -int(round(expected))), large)[0, 1] > 0.9
    # on the 2-theta axis itself no single shift lines the peaks up
    best = max(np.corrcoef(np.roll(small_2theta, -k), large_2theta)[0, 1] for k in range(0, 1500, 3))
    assert best < 0.5


def test_bad_ranges_and_lengths_are_refused():
    with pytest.raises(ValueError, match="2-theta range"):
        LogQResample(N, 90.0, 5.0, 1024)
    with pytest.raises(ValueError, match="points"):
        LogQResample(N, 5.0, 90.0, 1)
    front = LogQResample(N, 5.0, 90.0, 1024)
    with pytest.raises(ValueError, match=f"expected {N} input points"):
        front(torch.zeros(1, 1, N - 1))


CONVNET = {"name": "convnet", "arch": "convnet", "hidden": [64], "stage_channels": [8, 16, 16, 24], "kernel_size": 9,
           "norm_groups": 4, "stem_channels": 8, "stem_kernel": 15, "stem_stride": 2}


def test_log_q_model_trains_and_keeps_no_front_end_state():
    model = build_model({**CONVNET, "input_axis": "log_q", "axis_two_theta": [5.0, 90.0], "axis_points": 1024,
                         "pool": "global"}, 7, N)
    assert not any(k.startswith("front") for k in model.state_dict())   # rebuilt from the config, not stored
    assert model.backbone.out_features == 2 * 24
    x, y = torch.rand(4, N), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x)["logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_global_pool_is_shift_invariant_and_unknown_options_fail():
    model = build_model({**CONVNET, "pool": "global"}, 7, 1024).eval()
    x = torch.zeros(1, 1024)
    x[0, 300:310] = 1.0
    with torch.no_grad():
        a, b = model(x)["logits"], model(torch.roll(x, 64, dims=1))["logits"]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)   # shifts by a multiple of the total stride
    with pytest.raises(ValueError, match="input_axis"):
        build_model({**CONVNET, "input_axis": "q"}, 7, N)
    with pytest.raises(ValueError, match="pool"):
        build_model({**CONVNET, "pool": "avg"}, 7, N)


def test_a_log_q_model_takes_or_checks_the_simulated_grid():
    from simulator.representation import make_representation
    from trainer.models.log_axis import fit_log_axis

    two_theta = make_representation({"grid": {"two_theta_min": 10.0, "two_theta_max": 80.0, "step": 0.02}})
    log_q = {**CONVNET, "input_axis": "log_q", "pool": "global", "axis_two_theta": None}
    fitted = fit_log_axis(log_q, two_theta)
    assert fitted["axis_two_theta"] == [10.0, 80.0]
    assert build_model(fitted, 7, len(two_theta.grid)).front.input_length == len(two_theta.grid)
    assert fit_log_axis({**log_q, "axis_two_theta": [10.0, 80.0]}, two_theta)["axis_two_theta"] == [10.0, 80.0]
    assert fit_log_axis(CONVNET, make_representation({"kind": "ideal"})) == CONVNET   # a 2-theta model: unchanged
    with pytest.raises(ValueError, match="model.axis_two_theta"):
        fit_log_axis({**log_q, "axis_two_theta": [5.0, 90.0]}, two_theta)
    with pytest.raises(ValueError, match="resamples 2-theta"):
        fit_log_axis(log_q, make_representation({"kind": "ideal"}))
    with pytest.raises(ValueError, match="model.axis_two_theta"):
        build_model(log_q, 7, len(two_theta.grid))                                   # nothing to take it from


def test_a_log_q_checkpoint_reloads_with_its_front_end(tmp_path):
    from trainer.checkpoint import CheckpointMeta, load_for_inference, save_checkpoint

    model_cfg = {**CONVNET, "input_axis": "log_q", "axis_two_theta": [5.0, 90.0], "axis_points": 1024, "pool": "global"}
    model = build_model(model_cfg, 7, N).eval()
    meta = CheckpointMeta(space_groups=list(range(1, 8)), model=model_cfg, input_length=N,
                          simulation={"grid": {"two_theta_min": 5.0, "two_theta_max": 90.0, "step": 0.02}},
                          step=1, samples_seen=1)
    path = save_checkpoint(tmp_path / "step_000001", model, meta, include_rng=False)
    loaded, loaded_meta = load_for_inference(path)
    assert loaded_meta.model["input_axis"] == "log_q" and loaded.front is not None
    x = torch.rand(3, N)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["logits"], model(x)["logits"])
