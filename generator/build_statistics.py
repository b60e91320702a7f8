"""Command line: build the generation statistics of a database (``python -m generator.statistics``).

Parses the database (parallel, cached), splits it, extracts the statistics and writes into the
output folder: ``statistics/`` (JSON + NPZ), ``split.json``, ``skipped.json``, ``report.json``
and ``space_groups.png``; prints a summary table.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from generator.config import CONF_DIR, BuildStatisticsConfig


def summary_table(report: dict):
    """A rich table of a :func:`generator.pipeline.prepare_data` report."""
    from rich.table import Table

    table = Table(title=f"statistics of {report['database']} ({report['split_kind']} split, seed {report['seed']})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("entries parsed", f"{report['parsed']:,}")
    for reason, n in sorted(report["skipped"].items()):
        table.add_row(f"skipped: {reason}", f"{n:,}")
    for reason, n in sorted(report["filtered"].items()):
        table.add_row(f"filtered: {reason}", f"{n:,}")
    table.add_row("statistics side crystals", f"{report['n_statistics']:,}")
    table.add_row("test side crystals", f"{report['n_test']:,}")
    table.add_row(f"classes (>= {report['min_crystals_per_class']} statistics crystals)", f"{report['n_classes']}")
    table.add_row("statistics crystals in classes", f"{report['n_classified_crystals']:,}")
    sec = report["seconds"]
    cached = "cached" if report["database_cached"] else "parsed"
    table.add_row(f"time: database ({cached})", f"{sec['database']:.1f} s")
    table.add_row("time: split + statistics", f"{sec['split'] + sec['statistics']:.1f} s")
    table.add_row("time: total", f"{sec['total']:.1f} s")
    return table


def plot_space_groups(prepared, path: str | Path) -> Path:
    """Bar chart of crystals per space group on each side, classified groups marked (cf. Fig. 1 of the paper)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    db, split, stats = prepared.database, prepared.split, prepared.statistics
    stat = Counter(db[i].space_group for i in split.statistics_ids)
    test = Counter(db[i].space_group for i in split.test_ids)
    groups = np.arange(1, 231)
    s = np.array([stat[g] for g in groups])
    t = np.array([test[g] for g in groups])
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.bar(groups, s, width=1.0, color="tab:blue", label=f"statistics side ({s.sum():,})")
    ax.bar(groups, t, bottom=s, width=1.0, color="tab:orange", alpha=0.8, label=f"test side ({t.sum():,})")
    threshold = stats.provenance.get("min_crystals_per_class")
    if threshold:
        ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"class threshold ({threshold} statistics crystals)")
    ax.set_yscale("log")
    ax.set_xlim(0.5, 230.5)
    ax.set_xlabel("space group")
    ax.set_ylabel("crystals")
    ax.set_title(f"{db.name}: {stats.n_classes} classified space groups", pad=28)
    for edge in (2, 15, 74, 142, 167, 194):  # crystal-system boundaries
        ax.axvline(edge + 0.5, color="grey", lw=0.5)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.07), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(cfg) -> dict:
    """Build, save and summarise; returns the report. ``cfg``: a build_statistics config node."""
    from rich.console import Console

    from generator.pipeline import prepare_data

    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    unknown = set(container) - set(BuildStatisticsConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"build_statistics: unknown option(s) {sorted(unknown)}")
    out = container.get("output_dir")
    if not out:
        from hydra.core.hydra_config import HydraConfig

        out = HydraConfig.get().runtime.output_dir
    out = Path(out)
    prepared = prepare_data(container)
    prepared.statistics.save(out / "statistics")
    prepared.split.save(out / "split.json")
    prepared.database.save_skip_report(out / "skipped.json")
    report = dict(prepared.report, output_dir=str(out))
    if container.get("plot", True):
        report["plot"] = str(plot_space_groups(prepared, out / "space_groups.png"))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    console = Console()
    console.print(summary_table(report))
    console.print(f"written to {out}")
    return report


# An absolute path: Hydra reads a relative one as a Python package when run with -m.
@hydra.main(config_path=str(CONF_DIR), config_name="build_statistics", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
