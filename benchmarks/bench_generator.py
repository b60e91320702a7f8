"""Synthetic crystals per second per core: ours against ``pyxtal.from_random``, side by side in one run.

    python benchmarks/bench_generator.py [--n 240] [--repeats 5] [--seed 0] [--pyxtal-timeout 10] [--no-pyxtal]

Draws ``n`` crystals from the prior with our sampler (one core), then asks pyxtal for a random
crystal of the same space group and the same conventional-cell composition for each of them,
and prints both rates and their ratio. Ours is also timed on fresh prior draws ``repeats`` times
(median reported). Runs one process, so the rates are per core. Rates are CPU-time based
(``time.process_time``) as well as wall-clock, so a busy machine distorts them less; ``--no-pyxtal``
times ours only (e.g. to compare two versions of the sampler; the digest of the drawn crystals shows
whether they draw the same crystals).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import signal
import time
import warnings
from collections import Counter

import numpy as np


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=240, help="draws from the prior shared by both generators")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of our sampler on fresh draws")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pyxtal-timeout", type=float, default=10.0, help="seconds before one pyxtal call counts as failed")
    ap.add_argument("--no-pyxtal", action="store_true", help="time our sampler only")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from pymatgen.core.periodic_table import Element
    from pyxtal import pyxtal
    from rich.progress import track

    from generator import CrystalSampler
    from generator.pipeline import default_statistics

    statistics = default_statistics()
    sampler = CrystalSampler(statistics, seed=args.seed)
    sampler.sample_many(20)  # warm caches (verdict reuse starts empty in every worker too; this is small)

    t0 = time.perf_counter()
    draws = sampler.sample_many(args.n)
    ours_first = args.n / (time.perf_counter() - t0)

    rates, cpu_rates = [], []
    digest = hashlib.sha1()
    for r in range(args.repeats):
        s = CrystalSampler(statistics, seed=args.seed + 1 + r)
        t0, c0 = time.perf_counter(), time.process_time()
        crystals = s.sample_many(args.n)
        rates.append(args.n / (time.perf_counter() - t0))
        cpu_rates.append(args.n / (time.process_time() - c0))
        for c in crystals:
            for a in (c.lattice, c.frac_coords, c.atomic_numbers):
                digest.update(np.ascontiguousarray(a).tobytes())
    median, cpu_median = float(np.median(rates)), float(np.median(cpu_rates))
    print(f"ours, prior draws:        median {median:7.1f} crystals/s/core wall, {cpu_median:7.1f} per CPU second, over "
          f"{args.repeats} repeats of {args.n} (wall min {min(rates):.1f}, max {max(rates):.1f}; first pass "
          f"{ours_first:.1f}); load average {os.getloadavg()[0]:.1f}; crystals digest {digest.hexdigest()[:16]}")
    if args.no_pyxtal:
        return

    # Same space groups, our sampler drawing its own compositions, timed per crystal.
    s = CrystalSampler(statistics, seed=args.seed + 100)
    t0 = time.perf_counter()
    for c in draws:
        s.sample(c.space_group)
    ours_same_groups = args.n / (time.perf_counter() - t0)

    signal.signal(signal.SIGALRM, _alarm)
    failures, timeouts = Counter(), 0
    t0 = time.perf_counter()
    for c in track(draws, description="pyxtal.from_random"):
        counts = Counter(c.atomic_numbers.tolist())
        species = [Element.from_Z(z).symbol for z in counts]
        signal.setitimer(signal.ITIMER_REAL, args.pyxtal_timeout)
        try:
            x = pyxtal()
            x.from_random(3, c.space_group, species, list(counts.values()))
            if not x.valid:
                failures["invalid"] += 1
        except _Timeout:
            timeouts += 1
        except Exception as exc:  # pyxtal raises for compositions it cannot place
            failures[type(exc).__name__] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    pyxtal_rate = args.n / (time.perf_counter() - t0)

    print(f"statistics: {len(statistics.space_groups)} space groups; draws: {args.n}; "
          f"mean atoms/cell {np.mean([c.n_atoms for c in draws]):.1f}")
    print(f"ours, same space groups:  {ours_same_groups:7.1f} crystals/s/core")
    print(f"pyxtal.from_random:       {pyxtal_rate:7.1f} crystals/s/core (same groups and compositions; "
          f"{sum(failures.values())} failed {dict(failures)}, {timeouts} timed out at {args.pyxtal_timeout:g} s)")
    print(f"ratio ours / pyxtal:      {ours_same_groups / pyxtal_rate:7.1f}x (same groups); "
          f"{median / pyxtal_rate:.1f}x (median prior rate)")
    print(f"rejections of our sampler: {dict(sampler.rejections)}")


if __name__ == "__main__":
    main()
