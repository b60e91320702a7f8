"""A short job on a real two-node Ray cluster started on this machine (`ray start --head` + `ray start --address`)."""
from __future__ import annotations

import json
import os
import random
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


class _Ports:
    """Ports for the nodes, drawn below the OS's ephemeral range, each checked free by binding it.

    Ports from ``bind(0)`` are ephemeral: the many outgoing connections a starting Ray node makes can take
    one of them before the node that was meant to listen on it starts, and a worker-port range above such a
    port is not checked at all. Ports below the ephemeral range are never handed out to outgoing connections.
    """

    def __init__(self, seed: int) -> None:
        try:
            low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            low = 32768
        self.low, self.high = 10000, max(low, 12000) - 1
        self.rng = random.Random(seed)
        self.taken: set[int] = set()

    @staticmethod
    def _bindable(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def block(self, n: int) -> int:
        """The first of ``n`` consecutive free ports."""
        for _ in range(200):
            start = self.rng.randrange(self.low, self.high - n)
            span = range(start, start + n)
            if not self.taken.intersection(span) and all(self._bindable(q) for q in span):
                self.taken.update(span)
                return start
        raise RuntimeError(f"no {n} consecutive free ports between {self.low} and {self.high}")

    def node(self) -> list[str]:
        nm, om, agent, agent_grpc, metrics, runtime_env = (self.block(1) for _ in range(6))
        lo = self.block(41)
        return [f"--node-manager-port={nm}", f"--object-manager-port={om}",
                f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
                f"--min-worker-port={lo}", f"--max-worker-port={lo + 40}"]


def _wait_port(port: int, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _nodes_alive(address: str, env: dict) -> int:
    """Nodes listed under 'Active:' by `ray status` (a failed node is listed under 'Recent failures:')."""
    r = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True)
    if r.returncode != 0 or "Active:" not in r.stdout:
        return 0
    active = r.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
    return active.count("node_")


def _wait_for_nodes(address: str, env: dict, n: int, timeout: float, proc: subprocess.Popen) -> bool:
    """Whether ``n`` nodes are alive within ``timeout`` s; gives up early when ``proc`` (the node that
    should join) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _nodes_alive(address, env) >= n:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(1.0)
    return False


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as err:
        return f"({err})"


def _start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = log.open("w")
    try:
        return subprocess.Popen([RAY, "start", *args], env=env, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


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
    ports = _Ports(seed=os.getpid())
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        # a node that fails to come up (on a loaded machine, or a port taken after it was checked) is
        # stopped and started again on new ports: the test is about the job on the cluster, not the start
        for attempt in range(3):
            gcs, client = ports.block(1), ports.block(1)
            logs.append(Path(temp_dir) / f"head{attempt}.log")
            head = _start_node(["--head", f"--port={gcs}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
                                f"--ray-client-server-port={client}", *common, *ports.node()], env, logs[-1])
            procs.append(head)
            address = f"127.0.0.1:{gcs}"
            if _wait_port(gcs, 90, head) and _wait_for_nodes(address, env, 1, 60, head):
                break
            _stop(procs.pop())
        else:
            raise TimeoutError("the head node did not start three times:\n" + _tail(logs[-1]))
        for attempt in range(3):
            logs.append(Path(temp_dir) / f"worker{attempt}.log")
            worker = _start_node([f"--address={address}", *common, *ports.node()], env, logs[-1])
            procs.append(worker)
            if _wait_for_nodes(address, env, 2, 90, worker):
                break
            _stop(procs.pop())
        else:
            raise TimeoutError(f"a second node did not join {address} three times:\n" + _tail(logs[-1]))
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
