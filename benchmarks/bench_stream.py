"""Diffractograms per second delivered to a consumer, against the number of generation actors.

    python benchmarks/bench_stream.py                       # default statistics, actors 1 and 2 (Ray, then processes)
    python benchmarks/bench_stream.py --actors 1 2 4 8 --seconds 60 --batch-size 145
    python benchmarks/bench_stream.py --plumbing-only        # queue ceiling with random patterns
    python benchmarks/bench_stream.py --payloads --seconds 5 --json payloads.json   # array vs peaks

``--payloads`` compares, side by side, what generation actors send: rendered float16 patterns
("array") against peak lists and draws rendered by the trainer ("peaks", cluster.payload=peaks):
bytes per pattern, patterns per second of one producer core in-process (wall clock and per CPU-second
of that process: the second holds under a shared load), what one Ray generation actor delivers to the
consumer, the consumer's torch rendering of peak payloads on CPU (measured separately) and the
ceiling of the Ray queue:
``--ceiling-actors`` FixedProducer actors (at least one per shard) re-sending one fixed batch, for
every queue shard count of ``--shards`` (cluster.queue_shards). Besides patterns/s it reports the
CPU seconds that all processes of the local Ray instance (and the consumer's own, alone) spent per
pattern: on a shared machine the wall-clock rate follows the other jobs' load, the CPU cost much
less. ``--json OUT`` writes {"payloads": {"array": {...}, "peaks": {...}}}; each has
``queue_ceiling_patterns_per_s`` (at the default shard count) and ``queue_ceiling_by_shards``.

For every actor count it starts a fresh local Ray instance with that many CPUs (plus one for the
consumer, capped at the machine), waits for the first batch (numba compilation, statistics
transfer), then counts the patterns a consumer pulls with ``get`` during ``--seconds``; then the
same with as many local generation processes (``cluster.source=process``) and their ratio to Ray. It also
reports the in-process producer (one core, no Ray) and the cost of the queue itself: patterns/s
through the queue with random patterns, for float16 and float32 payloads.

Reference figures (2-core shared development VM, load average ~2.5-6 from other jobs, default
OQMD statistics with 71 classes, batches of 145, float16, 30 s per configuration):

    in-process, 1 core           349 patterns/s
    1 actor  (2 Ray CPUs)        316 patterns/s delivered
    2 actors (2 Ray CPUs)        408 patterns/s delivered (204 per actor: the consumer and other
                                 jobs share the two cores)
    queue ceiling, float16       ~19,000-23,500 patterns/s (17 kB each, ~7 ms per get of 145;
                                 one ray.util.queue.Queue, batches by value, load ~2.5-6)
    queue ceiling, float32       ~18,500-19,000 patterns/s (34 kB each)

So one core generates ~300-350 diffractograms/s (the paper: ~0.6 per core), and float16 halves
the bytes stored and sent between nodes.

Queue ceiling with the sharded queue (batches by object reference; ``--payloads --seconds 4``,
two runs each, load average 5-9 from other jobs, so the pipeline got ~0.4-1.2 of the 2 cores;
patterns/s wall clock, then patterns per CPU-second of all Ray processes, then of the consumer
process alone):

    peaks, 145/batch (3.4 kB/pattern)  1 shard   8,100-8,700/s  11,200-11,400/CPU-s  64,000-68,000
                                       2 shards  7,100-9,900/s  10,400-12,300/CPU-s  55,000-64,000
                                       4 shards  5,600-8,300/s   7,400-7,600/CPU-s   55,000-57,000
    peaks, 870/batch (parkCNN,         1 shard  33,500-35,000/s 53,200-57,400/CPU-s 306,000-321,000
      2 patterns per crystal)          2 shards 37,000-51,500/s 54,400-58,200/CPU-s 295,000-322,000
                                       4 shards 39,800-55,200/s 36,100-54,800/CPU-s 312,000-417,000
    array, 145/batch (17 kB/pattern)   1 shard   5,600-8,400/s   9,700/CPU-s         50,000-52,000
                                       2 shards  9,900-10,100/s 11,000/CPU-s         55,000-60,000
    array, 870/batch                   1 shard   6,200-20,200/s 14,700-29,700/CPU-s  80,000-155,000
                                       2 shards 10,600-15,800/s 20,600-25,200/CPU-s 109,000-111,000

Per generation core, two patterns per crystal, batches of 144, default simulation, two cores with
nothing else running (``--payloads --seconds 10|15 --batch-size 144 --patterns-per-crystal 2
--shards 1``, two runs): one Ray actor delivered 1,000-1,015 peak payloads/s (in-process 1,018-1,279)
against 800-824 rendered arrays/s; the queue ceiling at 144 per batch was 28,000-30,000 patterns/s (peaks) and 24,600-28,700 (arrays).

At 870 per batch on the same quiet cores (``--payloads --seconds 6 --batch-size 870
--patterns-per-crystal 2 --shards 1 2``): peaks 191,900 patterns/s with one shard, 143,500 with two;
arrays 72,800 and 72,400.

Old against new path, measured once side by side in one Ray instance under the same load (a
peaks-sized stand-in payload, 2 producers, not part of this script): one
``ray.util.queue.Queue`` with batches by value carried 4,700-7,700 patterns per CPU-s at 145 per
batch and 34,000-36,000 at 870; two light shards 9,100-9,200 (by value as by reference: on one
node the reference saves little CPU; it keeps a queue call's cost independent of the payload and
lets a batch go from its producer's node straight to the trainer's) and 37,000-59,000 at 870.

The target of 100,000 patterns/s is reached at 870 patterns per batch (peak payloads, 191,900/s on two
quiet cores, above) but not at 145: at 145 patterns per batch
the whole path costs ~0.1 ms of CPU per pattern (~10 cores for 100,000/s, spread over producers,
shards and the consumer), and the consumer process alone caps near 55,000-68,000 patterns/s per
core, so 145-pattern batches stay below the target even with free cores. At 870 per batch (parkCNN)
the path costs ~55,000 patterns per CPU-s and the consumer alone ~300,000, so two free cores would
carry ~100,000/s (on the ~0.6-1.1 cores left by other jobs: 33,500-55,200/s; on two quiet cores the
lighter path of the peak payload measured above carried 191,900/s).
Extra shards pay off where one queue actor's call rate is the limit (many producers on a
cluster), not on two shared cores, where 4 shards with 4 producers only add processes contending
for them; the default of 2 (at most one per actor) costs nothing measurable here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass


def _cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) so far of this process and its descendants (a local Ray instance:
    GCS, raylet, workers) by pid; empty without psutil. Under a shared load, the CPU time a pipeline
    spends per pattern is a steadier figure than its wall-clock rate."""
    try:
        import psutil
    except ImportError:
        return {}
    out = {}
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _consume(source, seconds: float, timeout: float) -> dict:
    source.get(timeout)                           # warm-up: first batch (compilation, transfers)
    cpu0 = _cpu_seconds()
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
    cpu1 = _cpu_seconds()
    cpu = sum(cpu1[p] - cpu0[p] for p in cpu1.keys() & cpu0.keys())
    mine = cpu1.get(os.getpid(), 0.0) - cpu0.get(os.getpid(), 0.0)    # the consumer's own process
    m = source.metrics()
    return {"patterns_per_s": n / dt, "cpu_cores_used": cpu / dt, "patterns_per_cpu_s": n / cpu if cpu > 0 else None,
            "consumer_patterns_per_cpu_s": n / mine if mine > 0 else None, "batches": batches, "seconds": dt, "consumer_wait_per_batch_s": wait / batches,
            "bytes_per_pattern": int(getattr(b, "patterns", b).nbytes // len(b)), "queue_length_end": m.get("queue_length", 0.0),
            "rejections": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("rejections/")}}


