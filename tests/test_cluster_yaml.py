"""The `ray up` cluster configs validate against Ray's own cluster-config schema."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")
ray_autoscaler = pytest.importorskip("ray.autoscaler")

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
CONFIGS = ["cluster.yaml", "cluster-local.yaml"]


def _schema():
    with open(os.path.join(os.path.dirname(ray_autoscaler.__file__), "ray-schema.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_config_validates(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, _schema())          # as written
    prepared = prepare_config(config)              # as `ray up` fills it in
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_config_uses_the_project_image(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    images = {config["docker"]["image"], config["docker"]["head_image"]}
    assert all("crystalstream" in i for i in images)
    assert any(i.endswith(":cuda") for i in images) and any(i.endswith(":cpu") for i in images)
    dockerfile = (CLUSTER.parent / "docker" / "Dockerfile").read_text()
    assert "ARG VARIANT" in dockerfile and "base-cuda" in dockerfile and "base-cpu" in dockerfile


def test_schema_rejects_a_broken_config():
    config = yaml.safe_load((CLUSTER / "cluster.yaml").read_text())
    config["provider"]["type"] = 42
    config["not_a_ray_field"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _schema())
