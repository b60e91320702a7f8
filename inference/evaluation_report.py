"""What ``python -m inference.evaluate`` reports: the result of an evaluation, its text summary, and
the files it writes (``metrics.json``, ``predictions.json`` and the four PNG plots)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.predictor import PatternPrediction


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, non-finite floats as None and keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


@dataclass
class EvaluationResult:
    """Metrics, per-item predictions and the files written."""

    metrics: dict
    predictions: list[PatternPrediction]
    true_space_groups: np.ndarray
    ids: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def write_plots(metrics: dict, out_dir: str | Path, title: str = "") -> list[Path]:
    """The four PNGs of an evaluation (nothing when no item was answered)."""
    from inference import reports

    out_dir = Path(out_dir)
    if not metrics.get("n"):
        return []
    paths = []
    ks = sorted(int(k) for k in metrics["top_k_curve"])
    paths.append(reports.plot_top_k(ks, [metrics["top_k_curve"][k] for k in ks], out_dir / "top_k.png",
                                    f"Top-k accuracy, {title} (n={metrics['n']} in the model's classes)"))
    cm = metrics["confusion_crystal_system"]
    paths.append(reports.plot_confusion(np.asarray(cm["matrix"]), cm["labels"], out_dir / "confusion_crystal_system.png",
                                        f"Crystal systems, {title}"))
    recall = metrics["per_space_group_recall"]
    sgs = sorted(int(s) for s in recall)
    paths.append(reports.plot_recall(sgs, [recall[s] for s in sgs],
                                     [metrics["support_per_space_group"][s] for s in sgs],
                                     out_dir / "recall_per_space_group.png", f"Per-space-group recall, {title}"))
    ca = metrics["coverage_accuracy"]
    acc = [np.nan if a is None else a for a in ca["accuracy"]]
    paths.append(reports.plot_coverage_accuracy(ca["thresholds"], ca["coverage"], acc, out_dir / "coverage_accuracy.png",
                                                metrics["refusal"]["threshold"], f"Refusal, {title}"))
    return paths


def write_results(result: EvaluationResult, out_dir: str | Path, title: str = "") -> list[Path]:
    """``metrics.json``, ``predictions.json`` (one entry per item with its true space group and
    whether the top-1 is right) and the plots of ``result`` in ``out_dir`` (created); the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for name, r, t in zip(result.ids, result.predictions, result.true_space_groups):
        d = {"id": name, **r.to_dict()}
        d["true_space_group"] = int(t)
        d["correct_top1"] = bool(r.ok and r.candidates and r.candidates[0].space_group == int(t))
        items.append(d)
    (out_dir / "metrics.json").write_text(json.dumps(jsonable(result.metrics), indent=2))
    (out_dir / "predictions.json").write_text(json.dumps(jsonable(items), indent=2))
    return [out_dir / "metrics.json", out_dir / "predictions.json"] + write_plots(result.metrics, out_dir, title)


def format_summary(result: EvaluationResult) -> str:
    m = result.metrics
    n, n_all = m["n"], m["n"] + m["n_out_of_scope"]

    def pct(x):
        return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f} %"

    lines = [f"{m['set']}: {m['n_items']} items, {m['n_answered']} answered, {m['n_errors']} unusable, "
             f"{m['n_out_of_scope']} with a space group outside the model's {m['model_classes']} classes"]
    for k in (1, 5, 10):
        if f"top{k}_count" in m:
            lines.append(f"  top-{k:<2} {m[f'top{k}_count']:>5} of {n} scored ({pct(m[f'top{k}'])}), "
                         f"of {n_all} with out-of-scope ({pct(m[f'top{k}_all'])})")
    if m.get("n_answered"):
        lines.append(f"  crystal system {m['crystal_system_count']:>3} of {n_all}  ({pct(m['crystal_system_accuracy_all'])})")
        if "crystal_system_summed_accuracy_all" in m:
            lines.append(f"  crystal system of the summed probabilities {pct(m['crystal_system_summed_accuracy_all'])}, "
                         f"calibration error {pct(m['crystal_system_summed_ece'])}")
        if "ece" in m:
            lines.append(f"  top probability {pct(m['mean_confidence'])} on average against {pct(m['top1_all'])} right: "
                         f"calibration error {pct(m['ece'])}")
        r = m["refusal"]
        acc = "n/a" if r["accuracy_kept"] is None else f"{100 * r['accuracy_kept']:.1f} %"
        source = {"calibration": " (calibrated)", "option": " (given)"}.get(r.get("source", ""), "")
        lines.append(f"  refusal at {r['threshold']:.2f}{source}: {r['kept']} kept, {r['correct_kept']} of them right ({acc})")
        s = m.get("crystal_system_refusal")
        if s:
            acc_s = "n/a" if s["accuracy_kept"] is None else f"{100 * s['accuracy_kept']:.1f} %"
            lines.append(f"  crystal system answered at {s['threshold']:.2f}: {s['kept']} kept, {s['correct_kept']} of "
                         f"them right ({acc_s})")
        temps = m.get("temperatures") or []
        maps = [t for t in m.get("top_label_maps") or [] if t]
        if any(abs(t - 1.0) > 1e-12 for t in temps) or maps:
            lines.append("  calibrated: logits divided by temperature " + ", ".join(f"{t:.3f}" for t in temps)
                         + (f", then the top answer's map ({len(maps)} of {len(temps)} models)" if maps else ""))
        if "log_volume_mae" in m:
            lines.append(f"  log-volume MAE {m['log_volume_mae']:.3f}")
    for name, r, t in zip(result.ids, result.predictions, result.true_space_groups):
        if r.ok:
            top = r.candidates[0]
            mark = "ok " if top.space_group == int(t) else "   "
            rank = next((i + 1 for i, c in enumerate(r.candidates) if c.space_group == int(t)), None)
            lines.append(f"  {mark}{name}: true {int(t)}, predicted {top.space_group} ({top.symbol}) "
                         f"p={top.probability:.2f}" + (f", true at rank {rank}" if rank and rank > 1 else "")
                         + (" [refused]" if r.refused else ""))
        else:
            lines.append(f"  ERR {name}: {r.error}")
    return "\n".join(lines) + "\n"
