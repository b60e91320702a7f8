"""A short job on a real two-node Ray cluster started on this machine (`ray start --head` + `ray start --address`)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    nm, om, agent, agent_grpc, metrics, runtime_env = _free_ports(6)
    lo = _free_ports(1)[0]
    return [f"--node-manager-port={nm}", f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}", f"--min-worker-port={lo}", f"--max-worker-port={lo + 40}"]


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _wait_for_nodes(address: str, env: dict, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.count("node_") >= n:
            return
        time.sleep(1.0)
    raise TimeoutError(f"{n} nodes did not join {address} within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to a `ray start --block` we started: it shuts its node down; SIGKILL its group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


JOB = r"""
import json, sys
import numpy as np
import ray
sys.path.insert(0, TESTS)
from toy_statistics import toy_statistics
from cluster.config import ClusterConfig
from cluster.sources import make_source
from cluster.evaluators import Evaluator
from evaluation.testsets import TestSet

ray.init(address=ADDRESS, log_to_driver=False)
stats = toy_statistics()
out = {"cpus": ray.cluster_resources()["CPU"], "nodes": len([n for n in ray.nodes() if n["Alive"]])}
cfg = ClusterConfig(address=ADDRESS, trainer_cpus=0.0, batch_size=16, queue_size=4, poll_s=0.5,
                    get_timeout_s=60.0, seed=3)
source = make_source(cfg, stats)
batches = [source.get(60.0) for _ in range(6)]
out["actor_nodes"] = len(set(ray.get([s.actor.node_id.remote() for s in source.slots])))
out["num_actors"] = source.num_actors
from ray._private import state
queue_node = state.actors(source.queue.actor._actor_id.hex())["Address"]["NodeID"]
out["queue_on_driver_node"] = queue_node == ray.get_runtime_context().get_node_id()
out["shapes"] = sorted({tuple(b.patterns.shape) for b in batches})
out["dtypes"] = sorted({str(b.patterns.dtype) for b in batches})
labels = np.concatenate([b.labels for b in batches])
out["labels_ok"] = bool(np.all(np.array(stats.space_groups)[labels] == np.concatenate([b.space_groups for b in batches])))
m = source.metrics()
out["crystals"], out["actors_alive"] = m["crystals"], m["actors_alive"]
source.close()

# score a linear model on one of those batches with an evaluator actor on the cluster
import functools, torch
n = batches[0].patterns.shape[1]
ts = TestSet("synthetic", "synthetic", batches[0].patterns, batches[0].labels, batches[0].space_groups,
             batches[0].log_volume)
ev = Evaluator(functools.partial(torch.nn.Linear, n, len(stats.space_groups)), [ts], stats.space_groups,
               {"num_evaluators": 1, "topk": [1]})
ev.submit(torch.nn.Linear(n, len(stats.space_groups)).state_dict(), step=1)
res = ev.wait(timeout=120)
out["eval_steps"] = [r["step"] for r in res]
out["eval_n"] = res[0]["metrics"]["synthetic/n"] if res else None
ev.close()
ray.shutdown()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def two_node_cluster():
    temp_dir = tempfile.mkdtemp(prefix="csray", dir="/tmp")   # short: Ray's socket paths must stay < 108 chars
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # token authentication on every process of this cluster (the token file is shared per user)
    env["RAY_AUTH_MODE"] = "token"
    gcs, client = _free_ports(2)
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [RAY, "start", "--head", f"--port={gcs}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
             f"--ray-client-server-port={client}", *common, *_node_ports()],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_port(gcs, 60)
        address = f"127.0.0.1:{gcs}"
        procs.append(subprocess.Popen(
            [RAY, "start", f"--address={address}", *common, *_node_ports()],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for_nodes(address, env, 2, 90)
        yield address, env
    finally:
        for p in reversed(procs):
            _stop(p)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_short_job_on_two_nodes(two_node_cluster):
    address, env = two_node_cluster
    code = JOB.replace("TESTS", repr(str(Path(__file__).parent))).replace("ADDRESS", repr(address))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["nodes"] == 2 and out["cpus"] == 2.0
    assert out["num_actors"] == 2 and out["actor_nodes"] == 2        # one generation actor on each node
    assert out["shapes"] == [[16, 8501]] and out["dtypes"] == ["float16"] and out["labels_ok"]
    assert out["crystals"] >= 96 and out["actors_alive"] == 2
    assert out["eval_steps"] == [1] and out["eval_n"] == 16
    assert out["queue_on_driver_node"]
