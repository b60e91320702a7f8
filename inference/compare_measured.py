"""Measured patterns against simulations of their own crystals, quantitatively.

    python -m inference.compare_measured --manifest data/experimental/xred/manifest.csv \\
        --simulation imperfections --draws 3 --out compare_measured/ [--seed 0]

For every manifest row (``pattern_file`` and ``cif_file`` relative to the CSV, optional ``name``
and ``space_group``) the measurement is read with :func:`inference.readers.read_pattern`, its CIF
with pymatgen, and ``--draws`` patterns of each ``--simulation`` (a name in ``conf/simulation/``
or a YAML path; give it several times for a before/after comparison) are drawn for that crystal.
The measurement and every draw go through :func:`inference.pattern_statistics.pattern_statistics`
on the part of the 2-theta axis both cover: peak widths against angle, background level and
shape, noise level and its Poisson-likeness, zero offset and d-spacing scale against the
crystal's peaks, and the correlation of peak heights with them. The measured radiation is taken
to be the simulation's wavelength with a K-alpha2 line (``--kalpha2-ratio``).

Writes ``statistics.json`` (``{"simulation": name or [names], "simulations": [names],
"patterns": {name: {...}}, "summary": {...}}``) and one ``compare_<simulation>.png`` per
simulation: a panel per pattern with the measurement (minimum subtracted, scaled to [0, 1]) and
the draws on the same linear scale (a square-rooted model input is squared back).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from generator.config import CONF_DIR
from simulator import PatternSimulator, SimulationConfig
from inference.pattern_statistics import Sticks, pattern_statistics
from inference.readers import MeasuredPattern, read_pattern

log = logging.getLogger(__name__)
MIN_OVERLAP_DEG = 5.0  # patterns sharing less of the 2-theta axis with the simulation are skipped


@dataclass
class Row:
    """One manifest row: ``name``, the measured ``pattern`` file, the ``cif`` of its phase, ``space_group`` (0: none)."""

    name: str
    pattern: Path
    cif: Path
    space_group: int


def load_manifest_rows(path: str | Path) -> list[Row]:
    """Rows of a manifest CSV with ``pattern_file`` and ``cif_file`` columns (paths relative to the CSV)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    with path.open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    if not records:
        raise ValueError(f"{path}: the manifest has no rows")
    for key in ("pattern_file", "cif_file"):
        if key not in records[0]:
            raise ValueError(f"{path}: no {key!r} column (columns: {', '.join(records[0])})")
    rows = []
    for i, r in enumerate(records, start=2):
        if not r["pattern_file"] or not r["cif_file"]:
            raise ValueError(f"{path}: line {i}: empty pattern_file or cif_file")
        sg = (r.get("space_group") or "0").strip()
        rows.append(Row(name=(r.get("name") or Path(r["pattern_file"]).parent.name or f"row{i - 1}").strip(),
                        pattern=path.parent / r["pattern_file"], cif=path.parent / r["cif_file"],
                        space_group=int(sg) if sg.isdigit() else 0))
    return rows


def resolve_simulation(spec: str) -> tuple[str, SimulationConfig]:
    """``spec``: a config name in ``conf/simulation/`` or a path to a YAML file -> (name, config)."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"simulation config {path} not found")
        return path.stem, SimulationConfig.from_yaml(path)
    path = CONF_DIR / "simulation" / f"{spec}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (CONF_DIR / "simulation").glob("*.yaml"))
        raise FileNotFoundError(f"no simulation config {spec!r} in {path.parent} (available: {', '.join(names)})")
    return spec, SimulationConfig.from_yaml(path)


def load_structure(cif: Path):
    """pymatgen Structure of a CIF (partial occupancies kept); errors name the file."""
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_file(str(cif))
    except Exception as exc:
        raise ValueError(f"{cif}: cannot be read as a crystal structure ({exc})") from exc


def linear(sim: PatternSimulator, values: np.ndarray) -> np.ndarray:
    """A simulated model input back on a linear intensity scale (undoes the optional square root)."""
    values = np.asarray(values, np.float64)
    return values ** 2 if getattr(sim.config, "sqrt", False) else values


def window(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (x >= lo) & (x <= hi)


def sticks_of(sim: PatternSimulator, structure) -> Sticks:
    peaks = sim.peaks(structure)
    return Sticks(np.asarray(peaks.two_theta, float), np.asarray(peaks.intensity, float), float(peaks.wavelength))


def kalpha2_ratio_of(sim: PatternSimulator) -> float:
    profile = getattr(sim.config, "profile", None)
    return float(getattr(profile, "kalpha2_ratio", 0.5)) if getattr(profile, "kalpha2", False) else 0.0


def _clean(value):
    """JSON-safe: numpy scalars -> Python, NaN/inf -> None, rounded floats."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _scalars(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def median_stats(draws: list[dict]) -> dict:
    """Per key, the median over draws of the scalar statistics that were determined."""
    keys = sorted({k for d in draws for k in _scalars(d)})
    out = {}
    for k in keys:
        vals = [d[k] for d in draws if isinstance(d.get(k), (int, float)) and math.isfinite(d[k])]
        out[k] = float(np.median(vals)) if vals else None
    return out


