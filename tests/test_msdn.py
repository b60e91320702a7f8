"""Multistream DenseNet: size against the paper, weight sharing, the spot baseline, a few training steps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from trainer.models import build_model, count_parameters
from trainer.models.msdn import MultiStreamBackbone

CONF = Path(__file__).resolve().parents[1] / "conf"
SMALL = {"name": "msdn", "arch": "msdn", "stem_channels": 8, "growth_rate": 4, "block_layers": [1, 1, 1, 1],
         "hidden": [], "norm_groups": 0}


def test_msdn_matches_the_papers_table_and_size():
    model = build_model(OmegaConf.load(CONF / "model" / "msdn.yaml"), 72, 0)
    assert model.backbone.stream.out_features == 960           # F_R, F_G, F_B: 1 x 1 x 960
    assert model.backbone.out_features == 3 * 960
    n_backbone = count_parameters(model.backbone)
    assert n_backbone == 1_505_640                              # the paper: 1.54 M
    assert abs(n_backbone - 1.54e6) / 1.54e6 < 0.05
    assert count_parameters(model) == n_backbone + 3 * 960 * 72 + 72
    dense = [m for m in model.backbone.modules() if type(m).__name__ == "DenseLayer"]
    assert len(dense) == 3 + 6 + 8 + 6


def test_streams_share_weights():
    torch.manual_seed(0)
    backbone = MultiStreamBackbone(3, stem_channels=8, growth_rate=4, block_layers=[1, 1, 1, 1]).eval()
    x = torch.rand(2, 3, 32, 32)
    f = backbone(x).reshape(2, 3, -1)
    g = backbone(x[:, [2, 0, 1]]).reshape(2, 3, -1)   # permuting the axes permutes the feature blocks
    torch.testing.assert_close(g, f[:, [2, 0, 1]])
    one = backbone.stream(x[:, 1:2])                    # each block is the shared stream on its own channel
    torch.testing.assert_close(f[:, 1], one)


def test_single_stream_baseline_and_input_checks():
    model = build_model({**SMALL, "streams": 1}, 7, 0)
    assert model.backbone.stream.body[0].in_channels == 3
    assert model(torch.rand(2, 3, 40, 48))["logits"].shape == (2, 7)
    assert build_model(OmegaConf.load(CONF / "model" / "msdn_single.yaml"), 5, 0).backbone.streams == 1
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.rand(2, 100))
    with pytest.raises(ValueError, match="streams"):
        build_model({**SMALL, "streams": 2}, 7, 0)


def test_uint8_input_scale():
    torch.manual_seed(0)
    a = build_model({**SMALL, "input_scale": 1 / 255}, 4, 0).eval()
    b = build_model(SMALL, 4, 0).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 256, (2, 3, 32, 32)).float()
    torch.testing.assert_close(a(x)["logits"], b(x / 255)["logits"])


@pytest.mark.slow
def test_msdn_trains_a_few_steps_on_the_zone_axis_stream(tmp_path):
    from cluster.sources import make_source
    from generator.pipeline import default_statistics
    from trainer.loop import RunSpec, fit

    stats = default_statistics()
    source = make_source({"source": "local", "batch_size": 4, "dtype": "uint8", "seed": 0}, stats,
                         simulation_cfg={"kind": "zone_axis", "image_size": [32, 32], "g_max": 0.6})
    spec = RunSpec(model={**SMALL, "input_scale": 1 / 255}, optimizer={"name": "adam", "lr": 1e-3},
                   trainer={"max_steps": 3, "log_every": 1, "output_dir": str(tmp_path), "progress": False,
                            "device": "cpu", "checkpoint_every": 0},
                   space_groups=[int(s) for s in stats.space_groups], input_length=3 * 32 * 32)
    result = fit(spec, source, None)
    assert result.step == 3 and result.skipped_batches == 0
    assert np.isfinite(result.train_metrics["loss"])
    assert result.final_checkpoint is not None and Path(result.final_checkpoint).exists()
