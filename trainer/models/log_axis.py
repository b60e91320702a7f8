"""A fixed front end that puts a 2-theta pattern on a logarithmic scattering-vector axis.

Why: on an axis uniform in ln Q (Q = 2 sin(theta) / lambda = 1/d), scaling a crystal's cell by a
factor s moves every peak by the same distance -ln s; only the cell's shape (axis ratios, angles) and
its extinctions change the relative positions. A convolutional network with global pooling on that
axis is therefore invariant to the overall cell size by construction, the largest nuisance of the
space-group task, instead of having to learn every size from examples. The wavelength is a constant
shift on this axis too, so the front end needs only the 2-theta range of its input.

The resampling averages the piecewise-linear input over each output bin (exactly, through the running
integral), so narrow high-angle peaks that fall between output points keep their area; at low angles,
where one input step spans several output bins, it interpolates linearly. No parameters: the indices
are rebuilt from the config, and checkpoints hold nothing of it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def log_axis_edges(two_theta_min: float, two_theta_max: float, points: int) -> np.ndarray:
    """(points + 1,) output bin edges in 2-theta degrees, uniform in ln sin(theta) over the input range."""
    if not 0.0 < two_theta_min < two_theta_max < 180.0:
        raise ValueError(f"log axis: the 2-theta range must satisfy 0 < min < max < 180 deg, "
                         f"got {two_theta_min}..{two_theta_max}")
    if points < 2:
        raise ValueError(f"log axis: points must be >= 2, got {points}")
    u = np.linspace(np.log(np.sin(np.radians(two_theta_min / 2))), np.log(np.sin(np.radians(two_theta_max / 2))),
                    points + 1)
    return np.degrees(2.0 * np.arcsin(np.exp(u)))


def fit_log_axis(model_cfg: dict, representation) -> dict:
    """``model_cfg`` (a plain dict) with ``axis_two_theta`` set to the 2-theta range of ``representation``
    when it is null, so checkpoints carry the range; a ``ValueError`` naming ``model.input_axis`` /
    ``model.axis_two_theta`` when a log-Q model does not fit the representation (it needs 2-theta input
    over exactly its range). Other models pass unchanged."""
    if model_cfg.get("input_axis", "two_theta") != "log_q":
        return model_cfg
    if representation.kind != "two_theta":
        raise ValueError(f"model.input_axis=log_q resamples 2-theta patterns; the simulation's representation is "
                         f"{representation.kind!r}")
    grid = representation.grid
    ends = [float(grid[0]), float(grid[-1])]
    if model_cfg.get("axis_two_theta") is None:
        return {**model_cfg, "axis_two_theta": ends}
    lo, hi = (float(v) for v in model_cfg["axis_two_theta"])
    if abs(lo - ends[0]) > 1e-6 or abs(hi - ends[1]) > 1e-6:
        raise ValueError(f"model.axis_two_theta is [{lo:g}, {hi:g}] but the simulation grid spans "
                         f"{ends[0]:g}..{ends[1]:g} deg; set it to the grid's ends, or null to take them")
    return model_cfg


class LogQResample(nn.Module):
    """(B, C, N) patterns on a uniform 2-theta grid ``two_theta_min..two_theta_max`` (N points, ends
    included) -> (B, C, points) bin averages on a uniform ln Q grid over the same range."""

    def __init__(self, input_length: int, two_theta_min: float, two_theta_max: float, points: int):
        super().__init__()
        if input_length < 2:
            raise ValueError(f"log axis: the input needs >= 2 points, got {input_length}")
        edges = log_axis_edges(two_theta_min, two_theta_max, points)
        # fractional input index of every edge (input point i sits at two_theta_min + i * step)
        f = (edges - two_theta_min) / (two_theta_max - two_theta_min) * (input_length - 1)
        f = np.clip(f, 0.0, input_length - 1 - 1e-9)
        i = np.floor(f).astype(np.int64)
        self.input_length = int(input_length)
        self.points = int(points)
        self.register_buffer("index", torch.from_numpy(i), persistent=False)
        self.register_buffer("frac", torch.from_numpy(f - i).float(), persistent=False)
        self.register_buffer("width", torch.from_numpy(np.diff(f)).float().clamp_min(1e-6), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_length:
            raise ValueError(f"log axis: expected {self.input_length} input points, got {x.shape[-1]}")
        x = x.float()
        left, right = x[..., :-1], x[..., 1:]
        # running integral of the linear interpolant at every input point (trapezoids), C[0] = 0
        area = torch.cumsum(0.5 * (left + right), dim=-1)
        running = torch.cat([torch.zeros_like(x[..., :1]), area], dim=-1)
        i, t = self.index, self.frac
        x0, x1 = x[..., i], x[..., i + 1]
        at_edges = running[..., i] + x0 * t + (x1 - x0) * (0.5 * t * t)
        return (at_edges[..., 1:] - at_edges[..., :-1]) / self.width
