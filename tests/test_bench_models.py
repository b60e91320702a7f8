"""benchmarks/bench_models.py builds every model config, including those that extend another."""
from __future__ import annotations

import pytest

from benchmark_module import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_models") as module:
        yield module


def test_model_configs_that_extend_another_are_composed(bench):
    from trainer.models import build_model

    logq = bench.model_config("convnet_logq")   # extends convnet.yaml through its defaults list
    assert logq["arch"] == "convnet" and logq["input_axis"] == "log_q" and logq["axis_points"] == 2048
    assert logq["axis_two_theta"] == [5.0, 90.0]                 # the default grid's ends, as training fills them
    assert build_model(logq, 71, 8501) is not None
    assert bench.model_config("convnet_logq:axis_points=4096,pool=flatten") == {**logq, "axis_points": 4096,
                                                                               "pool": "flatten"}
    park = bench.model_config("parkcnn_small")
    assert park["arch"] == "park" and park.get("axis_two_theta") is None