def bench_ray(factory, n_actors: int, seconds: float, queue_size: int, timeout: float,
              shards: int | None = None) -> dict:
    """``n_actors`` generation actors on ``shards`` queue shards (None: cluster.queue_shards's default)."""
    import ray

    from cluster.config import ClusterConfig
    from cluster.stream import RayStream

    cpus = min(n_actors + 1, os.cpu_count() or n_actors)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        cfg = ClusterConfig(num_actors=n_actors, actor_cpus=min(1.0, cpus / n_actors), queue_size=queue_size,
                            get_timeout_s=timeout, seed=0)
        if shards is not None:
            cfg.queue_shards = shards
        with RayStream(factory, cfg) as stream:
            out = _consume(stream, seconds, timeout)
            out["queue_shards"] = len(stream.queue.shards)
    finally:
        ray.shutdown()
    out.update(actors=n_actors, ray_cpus=cpus, patterns_per_s_per_actor=out["patterns_per_s"] / n_actors)
    return out


def bench_process(factory, n_workers: int, seconds: float, queue_size: int, timeout: float) -> dict:
    """``n_workers`` local generation processes (``cluster.source=process``, no Ray)."""
    from cluster.config import ClusterConfig
    from cluster.process_stream import ProcessStream

    cfg = ClusterConfig(source="process", num_actors=n_workers, queue_size=queue_size, get_timeout_s=timeout, seed=0)
    stream = ProcessStream(factory, cfg)
    try:
        out = _consume(stream, seconds, timeout)
    finally:
        stream.close()
    out.update(processes=n_workers, patterns_per_s_per_process=out["patterns_per_s"] / n_workers)
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
                   patterns_per_crystal: int, shards: list[int], ceiling_actors: int) -> dict:
    """Both payloads on the same statistics and simulation config; see the module docstring."""
    from cluster.config import ClusterConfig

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
        by_shards = {}
        for k in shards:
            n = max(k, ceiling_actors)
            r = bench_ray(FixedProducer(batch), n, min(seconds, 10.0), queue_size, timeout, shards=k)
            by_shards[str(k)] = {"actors": n, "patterns_per_s": r["patterns_per_s"],
                                 "batches_per_s": r["batches"] / r["seconds"], "cpu_cores_used": r["cpu_cores_used"],
                                 "patterns_per_cpu_s": r["patterns_per_cpu_s"],
                                 "consumer_patterns_per_cpu_s": r["consumer_patterns_per_cpu_s"]}
            print(f"{payload}: {k} shard(s), {n} actors: {r['patterns_per_s']:,.0f} patterns/s, "
                  f"{r['cpu_cores_used']:.2f} cores busy, {r['patterns_per_cpu_s'] or 0:,.0f} patterns per CPU-s "
                  f"(consumer process alone: {r['consumer_patterns_per_cpu_s'] or 0:,.0f})",
                  flush=True)
        default = str(ClusterConfig().queue_shards)
        # One generation actor feeding the consumer through Ray: what a core delivers, not only makes.
        one = bench_ray(factory, 1, seconds, queue_size, timeout)
        print(f"{payload}: in-process {local['patterns_per_s']:,.0f} patterns/s "
              f"({local['patterns_per_cpu_s'] or 0:,.0f} per CPU-s); one Ray actor delivered "
              f"{one['patterns_per_s']:,.0f} patterns/s ({one['patterns_per_cpu_s'] or 0:,.0f} per CPU-s of all "
              f"Ray processes and the consumer)", flush=True)
        row = {"bytes_per_pattern": nbytes / len(batch), "patterns_per_s_per_core": local["patterns_per_s"],
               "patterns_per_cpu_s_per_core": local["patterns_per_cpu_s"],
               "delivered_patterns_per_s_one_actor": one["patterns_per_s"],
               "delivered_patterns_per_cpu_s_one_actor": one["patterns_per_cpu_s"],
               "queue_ceiling_patterns_per_s": by_shards.get(default, by_shards[str(shards[-1])])["patterns_per_s"],
               "queue_ceiling_by_shards": by_shards}
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
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4],
                   help="queue shard counts of the --payloads ceiling (cluster.queue_shards)")
    p.add_argument("--ceiling-actors", type=int, default=2,
                   help="FixedProducer actors of the --payloads ceiling (at least one per shard)")
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
                                             args.queue_size, args.timeout, args.patterns_per_crystal,
                                             args.shards, args.ceiling_actors),
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
            q = bench_process(factory, n, args.seconds, args.queue_size, args.timeout)
            results["runs"].append(q)
            print(f"{n} processes (no Ray): {q['patterns_per_s']:.1f} patterns/s delivered, "
                  f"{q['patterns_per_s'] / r['patterns_per_s']:.2f} x the Ray stream's; consumer waits "
                  f"{1e3 * q['consumer_wait_per_batch_s']:.0f} ms per batch", flush=True)
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
