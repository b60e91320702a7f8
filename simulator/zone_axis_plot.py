"""Plot the three zone-axis images of one crystal, raw and shaped.

    python -m simulator.zone_axis_plot structure.cif --out zone_axis.png
    python -m simulator.zone_axis_plot --synthetic --seed 3 --out zone_axis.png
    python -m simulator.zone_axis_plot --synthetic --config conf/representation/zone_axis.yaml --set g_max=0.8

Top row: raw spot images along [100], [010], [001]; bottom row: the shaped images (lines between
spots closer than ``shaping_factor`` x the smallest spot distance); right: the spot-DP (the three
raw images as the R, G, B channels of one picture) and the shaped RGB composite.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from simulator.zone_axis import AXES, ZoneAxisConfig, ZoneAxisSimulator


def _crystal(args):
    if args.synthetic:
        from generator import CrystalSampler
        from generator.pipeline import default_statistics

        crystal = CrystalSampler(default_statistics(), seed=args.seed).sample_many(1)[0]
        return crystal, f"synthetic crystal (seed {args.seed}), space group {crystal.space_group}"
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        structure = Structure.from_file(args.cif)
    except Exception as err:
        raise SystemExit(f"{args.cif}: cannot read the structure: {err}")
    analyzer = SpacegroupAnalyzer(structure, symprec=1e-3)
    conventional = analyzer.get_conventional_standard_structure()
    return conventional, f"{Path(args.cif).name}: {conventional.composition.reduced_formula}, " \
                         f"space group {analyzer.get_space_group_number()} (conventional cell)"


def load_config(path: str | None, overrides: list[str]) -> ZoneAxisConfig:
    from omegaconf import OmegaConf

    from generator.config import conf_dir

    path = Path(path) if path else conf_dir() / "representation" / "zone_axis.yaml"
    try:
        raw = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
        return ZoneAxisConfig.from_any(raw)
    except Exception as err:
        raise SystemExit(f"{path}: invalid zone-axis config: {err}")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cif", nargs="?", help="CIF (or any pymatgen-readable structure file)")
    parser.add_argument("--synthetic", action="store_true", help="a synthetic crystal from the default statistics")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic crystal")
    parser.add_argument("--config", help="zone-axis YAML (default conf/representation/zone_axis.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", default="zone_axis.png", help="output PNG")
    args = parser.parse_args(argv)
    if bool(args.cif) == bool(args.synthetic):
        parser.error("give a CIF or --synthetic (not both)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = ZoneAxisSimulator(load_config(args.config, args.set))
    crystal, title = _crystal(args)
    raw, shaped = sim(crystal, shaping=False), sim(crystal, shaping=True)
    fig, ax = plt.subplots(2, 4, figsize=(13, 6.6))
    for row, (name, imgs) in enumerate((("raw", raw), ("shaped", shaped))):
        for a in range(3):
            ax[row, a].imshow(imgs[a], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax[row, a].set_title(f"{name} {AXES[a]}")
        ax[row, 3].imshow(np.moveaxis(imgs, 0, -1), interpolation="nearest")
        ax[row, 3].set_title("spot DP (RGB)" if row == 0 else "shaped RGB")
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(out)
    return out


if __name__ == "__main__":
    main()