def spread(items: list[dict]) -> dict:
    """Per scalar key: median, min, max and count over ``items``; per flag: how many are true."""
    out = {}
    for k in sorted({k for d in items for k, v in d.items() if isinstance(v, bool)}):
        flags = [d[k] for d in items if isinstance(d.get(k), bool)]
        out[k] = {"n_true": int(sum(flags)), "n": len(flags)}
    for k in sorted({k for d in items for k in _scalars(d)}):
        vals = np.array([d[k] for d in items if isinstance(d.get(k), (int, float)) and math.isfinite(d[k])])
        if vals.size:
            out[k] = {"median": float(np.median(vals)), "min": float(vals.min()), "max": float(vals.max()),
                      "n": int(vals.size)}
    return out


def compare_row(row: Row, sims: dict[str, PatternSimulator], draws: int, seed: int, index: int,
                kalpha2_ratio: float) -> tuple[dict, MeasuredPattern, dict[str, np.ndarray]]:
    """Statistics of one row's measurement and draws; also returns the measurement and the draws (D, N)."""
    measured = read_pattern(row.pattern)
    structure = load_structure(row.cif)
    x, y = measured.two_theta, measured.intensity
    out: dict = {"pattern_file": str(row.pattern), "cif_file": str(row.cif), "space_group": row.space_group,
                 "measured_range": [float(x[0]), float(x[-1])], "measured_step": float(np.median(np.diff(x))),
                 "simulated": {}}
    measured_cache: dict = {}
    curves = {}
    for j, (name, sim) in enumerate(sims.items()):
        grid = np.asarray(sim.grid, float)
        lo, hi = max(x[0], grid[0]), min(x[-1], grid[-1])
        block: dict = {"grid_range": [float(grid[0]), float(grid[-1])], "grid_step": float(grid[1] - grid[0]),
                       "overlap": [float(lo), float(hi)]}
        out["simulated"][name] = block
        if hi - lo < MIN_OVERLAP_DEG:
            block["error"] = f"the measured range shares only {max(hi - lo, 0):.1f} deg with the simulation grid"
            continue
        sticks = sticks_of(sim, structure)
        key = (round(lo, 4), round(hi, 4))
        if key not in measured_cache:
            m = window(x, lo, hi)
            measured_cache[key] = pattern_statistics(x[m], y[m], sticks, counts=True, kalpha2_ratio=kalpha2_ratio)
        if "measured" not in out:
            out["measured"] = measured_cache[key]
            out["measured_overlap"] = [float(lo), float(hi)]
        elif out["measured_overlap"] != [float(lo), float(hi)]:
            block["measured_same_range"] = measured_cache[key]
        rng = np.random.default_rng([seed, index])
        batch = np.stack([linear(sim, sim.pattern(structure, rng)) for _ in range(draws)])
        curves[name] = batch
        m = window(grid, lo, hi)
        block["draws"] = [pattern_statistics(grid[m], b[m], sticks, counts=False,
                                             kalpha2_ratio=kalpha2_ratio_of(sim)) for b in batch]
        block["median"] = median_stats(block["draws"])
    return out, measured, curves


def summarise(patterns: dict, names: list[str]) -> dict:
    """Spread over patterns of the measured statistics and over all draws of each simulation's."""
    ok = [p for p in patterns.values() if "measured" in p]
    summary = {"n_patterns": len(patterns), "n_compared": len(ok),
               "measured": spread([p["measured"] for p in ok]),
               "measured_range": spread([{"start": p["measured_range"][0], "end": p["measured_range"][1],
                                          "step": p["measured_step"]} for p in patterns.values()
                                         if "measured_range" in p]),
               "simulated": {}}
    for name in names:
        draws = [d for p in ok for d in p["simulated"].get(name, {}).get("draws", [])]
        summary["simulated"][name] = spread(draws)
    return summary


