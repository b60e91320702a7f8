"""Plot one structure's pure pattern, the pattern with each imperfection, and optionally a measured one.

python -m simulator.plot STRUCTURE.cif [--measured data.csv] [--out pattern.png] [--seed 0]
    [--config conf/simulation/imperfections.yaml]
The measured file is two columns (2-theta, counts; comma or whitespace separated, header lines skipped);
it is interpolated onto the grid and passed through the same preprocessing as the simulated ones.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np


def read_measured(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(2-theta, counts) from a two-column text file; raises ValueError naming the file."""
    rows = []
    for line in Path(path).read_text(errors="replace").splitlines():
        parts = line.replace(",", " ").split()
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            continue
    if len(rows) < 10:
        raise ValueError(f"{path}: expected two numeric columns (2-theta, counts), found {len(rows)} rows")
    data = np.array(rows)
    return data[:, 0], data[:, 1]


def main(argv=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.core import Structure

    from generator.config import conf_dir
    from simulator import PatternSimulator, SimulationConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("structure", type=Path, help="CIF (or any file pymatgen reads)")
    ap.add_argument("--measured", type=Path, default=None)
    ap.add_argument("--config", type=Path, default=conf_dir() / "simulation" / "imperfections.yaml",
                    help="imperfection settings to show one at a time")
    ap.add_argument("--out", type=Path, default=Path("pattern.png"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    try:
        structure = Structure.from_file(args.structure)
    except Exception as err:
        raise SystemExit(f"{args.structure}: cannot read structure: {err}")
    full = SimulationConfig.from_yaml(args.config)
    base = SimulationConfig.from_any({"wavelength": full.wavelength, "grid": vars(full.grid), "sqrt": False})
    variants = {"pure (Gaussian, Scherrer)": base,
                "pseudo-Voigt, Caglioti, K-alpha2": replace(base, profile=full.profile),
                "GP background": replace(base, gp_background=replace(full.gp_background, enabled=True)),
                "Vecsei background": replace(base, vecsei_background=replace(full.vecsei_background, enabled=True)),
                "noise": replace(base, noise=replace(full.noise, enabled=True))}
    fig, axes = plt.subplots(len(variants) + (args.measured is not None), 1, figsize=(10, 2.0 * (len(variants) + 1)),
                             sharex=True)
    for ax, (name, cfg) in zip(axes, variants.items()):
        sim = PatternSimulator(cfg)
        y = sim.pattern(structure, np.random.default_rng(args.seed))
        ax.plot(sim.grid, y, lw=0.7)
        ax.set_ylabel("I (0..1)")
        ax.set_title(name, fontsize=9, loc="left")
    if args.measured is not None:
        x, counts = read_measured(args.measured)
        sim = PatternSimulator(variants["pseudo-Voigt, Caglioti, K-alpha2"])
        inside = (sim.grid >= x.min()) & (sim.grid <= x.max())
        meas = np.interp(sim.grid[inside], x, counts)
        meas = (meas - meas.min()) / (np.ptp(meas) or 1.0)
        ax = axes[-1]
        sim_y = sim.pattern(structure, np.random.default_rng(args.seed))
        ax.plot(sim.grid[inside], meas, lw=0.7, label=f"measured {args.measured.parent.name}")
        ax.plot(sim.grid, sim_y, lw=0.7, alpha=0.7, label="simulated (pseudo-Voigt)")
        ax.legend(fontsize=8)
        ax.set_title("measured vs simulated", fontsize=9, loc="left")
    axes[-1].set_xlabel("2-theta (deg)")
    fig.suptitle(f"{structure.composition.reduced_formula} ({args.structure.name}), wavelength {full.wavelength} A")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
