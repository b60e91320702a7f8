"""Fidelity report: synthetic crystals against the statistics-side real crystals (main paper, Fig. 4).

    python -m generator.compare n=2000 generator=uniform output_dir=reports/fidelity

Samples ``n`` crystals, computes density factor, conventional volume, atoms in the asymmetric
unit and number of unique elements, and writes ``fidelity.png`` (four histograms, real vs
synthetic) and ``fidelity.json`` (histogram overlap coefficient and two-sample KS statistic
per descriptor). Real crystals are restricted to the classified space groups, which are the only
ones the generator draws.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from generator.crystal import SyntheticCrystal
from generator.elements import atomic_volume

DESCRIPTORS = ("density_factor", "volume", "n_asym", "n_unique_elements")
LABELS = {"density_factor": "density factor V / V_atomic", "volume": "conventional volume (A^3)",
          "n_asym": "atoms in the asymmetric unit", "n_unique_elements": "unique elements"}
DISCRETE = {"n_asym", "n_unique_elements"}


def crystal_descriptors(crystals: list[SyntheticCrystal]) -> dict[str, np.ndarray]:
    """Each descriptor as an (n,) float64 array over the crystals."""
    volume = np.array([c.volume for c in crystals])
    v_atomic = np.array([atomic_volume(c.atomic_numbers) for c in crystals])
    return {
        "density_factor": volume / v_atomic,
        "volume": volume,
        "n_asym": np.array([c.n_asym for c in crystals], float),
        "n_unique_elements": np.array([len(np.unique(c.atomic_numbers)) for c in crystals], float),
    }


def histogram_edges(real: np.ndarray, synthetic: np.ndarray, discrete: bool, bins: int) -> np.ndarray:
    """Shared bin edges: unit bins for counts, else ``bins`` bins over the pooled 0.5..99.5 % range."""
    pooled = np.concatenate([real, synthetic])
    if discrete:
        return np.arange(np.floor(pooled.min()) - 0.5, np.ceil(pooled.max()) + 1.5)
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    return np.linspace(lo, hi, bins + 1)


def overlap_coefficient(real: np.ndarray, synthetic: np.ndarray, edges: np.ndarray) -> float:
    """Sum over bins of min(p_real, p_synthetic), with values outside the edges clipped into the end bins."""
    clip = lambda x: np.clip(x, edges[0], edges[-1])
    p, _ = np.histogram(clip(real), edges)
    q, _ = np.histogram(clip(synthetic), edges)
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def compare(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray], bins: int = 60) -> dict[str, dict]:
    """descriptor -> {"overlap", "ks", "ks_pvalue", "n_real", "n_synthetic", "real_median", "synthetic_median"}."""
    from scipy.stats import ks_2samp

    out = {}
    for name in DESCRIPTORS:
        a = np.asarray(real[name], float)
        a = a[np.isfinite(a)]
        b = np.asarray(synthetic[name], float)
        b = b[np.isfinite(b)]
        edges = histogram_edges(a, b, name in DISCRETE, bins)
        ks = ks_2samp(a, b)
        out[name] = {"overlap": overlap_coefficient(a, b, edges), "ks": float(ks.statistic),
                     "ks_pvalue": float(ks.pvalue), "n_real": int(len(a)), "n_synthetic": int(len(b)),
                     "real_median": float(np.median(a)), "synthetic_median": float(np.median(b))}
    return out


def plot(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray], scores: dict, path: Path, bins: int = 60) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, name in zip(axes.ravel(), DESCRIPTORS):
        a, b = np.asarray(real[name], float), np.asarray(synthetic[name], float)
        edges = histogram_edges(a, b, name in DISCRETE, bins)
        clip = lambda x: np.clip(x[np.isfinite(x)], edges[0], edges[-1])
        ax.hist(clip(a), edges, density=True, alpha=0.5, label=f"real (n={len(a)})")
        ax.hist(clip(b), edges, density=True, alpha=0.5, label=f"synthetic (n={len(b)})")
        ax.set_xlabel(LABELS[name])
        ax.set_title(f"overlap {scores[name]['overlap']:.3f}, KS {scores[name]['ks']:.3f}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def real_descriptors(statistics) -> dict[str, np.ndarray]:
    """Statistics-side descriptors, restricted to the classified space groups when labels are stored."""
    d = {k: np.asarray(v, float) for k, v in statistics.descriptors.items()}
    if "space_group" in d:
        keep = np.isin(d["space_group"], statistics.space_groups)
        d = {k: v[keep] for k, v in d.items()}
    missing = [k for k in DESCRIPTORS if k not in d]
    if missing:
        raise ValueError(f"statistics hold no real-crystal descriptors {missing}")
    return d


def _hydra_output_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not launched through Hydra
        return Path.cwd()


def run(cfg, statistics=None) -> dict:
    """Sample, compare and write the PNG and JSON; returns the scores (``statistics`` overrides the config's)."""
    from omegaconf import OmegaConf
    from rich.progress import track

    from generator.sampler import CrystalSampler, GeneratorConfig
    from generator.pipeline import default_statistics
    from generator.statistics import Statistics

    if statistics is None:
        statistics = Statistics.load(cfg.statistics_path) if cfg.statistics_path else default_statistics()
    gen = OmegaConf.merge(OmegaConf.structured(GeneratorConfig), cfg.generator)
    sampler = CrystalSampler.from_config(statistics, gen, seed=int(cfg.get("seed", 0)))
    crystals = [sampler.sample() for _ in track(range(int(cfg.n)), description="sampling")]
    real = real_descriptors(statistics)
    synthetic = crystal_descriptors(crystals)
    scores = compare(real, synthetic, int(cfg.bins))
    out = Path(cfg.output_dir) if cfg.output_dir else _hydra_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    plot(real, synthetic, scores, out / "fidelity.png", int(cfg.bins))
    report = {"descriptors": scores, "n": int(cfg.n), "rejections": dict(sampler.rejections),
              "generator": OmegaConf.to_container(gen)}
    (out / "fidelity.json").write_text(json.dumps(report, indent=2))
    for name, s in scores.items():
        print(f"{name:18s} overlap {s['overlap']:.3f}  KS {s['ks']:.3f}  median real {s['real_median']:.3g} "
              f"synthetic {s['synthetic_median']:.3g}")
    print(f"wrote {out / 'fidelity.png'} and {out / 'fidelity.json'}")
    return scores


def main() -> None:
    import hydra

    from generator.config import conf_dir

    @hydra.main(config_path=str(conf_dir()), config_name="compare", version_base="1.3")
    def _main(cfg) -> None:
        run(cfg)

    _main()


if __name__ == "__main__":
    main()