def plot(path: Path, name: str, rows: list[tuple[str, dict, MeasuredPattern]], curves: dict,
         sim: PatternSimulator) -> None:
    """One panel per pattern: measurement (black on grey) and the draws of ``name`` (colours, on top); grey
    bands: outside the measured range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    cols = min(4, max(n, 1))
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.6 * nrows), squeeze=False)
    grid = np.asarray(sim.grid, float)
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple"]
    for ax, (label, stats, measured) in zip(axes.flat, rows):
        x, y = measured.two_theta, measured.intensity
        span = y.max() - y.min()
        scaled = (y - y.min()) / span if span > 0 else y * 0
        ax.fill_between(x, 0, scaled, color="0.75", lw=0)  # stays visible under noisy draws
        ax.plot(x, scaled, color="black", lw=0.5, label="measured")
        for k, draw in enumerate(curves.get(label, [])):
            ax.plot(grid, draw, color=colours[k % len(colours)], lw=0.5, alpha=0.75, label=f"{name} draw {k + 1}")
        ax.axvline(x[0], color="grey", ls="--", lw=0.7)
        ax.axvline(x[-1], color="grey", ls="--", lw=0.7)
        lo, hi = min(x[0], grid[0]), max(x[-1], grid[-1])
        ax.axvspan(lo, x[0], color="grey", alpha=0.15, lw=0)
        ax.axvspan(x[-1], hi, color="grey", alpha=0.15, lw=0)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.05, 1.05)
        m = stats.get("measured", {})
        sim_med = stats["simulated"].get(name, {}).get("median", {})
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        ax.set_title(f"{label} (SG {stats['space_group']}): offset {fmt(m.get('zero_offset'))} deg\n"
                     f"FWHM meas {fmt(m.get('fwhm_median'))} / sim {fmt(sim_med.get('fwhm_median'))} deg", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    fig.supxlabel("2θ (deg); grey: outside the measured range", fontsize=9)
    fig.tight_layout(rect=(0, 0.01, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(manifest: str | Path, simulations: Sequence[str], draws: int, out: str | Path, seed: int = 0,
        kalpha2_ratio: float = 0.5, limit: int | None = None) -> dict:
    """Compare every manifest row (the first ``limit``) with ``draws`` draws of each simulation; write the
    JSON and PNGs into ``out`` and return the JSON's content."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    configs = [resolve_simulation(s) for s in simulations]
    names = [n for n, _ in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"simulation names must differ, got {names}")
    sims = {n: PatternSimulator(c) for n, c in configs}
    rows = load_manifest_rows(manifest)[:limit]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    patterns, plotted, curves = {}, [], {n: {} for n in names}
    for i, row in enumerate(rows):
        try:
            stats, measured, row_curves = compare_row(row, sims, draws, seed, i, kalpha2_ratio)
        except (ValueError, OSError) as exc:
            log.warning("%s: skipped: %s", row.name, exc)
            patterns[row.name] = {"error": str(exc)}
            continue
        patterns[row.name] = stats
        plotted.append((row.name, stats, measured))
        for n, c in row_curves.items():
            curves[n][row.name] = c
        m = stats.get("measured", {})
        log.info("%-12s offset %s deg, FWHM %s deg, noise %s", row.name, m.get("zero_offset"),
                 m.get("fwhm_median"), m.get("noise_sd"))
    result = _clean({"simulation": names[0] if len(names) == 1 else names, "simulations": names, "seed": seed,
                     "draws": draws, "measured_kalpha2_ratio": kalpha2_ratio, "patterns": patterns,
                     "summary": summarise(patterns, names)})
    (out / "statistics.json").write_text(json.dumps(result, indent=1))
    for n in names:
        plot(out / f"compare_{n}.png", n, plotted, curves[n], sims[n])
    return result


SUMMARY_KEYS = ("fwhm_low", "fwhm_mid", "fwhm_high", "scherrer_size_nm", "eta_median", "background_median",
                "background_slope", "background_curvature", "noise_sd", "noise_over_sqrt_counts", "noise_exponent",
                "zero_offset", "d_scale", "intensity_pearson", "intensity_spearman", "strong_reference_peaks_found")


def summary_table(summary: dict) -> str:
    """Medians [min, max] of the main statistics: measured and each simulation side by side."""
    cols = [("measured", summary["measured"])] + list(summary["simulated"].items())
    fmt = lambda s: "-" if s is None else f"{s['median']:.4g} [{s['min']:.3g}, {s['max']:.3g}]"  # noqa: E731
    lines = [f"{'statistic':<30}" + "".join(f"{c:<34}" for c, _ in cols)]
    for key in SUMMARY_KEYS:
        lines.append(f"{key:<30}" + "".join(f"{fmt(s.get(key)):<34}" for _, s in cols))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.compare_measured",
                                 description="Compare measured patterns with simulations of their CIFs.")
    ap.add_argument("--manifest", required=True, help="CSV with pattern_file and cif_file columns")
    ap.add_argument("--simulation", action="append", help="name in conf/simulation/ or YAML path (repeatable; "
                                                          "default: imperfections)")
    ap.add_argument("--draws", type=int, default=3, help="simulated patterns per row and simulation")
    ap.add_argument("--out", default="compare_measured", help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kalpha2-ratio", type=float, default=0.5,
                    help="K-alpha2/K-alpha1 intensity assumed for the measurements (0: monochromatic)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run(args.manifest, args.simulation or ["imperfections"], args.draws, args.out, args.seed,
                     args.kalpha2_ratio, args.limit)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(result["summary"]))
    print(f"wrote {Path(args.out) / 'statistics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
