"""Rendering peak payloads into model inputs: the trainer's torch renderer against the simulator's own
numpy/Numba path on the same payloads, side by side in one run, on one CPU thread (and CUDA when present).

    python benchmarks/bench_render.py                                   # default and measured simulation
    python benchmarks/bench_render.py --simulations measured --batches 4 --batch-size 128

Payloads are what a generation actor sends (``cluster.payload=peaks``, one pattern per crystal, seed 0,
the default statistics); both renderers get the same batches (the Numba path's noise drawn from a numpy
generator, the torch path's from the payload's seed). Each is timed as the best of ``--repeat`` passes
over all batches after one warm-up pass. Prints patterns/s per renderer and their ratio, the rate of the
torch renderer's host part alone (the peak windows and parameters in numpy, which a GPU trainer's own
thread computes for every batch), and the profile values the torch renderer evaluates per pattern
(broad Lorentzian tails of measured-looking patterns cost far more than the default config's Gaussian
peaks).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def payloads(simulation: str, batches: int, batch_size: int, seed: int):
    """(simulator, [PeakBatch]) for ``conf/simulation/<simulation>.yaml`` on the default statistics."""
    from hydra import compose, initialize_config_dir

    from cluster.config import to_dataclass
    from cluster.producer import SyntheticProducer
    from generator import GeneratorConfig
    from generator.pipeline import prepare_data
    from simulator.representation import make_representation

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"simulation={simulation}"])
    sim = make_representation(cfg.simulation)
    producer = SyntheticProducer(prepare_data(cfg).statistics, to_dataclass(GeneratorConfig, cfg.generator),
                                 sim.config, batch_size, "float32", np.random.SeedSequence(seed), payload="peaks")
    return sim, [producer.next_batch() for _ in range(batches)]


def best_rate(fn, batches, repeat: int, sync=lambda: None) -> float:
    """Patterns/s of ``fn(batch)`` over all ``batches``: the best of ``repeat`` passes after a warm-up."""
    for b in batches:
        fn(b)
    sync()
    n = sum(len(b) for b in batches)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return n / best


def measure(sim, batches, repeat: int, seed: int = 0) -> dict:
    """One simulation's row: profile values per pattern and patterns/s of both renderers on ``batches``."""
    import torch

    from cluster.peak_batch import render_reference
    from cluster.torch_render import TorchRenderer, profile_rows

    noise_rng = np.random.default_rng(seed)
    cpu = TorchRenderer("cpu")
    row = {
        "profile_values_per_pattern": float(np.mean([profile_rows(b).length.sum() / len(b) for b in batches])),
        "numba_patterns_per_s": best_rate(lambda b: render_reference(b, sim, noise_rng), batches, repeat),
        "torch_cpu_patterns_per_s": best_rate(cpu, batches, repeat),
        # the host part alone (peak windows and parameters in numpy): what a GPU trainer's own thread pays
        "host_rows_patterns_per_s": best_rate(profile_rows, batches, repeat),
    }
    row["torch_cpu_over_numba"] = row["torch_cpu_patterns_per_s"] / row["numba_patterns_per_s"]
    if torch.cuda.is_available():
        gpu = TorchRenderer("cuda")
        row["torch_cuda_patterns_per_s"] = best_rate(gpu, batches, repeat, torch.cuda.synchronize)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simulations", nargs="+", default=["default", "measured"])
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    results = {}
    for name in args.simulations:
        sim, batches = payloads(name, args.batches, args.batch_size, args.seed)
        row = measure(sim, batches, args.repeat, args.seed)
        results[name] = row
        print(f"{name}: {row['profile_values_per_pattern']:,.0f} profile values per pattern; "
              f"Numba {row['numba_patterns_per_s']:,.0f} patterns/s, torch CPU (1 thread) "
              f"{row['torch_cpu_patterns_per_s']:,.0f} patterns/s: ratio {row['torch_cpu_over_numba']:.2f}; "
              f"its host part alone {row['host_rows_patterns_per_s']:,.0f} patterns/s"
              + (f"; torch CUDA {row['torch_cuda_patterns_per_s']:,.0f} patterns/s"
                 if "torch_cuda_patterns_per_s" in row else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
