"""Cluster operations without starting Ray: cluster.address=auto with several Ray instances on
the machine is warned about; the cluster files keep the dashboard on localhost, the on-premise
file's head is not among its workers, and its head-only form is a valid Ray cluster config."""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray")
import ray._private.services as services  # noqa: E402

from cluster import connect  # noqa: E402


@pytest.fixture
def instances(monkeypatch):
    """Pretend these GCS addresses run here, the last `ray start` being the first of them."""
    found: list[str] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: set(found))
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: found[0] if found else None)
    return found


def test_auto_with_several_instances_warns(instances, caplog):
    instances[:] = ["10.0.0.5:6379", "127.0.0.1:6380"]
    with caplog.at_level(logging.WARNING, logger="cluster.connect"):
        assert connect.check_address("auto") == ["10.0.0.5:6379", "127.0.0.1:6380"]
    assert "2 Ray instances" in caplog.text and "127.0.0.1:6380" in caplog.text
    assert "joins 10.0.0.5:6379" in caplog.text and "cluster.address=127.0.0.1:6379" in caplog.text


def test_no_warning_when_the_choice_is_clear(instances, monkeypatch, caplog):
    instances[:] = ["10.0.0.5:6379", "127.0.0.1:6380"]
    with caplog.at_level(logging.WARNING, logger="cluster.connect"):
        assert connect.check_address("127.0.0.1:6380") == []  # explicit address
        assert connect.check_address(None) == []              # a fresh local instance
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6380")
        assert connect.check_address("auto") == []            # RAY_ADDRESS wins over auto
        monkeypatch.delenv("RAY_ADDRESS")
        instances[:] = ["10.0.0.5:6379"]
        assert connect.check_address("auto") == ["10.0.0.5:6379"]
    assert caplog.text == ""


def test_ray_address_auto_in_the_environment_is_checked(instances, monkeypatch, caplog):
    instances[:] = ["10.0.0.5:6379", "127.0.0.1:6380"]
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    with caplog.at_level(logging.WARNING, logger="cluster.connect"):
        connect.check_address(None)
    assert "2 Ray instances" in caplog.text


def test_init_ray_checks_then_connects(instances, monkeypatch, caplog):
    import ray

    instances[:] = ["10.0.0.5:6379", "127.0.0.1:6380"]
    calls = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    with caplog.at_level(logging.WARNING, logger="cluster.connect"):
        connect.init_ray("auto", include_dashboard=False)
    assert calls == [{"address": "auto", "include_dashboard": False}] and "Ray instances" in caplog.text


def test_the_installed_ray_still_offers_the_lookups():
    # the warning relies on these private helpers; a Ray upgrade that drops them must show up here
    assert callable(services.find_gcs_addresses) and callable(services.find_bootstrap_address)
    assert isinstance(connect.local_ray_instances(), list)


CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_the_dashboard_stays_on_localhost(name):
    config = load(name)
    head = " ".join(config["head_start_ray_commands"])
    assert "0.0.0.0" not in head and "--dashboard-host=127.0.0.1" in head
    text = (CLUSTER / name).read_text()
    assert f"ray dashboard cluster/{name}" in text  # how to reach it (SSH tunnel)
    runs = [line for line in text.splitlines() if "ray exec" in line and "python -m trainer" in line]
    assert runs and all("cluster.address=127.0.0.1:6379" in line for line in runs)  # an explicit address


def test_the_head_is_not_a_worker():
    provider = load("cluster-local.yaml")["provider"]
    assert provider["head_ip"] not in provider["worker_ips"]


def test_the_head_only_local_form_is_a_valid_cluster():
    jsonschema = pytest.importorskip("jsonschema")
    autoscaler = pytest.importorskip("ray.autoscaler")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = copy.deepcopy(load("cluster-local.yaml"))
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["max_workers"] = 0
    del config["docker"]
    with open(os.path.join(os.path.dirname(autoscaler.__file__), "ray-schema.json")) as f:
        jsonschema.validate(config, json.load(f))
    prepared = prepare_config(config)
    validate_config(prepared)
    workers = [t for name, t in prepared["available_node_types"].items() if name != prepared["head_node_type"]]
    assert all(t.get("max_workers", 0) == 0 for t in workers)
