"""Model output shapes and parameter counts (device-parametrised)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from trainer.models import build_model, count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Paper (Schopmans et al. 2023, Table 1) for 145 classes and 8501 points; parkcnn_small worked
# out from the same layer sizes (dense 700-70).
PAPER_COUNTS = {
    "parkcnn_small": 1_052_305,
    "parkcnn_medium": 4_246_797,
    "parkcnn_big": 4_959_585,
    "resnet10": 9_395_025,
    "resnet50": 41_362_385,
    "resnet101": 60_354_513,
}


def model_cfg(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    return OmegaConf.merge(cfg, overrides)


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_parameter_count_matches_paper(name):
    with torch.device("meta"):
        model = build_model(model_cfg(name), 145, 8501)
    n = count_parameters(model)
    print(f"{name}: {n:,} parameters")
    assert abs(n - PAPER_COUNTS[name]) / PAPER_COUNTS[name] < 0.02


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["parkcnn_small", "parkcnn_medium", "resnet10", "resnet50"])
@pytest.mark.parametrize("volume_head", [False, True])
def test_output_shapes(name, device, volume_head):
    torch.manual_seed(0)
    model = build_model(model_cfg(name, volume_head=volume_head), 7, 2048).to(device)
    x = torch.rand(3, 2048, device=device)
    out = model(x)
    assert out["logits"].shape == (3, 7)
    assert out["logits"].device.type == device
    assert torch.isfinite(out["logits"]).all()
    if volume_head:
        assert out["log_volume"].shape == (3,)
    else:
        assert "log_volume" not in out


@pytest.mark.parametrize("device", DEVICES)
def test_float16_patterns_and_batch_independence(device):
    """Patterns arrive as float16; GroupNorm keeps samples independent of their batch mates."""
    torch.manual_seed(0)
    model = build_model(model_cfg("resnet10"), 5, 1024).to(device).eval()
    x = torch.rand(4, 1024, device=device)
    with torch.no_grad():
        full = model(x.half().float())["logits"]
        single = model(x[:1].half().float())["logits"]
    torch.testing.assert_close(full[:1], single, rtol=1e-4, atol=1e-4)


def test_unknown_arch_and_short_input_raise():
    with pytest.raises(ValueError, match="arch"):
        build_model({"arch": "transformer"}, 5, 2048)
    with pytest.raises(ValueError, match="too short"):
        build_model(model_cfg("parkcnn_big"), 5, 100)
    with pytest.raises(Exception):
        build_model({"arch": "park", "not_a_field": 1}, 5, 2048)


def test_dropout_only_when_configured():
    plain = build_model(model_cfg("parkcnn_medium"), 5, 2048)
    dropped = build_model(model_cfg("parkcnn_medium", dropout_conv=0.3, dropout_dense=0.5), 5, 2048)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropped.modules()) == 5
    assert count_parameters(plain) == count_parameters(dropped)


def test_convnet_shapes_norm_and_single_pattern():
    """The compact CNN: (B, N) -> logits, batch-independent outputs with GroupNorm, BatchNorm selectable."""
    import torch

    from trainer.models import build_model

    cfg = {"name": "convnet", "arch": "convnet", "hidden": [64], "stage_channels": [8, 16, 16], "kernel_size": 5,
           "stem_channels": 8, "stem_kernel": 7, "stem_stride": 2, "norm_groups": 4}
    model = build_model(cfg, 7, 500).eval()
    x = torch.rand(3, 500)
    out = model(x)["logits"]
    assert out.shape == (3, 7)
    # per-sample normalisation: a pattern's output does not depend on the rest of the batch
    torch.testing.assert_close(model(x[:1])["logits"], out[:1], atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    bn = build_model({**cfg, "norm_groups": 0}, 7, 500)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in bn.modules())
    # peak positions matter: the features are flattened, not pooled, so their number follows the input length
    assert model.backbone.out_features == 16 * model.backbone.out_length and model.backbone.out_length == 32


def test_registry_names_every_backbone_and_builds_registered_ones():
    """build_model looks arch up in one table: the error lists it, and a newly registered backbone is built."""
    from trainer.models import known_backbones, register_backbone
    from trainer.models import registry

    assert {"park", "resnet", "convnet", "msdn"} <= set(known_backbones())
    with pytest.raises(ValueError) as err:
        build_model({"arch": "transformer"}, 5, 2048)
    assert all(name in str(err.value) for name in known_backbones())
    with pytest.raises(ValueError, match="in_channels"):
        build_model(model_cfg("parkcnn_small"), 5, 2048, in_channels=2)

    class Flat(torch.nn.Module):
        def __init__(self, n: int):
            super().__init__()
            self.out_features = n

        def forward(self, x):
            return torch.flatten(x, 1)

    def build_flat(cfg, input_length, in_channels=1):
        return Flat(input_length * in_channels)

    try:
        register_backbone("test_flat")(build_flat)
        model = build_model({"arch": "test_flat", "hidden": [4]}, 3, 10)
        assert model(torch.rand(2, 10))["logits"].shape == (2, 3)
        with pytest.raises(ValueError, match="twice"):
            register_backbone("test_flat")(lambda cfg, n, c=1: Flat(n))
    finally:
        registry._BUILDERS.pop("test_flat", None)
