"""Diffractograms per second delivered to a consumer, against the number of generation actors.

    python benchmarks/bench_stream.py                       # default statistics, actors 1 and 2
    python benchmarks/bench_stream.py --actors 1 2 4 8 --seconds 60 --batch-size 145
    python benchmarks/bench_stream.py --plumbing-only        # queue ceiling with random patterns
    python benchmarks/bench_stream.py --payloads --seconds 5 --json payloads.json   # array vs peaks

``--payloads`` compares, side by side, what generation actors send: rendered float16 patterns
("array") against peak lists and draws rendered by the trainer ("peaks", cluster.payload=peaks):
bytes per pattern, patterns per second of one producer core (for peaks: the producer's work, plus
the consumer's torch rendering on CPU measured separately) and the ceiling of the Ray queue
re-sending one fixed batch. ``--json OUT`` writes {"payloads": {"array": {...}, "peaks": {...}}}.

For every actor count it starts a fresh local Ray instance with that many CPUs (plus one for the
consumer, capped at the machine), waits for the first batch (numba compilation, statistics
transfer), then counts the patterns a consumer pulls with ``get`` during ``--seconds``. It also
reports the in-process producer (one core, no Ray) and the cost of the queue itself: patterns/s
through the queue with random patterns, for float16 and float32 payloads.

Reference figures (2-core shared development VM, load average ~2.5-6 from other jobs, default
OQMD statistics with 71 classes, batches of 145, float16, 30 s per configuration):

    in-process, 1 core           349 patterns/s
    1 actor  (2 Ray CPUs)        316 patterns/s delivered
    2 actors (2 Ray CPUs)        408 patterns/s delivered (204 per actor: the consumer and other
                                 jobs share the two cores)
    queue ceiling, float16       ~19,000-23,500 patterns/s (17 kB each, ~7 ms per get of 145)
    queue ceiling, float32       ~18,500-19,000 patterns/s (34 kB each)

So one core generates ~300-350 diffractograms/s (the paper: ~0.6 per core); the queue is far from
being the bottleneck, and float16 halves the bytes stored and sent between nodes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass


def _consume(source, seconds: float, timeout: float) -> dict:
    source.get(timeout)                           # warm-up: first batch (compilation, transfers)
    t0 = time.perf_counter()
    n = batches = 0
    wait = 0.0
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        b = source.get(timeout)
        wait += time.perf_counter() - t
        n += len(b)
        batches += 1
    dt = time.perf_counter() - t0
    m = source.metrics()
    return {"patterns_per_s": n / dt, "batches": batches, "seconds": dt, "consumer_wait_per_batch_s": wait / batches,
            "bytes_per_pattern": int(getattr(b, "patterns", b).nbytes // len(b)), "queue_length_end": m.get("queue_length", 0.0),
            "rejections": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("rejections/")}}


def bench_ray(factory, n_actors: int, seconds: float, queue_size: int, timeout: float) -> dict:
    import ray

    from cluster.config import ClusterConfig
    from cluster.stream import RayStream

    cpus = min(n_actors + 1, os.cpu_count() or n_actors)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        cfg = ClusterConfig(num_actors=n_actors, actor_cpus=min(1.0, cpus / n_actors), queue_size=queue_size,
                            get_timeout_s=timeout, seed=0)
        with RayStream(factory, cfg) as stream:
            out = _consume(stream, seconds, timeout)
    finally:
        ray.shutdown()
    out.update(actors=n_actors, ray_cpus=cpus, patterns_per_s_per_actor=out["patterns_per_s"] / n_actors)
    return out


def bench_local(factory, seconds: float) -> dict:
    from cluster.sources import LocalStream

    out = _consume(LocalStream(factory, seed=0), seconds, 1e9)
    out.update(actors=0, note="in-process, one core, no Ray")
    return out


@dataclass
class FixedProducer:
    """Ships one prepared batch again and again (the cost of the queue for that payload)."""

    batch: object
    _n: int = 0

    def __call__(self, seed):
        return self

    def next_batch(self):
        self._n += 1
        return self.batch

    def stats(self) -> dict:
        return {"crystals": self._n * len(self.batch), "batches": self._n, "seconds": 0.0, "rejections": {}}


def bench_payloads(stats, simulation_cfg, batch_size: int, seconds: float, queue_size: int, timeout: float,
                   patterns_per_crystal: int) -> dict:
    """Both payloads on the same statistics and simulation config; see the module docstring."""
    import time as _time

    import torch

    from cluster.producer import SyntheticProducerFactory
    from cluster.sources import LocalStream
    from cluster.torch_render import TorchRenderer

    out = {}
    for payload in ("array", "peaks"):
        factory = SyntheticProducerFactory(stats, None, simulation_cfg, batch_size, "float16", patterns_per_crystal,
                                           payload)
        local = _consume(LocalStream(factory, seed=0), seconds, 1e9)
        batch = LocalStream(factory, seed=1).get()
        nbytes = batch.patterns.nbytes if payload == "array" else batch.nbytes
        ceiling = bench_ray(FixedProducer(batch), 1, min(seconds, 10.0), queue_size, timeout)
        row = {"bytes_per_pattern": nbytes / len(batch), "patterns_per_s_per_core": local["patterns_per_s"],
               "queue_ceiling_patterns_per_s": ceiling["patterns_per_s"]}
        if payload == "peaks":
            torch.set_num_threads(1)
            renderer = TorchRenderer("cpu")
            renderer(batch)
            t0, n = _time.perf_counter(), 0
            while _time.perf_counter() - t0 < seconds:
                renderer(batch)
                n += len(batch)
            row["consumer_render_patterns_per_s_per_cpu_thread"] = n / (_time.perf_counter() - t0)
            if torch.cuda.is_available():
                gpu = TorchRenderer("cuda")
                gpu(batch)
                torch.cuda.synchronize()
                t0, n = _time.perf_counter(), 0
                while _time.perf_counter() - t0 < seconds:
                    gpu(batch)
                    n += len(batch)
                torch.cuda.synchronize()
                row["consumer_render_patterns_per_s_cuda"] = n / (_time.perf_counter() - t0)
        out[payload] = row
        print(f"{payload}: {row}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=30.0, help="measurement time per configuration")
    p.add_argument("--batch-size", type=int, default=145)
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--plumbing-only", action="store_true", help="only the queue ceiling with random patterns")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--payloads", action="store_true", help="array vs peak payloads side by side (only that)")
    p.add_argument("--simulation", default="default", help="conf/simulation/<name>.yaml for --payloads")
    p.add_argument("--patterns-per-crystal", type=int, default=1)
    p.add_argument("--json", help="write {'payloads': {...}} of --payloads here")
    args = p.parse_args(argv)

    from cluster.producer import NoiseProducerFactory, SyntheticProducerFactory

    results: dict = {"cpu_count": os.cpu_count(), "batch_size": args.batch_size, "dtype": args.dtype, "runs": [],
                     "load_average_start": os.getloadavg()}
    n_points = 8501
    if args.payloads:
        from pathlib import Path

        from generator.pipeline import prepare_data
        from simulator import SimulationConfig

        sim_cfg = SimulationConfig.from_yaml(Path(__file__).resolve().parents[1] / "conf" / "simulation"
                                             / f"{args.simulation}.yaml")
        report = {"payloads": bench_payloads(prepare_data().statistics, sim_cfg, args.batch_size, args.seconds,
                                             args.queue_size, args.timeout, args.patterns_per_crystal),
                  "simulation": args.simulation, "batch_size": args.batch_size,
                  "patterns_per_crystal": args.patterns_per_crystal, "cpu_count": os.cpu_count(),
                  "load_average": os.getloadavg()}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        print(json.dumps(report, indent=1))
        return 0
    if not args.plumbing_only:
        from generator.pipeline import prepare_data

        prepared = prepare_data()
        stats = prepared.statistics
        factory = SyntheticProducerFactory(stats, None, None, args.batch_size, args.dtype)
        results["classes"] = len(stats.space_groups)
        r = bench_local(factory, args.seconds)
        results["runs"].append(r)
        print(f"in-process (1 core): {r['patterns_per_s']:.1f} patterns/s", flush=True)
        for n in args.actors:
            r = bench_ray(factory, n, args.seconds, args.queue_size, args.timeout)
            results["runs"].append(r)
            print(f"{n} actors ({r['ray_cpus']} Ray CPUs): {r['patterns_per_s']:.1f} patterns/s delivered, "
                  f"{r['patterns_per_s_per_actor']:.1f} per actor; consumer waits "
                  f"{1e3 * r['consumer_wait_per_batch_s']:.0f} ms per batch", flush=True)
    results["plumbing"] = []
    for dtype in ("float16", "float32"):
        factory = NoiseProducerFactory(args.batch_size, n_points, 100, dtype, fresh=False)
        r = bench_ray(factory, 1, min(args.seconds, 10.0), args.queue_size, args.timeout)
        r["dtype"] = dtype
        results["plumbing"].append(r)
        print(f"queue ceiling {dtype}: {r['patterns_per_s']:.0f} patterns/s ({r['bytes_per_pattern']} B each), "
              f"consumer get {1e3 * r['consumer_wait_per_batch_s']:.1f} ms per batch of {args.batch_size}",
              flush=True)
    results["load_average_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min) at start {results['load_average_start']}, end {results['load_average_end']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
