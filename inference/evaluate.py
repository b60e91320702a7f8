"""Evaluate a checkpoint or an ensemble on a labelled set and write metrics, predictions and plots.

    python -m inference.evaluate [--checkpoint CKPT [CKPT...]] --manifest CSV [--json]
    python -m inference.evaluate --checkpoint CKPT --cif-dir DIR
    python -m inference.evaluate --checkpoint CKPT --heldout

Without ``--checkpoint`` the models bundled in ``inference/pretrained/`` are evaluated (several form
an ensemble); calibration files are applied as in ``inference.predict``.

Labelled sets:

* a manifest CSV of measured patterns (a ``pattern_file``/``file``/``path`` column relative to the
  CSV, a ``space_group`` column, optionally ``name`` and ``wavelength``), read and brought onto
  each model's input like ``inference.predict`` does;
* a folder of CIFs, labelled by spglib under the project's symmetry policy and simulated with each
  model's own training simulator;
* the held-out side of the structure split the checkpoint was trained with (its run config).

Prints top-1/5/10 and crystal-system accuracy (counts for small sets), or with ``--json`` the
metrics as JSON (``top1``, ``top5``, ``crystal_system_accuracy``: fractions of the ``n`` scored
items, those whose space group is among the model's classes; ``top1_all``...: fractions of
``n + n_out_of_scope``, the items outside the classes counted wrong; ``n_items``: items in the set;
the rule of the in-training evaluators, see :mod:`evaluation.testsets`), and writes to the output
folder ``metrics.json``, ``predictions.json`` and the PNGs ``top_k.png``,
``confusion_crystal_system.png``, ``recall_per_space_group.png`` and ``coverage_accuracy.png``.
Defaults come from ``conf/inference/default.yaml`` (``evaluate`` node).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from generator.symmetry import CRYSTAL_SYSTEMS, crystal_system
from inference.ensemble import coverage_accuracy, refused
from inference.readers import PatternError, read_pattern
from inference.predict import (InferenceConfig, PatternPrediction, Predictor, load_config, resolve_checkpoints,
                             split_config_argument)

log = logging.getLogger(__name__)


# -------------------------------------------------------------------------------- labelled sets


@dataclass
class LabelledSet:
    """Items with true space groups; either measured ``patterns`` or ``structures`` to simulate.

    Attributes:
        name: set name for reports.
        ids: one name per item (file path or entry id).
        space_groups: (n,) true International numbers (0 where the item could not be labelled).
        patterns: measured patterns, or the :class:`PatternError` of an unreadable file, per item.
        structures: pymatgen Structures or SyntheticCrystals per item (None where unreadable).
        errors: item index -> why it cannot be used (unreadable CIF, unlabelled...).
        log_volumes: (n,) true natural-log cell volumes where known (NaN elsewhere), or None.
        wavelengths: per-item measurement wavelength from the manifest (None: file or default).
        simulate: for simulated sets that must match the in-training evaluators: a callable taking a
            member's simulation config and returning ((n, N) model inputs, (n,) bool simulated);
            used instead of simulating ``structures`` one by one.
    """

    name: str
    ids: list[str]
    space_groups: np.ndarray
    patterns: Optional[list] = None
    structures: Optional[list] = None
    errors: dict[int, str] = field(default_factory=dict)
    log_volumes: Optional[np.ndarray] = None
    wavelengths: Optional[list] = None
    simulate: Optional[Any] = None

    def __len__(self) -> int:
        return len(self.ids)


def _column(row: dict, names: Sequence[str]) -> Optional[str]:
    for n in names:
        for key, value in row.items():
            if key is not None and key.strip().lower() == n and value not in (None, ""):
                return value.strip()
    return None


def load_manifest(path: str | Path) -> LabelledSet:
    """Measured patterns listed in a manifest CSV (file paths relative to the CSV's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: the manifest has no rows")
    ids, sgs, patterns, errors, wls = [], [], [], {}, []
    for i, row in enumerate(rows):
        file = _column(row, ("pattern_file", "file", "path", "pattern"))
        sg = _column(row, ("space_group", "spacegroup", "sg", "label"))
        name = _column(row, ("name", "id")) or file or f"row {i + 2}"
        ids.append(name)
        wl = _column(row, ("wavelength",))
        wls.append(float(wl) if wl else None)
        try:
            sgs.append(int(sg) if sg is not None else 0)
            if not 1 <= sgs[-1] <= 230:
                raise ValueError
        except ValueError:
            sgs[-1:] = [0]
            errors[i] = f"{path}, row {i + 2}: space group {sg!r} is not a number in 1..230"
        if file is None:
            patterns.append(PatternError(f"{path}, row {i + 2}", "no pattern file given"))
            errors.setdefault(i, f"{path}, row {i + 2}: no pattern file given")
            continue
        try:
            patterns.append(read_pattern(path.parent / file))
        except PatternError as err:
            patterns.append(err)
    return LabelledSet(name=path.stem if path.stem != "manifest" else path.parent.name, ids=ids,
                       space_groups=np.asarray(sgs, np.int64), patterns=patterns, errors=errors, wavelengths=wls)


def load_cif_dir(path: str | Path, symprec: Optional[float] = None, limit: Optional[int] = None) -> LabelledSet:
    """CIF files under ``path`` (recursively), labelled by spglib under the project's symmetry policy."""
    import warnings

    from pymatgen.core import Structure

    from generator.crystal import SyntheticCrystal
    from generator.symmetry import SymmetryTolerance

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"CIF folder {path} not found")
    files = sorted(path.rglob("*.cif"))
    if limit is not None:
        files = files[: int(limit)]
    if not files:
        raise ValueError(f"{path}: no *.cif files")
    tol = SymmetryTolerance() if symprec is None else SymmetryTolerance(symprec=float(symprec))
    ids, sgs, structures, errors, logv = [], [], [], {}, []
    for i, f in enumerate(files):
        ids.append(str(f.relative_to(path)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = Structure.from_file(str(f))
            c = SyntheticCrystal.from_structure(s)
            sg = tol.space_group(c.lattice, c.frac_coords, c.atomic_numbers)
            if sg == 0:
                raise ValueError("spglib finds no space group")
            structures.append(s)
            sgs.append(sg)
            logv.append(float(np.log(s.volume)))
        except Exception as exc:  # any unreadable CIF is reported, the others are evaluated
            structures.append(None)
            sgs.append(0)
            logv.append(np.nan)
            errors[i] = f"{f}: cannot be used ({exc})"
    return LabelledSet(name=path.name, ids=ids, space_groups=np.asarray(sgs, np.int64), structures=structures,
                       errors=errors, log_volumes=np.asarray(logv))


def heldout_config(run_config: Optional[dict], limit: Optional[int] = None, seed: Optional[int] = None):
    """The run's ``evaluation`` settings (``evaluation.config.EvaluationConfig``) with ``limit`` as
    ``max_test_crystals`` and ``seed`` as its seed where given."""
    from cluster.config import to_dataclass
    from evaluation.config import EvaluationConfig

    node = (run_config or {}).get("evaluation") if isinstance(run_config, dict) else None
    known = set(EvaluationConfig.__dataclass_fields__)
    cfg = to_dataclass(EvaluationConfig, {k: v for k, v in dict(node or {}).items() if k in known})
    if limit is not None:
        cfg.max_test_crystals = int(limit)
    if seed is not None:
        cfg.seed = int(seed)
    return cfg


def load_heldout(run_config: dict, limit: Optional[int] = None, seed: Optional[int] = None) -> LabelledSet:
    """The held-out (test) side of the split a checkpoint was trained with (``meta.config``), as the
    in-training evaluators score it (their "test_spglib" set): the crystals of
    ``evaluation.testsets.heldout_ids`` with ``limit`` as ``max_test_crystals`` (None: the run's
    ``evaluation.max_test_crystals``) and ``seed`` (None: the run's ``evaluation.seed``), spglib labels,
    and the patterns of ``evaluation.testsets.heldout_patterns`` (same simulation stream, impurity
    partners, dtype and pattern cache)."""
    from evaluation.testsets import heldout_ids, heldout_patterns
    from generator.pipeline import prepare_data

    prepared = prepare_data(run_config or None)
    cfg = heldout_config(run_config, limit, seed)
    ids = heldout_ids(prepared.split.test_ids, cfg.max_test_crystals, cfg.seed)
    records = [prepared.database[i] for i in ids]

    def simulate(simulation_cfg):
        from simulator import make_representation

        got, _, patterns, ok = heldout_patterns(prepared, cfg, make_representation(simulation_cfg or None))
        if got != ids:
            raise RuntimeError("held-out crystals differ between the listing and the simulation")
        x = np.asarray(patterns, np.float32)
        x[~ok] = 0.0
        return x, ok

    return LabelledSet(name=f"heldout-{prepared.split.kind}", ids=ids,
                       space_groups=np.asarray([r.space_group for r in records], np.int64),
                       structures=[r.to_crystal() for r in records],
                       log_volumes=np.log(np.asarray([r.volume for r in records], float)), simulate=simulate)


# ---------------------------------------------------------------------------------- predicting


def _simulated_predictions(predictor: Predictor, data: LabelledSet, seed: int) -> list[PatternPrediction]:
    """Simulate every structure with each member's representation (2-theta, 1/d or G(r)) and predict."""
    from simulator import make_representation

    n = len(data)
    inputs: dict[str, np.ndarray] = {}
    ok = np.array([i not in data.errors and data.structures[i] is not None for i in range(n)], bool)
    errors = dict(data.errors)
    for m in predictor.members:
        key = predictor.spec_keys[id(m)]
        if key in inputs:
            continue
        if data.simulate is not None:
            x, simulated = data.simulate(m.simulation or None)
            for i in np.flatnonzero(ok & ~simulated):
                ok[i] = False
                errors[i] = f"{data.ids[i]}: simulation failed"
            inputs[key] = x
            continue
        sim = make_representation(m.simulation or None)
        rng = np.random.default_rng(seed)
        x = np.zeros((n, len(sim.grid)), np.float32)
        for i in np.flatnonzero(ok):
            try:
                x[i] = sim.patterns([data.structures[i]], rng)[0]  # = PatternSimulator.pattern for 2-theta
            except Exception as exc:  # a structure the simulator cannot handle is reported, not fatal
                ok[i] = False
                errors[i] = f"{data.ids[i]}: simulation failed ({exc})"
        inputs[key] = x
    results = [PatternPrediction(source=data.ids[i], error=errors.get(i, "not evaluated"),
                                 n_members=len(predictor.members)) for i in range(n)]
    good = np.flatnonzero(ok)
    if len(good):
        ens = predictor.ensemble([inputs[predictor.spec_keys[id(m)]][good] for m in predictor.members])
        for j, i in enumerate(good):
            results[i] = PatternPrediction(source=data.ids[i], n_members=len(predictor.members), coverage=1.0)
            predictor.fill_prediction(results[i], ens, j)
    return results


def predict_set(predictor: Predictor, data: LabelledSet, seed: int = 0,
                wavelength: Optional[float] = None) -> list[PatternPrediction]:
    """One prediction (or error) per item of ``data``."""
    if data.patterns is not None:
        results: list[PatternPrediction] = [None] * len(data)  # type: ignore[list-item]
        groups: dict[Optional[float], list[int]] = {}
        for i in range(len(data)):
            wl = wavelength if wavelength is not None else (data.wavelengths[i] if data.wavelengths else None)
            groups.setdefault(wl, []).append(i)
        for wl, idx in groups.items():
            for i, r in zip(idx, predictor.predict_patterns([data.patterns[i] for i in idx], wavelength=wl)):
                results[i] = r
        for i, msg in data.errors.items():
            if results[i].ok:
                results[i].error = msg
        return results
    return _simulated_predictions(predictor, data, seed)


# ------------------------------------------------------------------------------------ metrics


def evaluate_predictions(results: Sequence[PatternPrediction], true_space_groups: Sequence[int],
                         model_space_groups: Sequence[int], max_k: int = 10, n_thresholds: int = 21,
                         refusal_threshold: float = 0.45, true_log_volumes: Optional[np.ndarray] = None) -> dict:
    """Metrics of predictions against true labels, under the rule the in-training evaluators follow
    (:mod:`evaluation.testsets`):

    * ``n``: scored items (answered, true space group among the model's classes); ``top{k}``,
      ``crystal_system_accuracy`` and ``balanced_accuracy`` are over them;
    * ``n_out_of_scope`` (alias ``n_unclassified``): answered items whose true space group the model
      does not know; ``top{k}_all`` and ``crystal_system_accuracy_all`` are over ``n + n_out_of_scope``
      with those counted wrong for the space group (their crystal system can still be right);
    * ``n_items`` all items, ``n_answered``, ``n_errors`` (unreadable, unusable: in neither figure);
      ``top{k}_count`` right answers, ``top{k}_of_items`` = ``top{k}_count / n_items``.

    The confusion matrix, per-group recall and coverage-accuracy curve are over the answered items,
    out-of-scope ones included (they can never be right).
    """
    from evaluation.metrics import scope_metrics, summarize

    true = np.asarray(true_space_groups, np.int64)
    answered = np.array([r.ok and t > 0 for r, t in zip(results, true)], bool)
    n_all = len(results)
    classes = [int(s) for s in model_space_groups]
    extra = sorted({int(t) for t in true[answered]} - set(classes))
    all_classes = classes + extra
    index = {s: i for i, s in enumerate(all_classes)}
    ks = list(range(1, max(1, int(max_k)) + 1))
    n_oos = int(sum(int(t) not in set(classes) for t in true[answered]))
    out: dict[str, Any] = {"n": int(answered.sum()) - n_oos, "n_out_of_scope": n_oos, "n_unclassified": n_oos,
                           "n_items": n_all, "n_answered": int(answered.sum()), "n_errors": int(n_all - answered.sum()),
                           "model_classes": len(classes)}
    if answered.any():
        probs = np.stack([results[i].probabilities for i in np.flatnonzero(answered)])
        labels = np.array([index[int(t)] for t in true[answered]], np.int64)
        lv_pred = lv_true = None
        if true_log_volumes is not None:
            pv = np.array([np.log(results[i].volume) if results[i].volume else np.nan for i in np.flatnonzero(answered)])
            tv = np.asarray(true_log_volumes, float)[answered]
            keep = np.isfinite(pv) & np.isfinite(tv)
            if keep.any():
                lv_pred, lv_true = pv[keep], tv[keep]
        # padded classes score -1: never predicted, never in a top-k (see the ranks below)
        padded = np.concatenate([probs[:, :len(classes)], -np.ones((len(probs), len(extra)))], axis=1)
        summary = summarize(padded, labels, all_classes, topk=[1])  # recall per group: out-of-scope ones too
        inside = labels < len(classes)
        scored = summarize(probs[inside, :len(classes)], labels[inside], classes, topk=[1])
        for key in ("crystal_system_accuracy", "balanced_accuracy"):
            summary[key] = scored[key]
        if lv_pred is not None:
            summary["log_volume_mae"] = float(np.mean(np.abs(lv_pred - lv_true)))
        summary.pop("n", None)
        summary.pop("top1", None)
        out.update(summary)
        order = np.argsort(-probs, axis=1, kind="stable")
        rank = (order == labels[:, None]).argmax(axis=1)  # 0-based rank of the true class
        rank = np.where(inside, rank, np.iinfo(np.int64).max)  # unknown to the model: never found
        tops = {f"top{k}": float((rank[inside] < k).mean()) if inside.any() else float("nan") for k in ks}
        out.update(tops)
        out.update({k: v for k, v in scope_metrics({"n": out["n"], **tops}, n_oos, ks).items() if k.endswith("_all")})
        out["top_k_curve"] = {int(k): tops[f"top{k}"] for k in ks}
        for k in ks:
            out[f"top{k}_count"] = int((rank < k).sum())
            out[f"top{k}_of_items"] = float((rank < k).sum() / n_all)
        pred = probs.argmax(axis=1)  # always one of the model's classes
        systems = list(CRYSTAL_SYSTEMS)
        cm = np.zeros((7, 7), np.int64)
        for t, p in zip(labels, pred):
            cm[systems.index(crystal_system(all_classes[t])), systems.index(crystal_system(all_classes[p]))] += 1
        out["confusion_crystal_system"] = {"labels": systems, "matrix": cm.tolist()}
        out["crystal_system_count"] = int(np.trace(cm))
        out["crystal_system_accuracy_all"] = float(np.trace(cm) / len(labels))
        support = np.bincount(labels, minlength=len(all_classes))
        out["support_per_space_group"] = {int(all_classes[i]): int(c) for i, c in enumerate(support) if c}
        curve = coverage_accuracy(probs, np.where(labels < len(classes), labels, -1), np.linspace(0.0, 1.0, max(2, int(n_thresholds))))
        out["coverage_accuracy"] = curve.to_dict()
        kept = ~refused(probs, refusal_threshold)
        out["refusal"] = {"threshold": refusal_threshold, "kept": int(kept.sum()),
                          "coverage": float(kept.mean()),
                          "accuracy_kept": float((pred[kept] == labels[kept]).mean()) if kept.any() else None,
                          "correct_kept": int((pred[kept] == labels[kept]).sum())}
    else:
        out["top_k_curve"] = {int(k): float("nan") for k in ks}
        out["crystal_system_accuracy"] = out["crystal_system_accuracy_all"] = float("nan")
        out["crystal_system_count"] = 0
        for k in ks:
            out[f"top{k}"] = out[f"top{k}_all"] = float("nan")
            out[f"top{k}_count"] = 0
            out[f"top{k}_of_items"] = 0.0
    return out


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
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


def evaluate(predictor: Predictor, data: LabelledSet, out_dir: str | Path | None = None,
             cfg: InferenceConfig | None = None, wavelength: Optional[float] = None,
             checkpoints: Sequence[str] = ()) -> EvaluationResult:
    """Predict every item of ``data``, compute the metrics and (with ``out_dir``) write JSON and plots."""
    cfg = cfg if cfg is not None else predictor.cfg
    ev = cfg.evaluate
    results = predict_set(predictor, data, seed=ev.seed, wavelength=wavelength)
    metrics = evaluate_predictions(results, data.space_groups, predictor.space_groups, ev.max_k, ev.thresholds,
                                   predictor.refusal_threshold, data.log_volumes)
    if "refusal" in metrics:
        metrics["refusal"]["source"] = predictor.threshold_source
    metrics = {"set": data.name, "checkpoints": [str(c) for c in checkpoints],
               "temperatures": predictor.temperatures, **metrics}
    out = EvaluationResult(metrics=metrics, predictions=results, true_space_groups=data.space_groups, ids=list(data.ids))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        items = []
        for name, r, t in zip(data.ids, results, data.space_groups):
            d = {"id": name, **r.to_dict()}
            d["true_space_group"] = int(t)
            d["correct_top1"] = bool(r.ok and r.candidates and r.candidates[0].space_group == int(t))
            items.append(d)
        (out_dir / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
        (out_dir / "predictions.json").write_text(json.dumps(_jsonable(items), indent=2))
        out.files = [out_dir / "metrics.json", out_dir / "predictions.json"] + write_plots(metrics, out_dir, data.name)
    return out


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
        r = m["refusal"]
        acc = "n/a" if r["accuracy_kept"] is None else f"{100 * r['accuracy_kept']:.1f} %"
        source = {"calibration": " (calibrated)", "option": " (given)"}.get(r.get("source", ""), "")
        lines.append(f"  refusal at {r['threshold']:.2f}{source}: {r['kept']} kept, {r['correct_kept']} of them right ({acc})")
        temps = m.get("temperatures") or []
        if any(abs(t - 1.0) > 1e-12 for t in temps):
            lines.append("  calibrated: logits divided by temperature " + ", ".join(f"{t:.3f}" for t in temps))
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, argv = split_config_argument(argv)
    cfg = load_config(config_path)
    ev = cfg.evaluate
    ap = argparse.ArgumentParser(prog="python -m inference.evaluate", description="Evaluate classifiers on a labelled set.")
    ap.add_argument("--checkpoint", "-c", nargs="+", default=list(cfg.checkpoints),
                    help="checkpoint(s) (ensemble); default: config 'checkpoints', else the bundled models")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--manifest", default=ev.manifest, help="CSV of measured patterns with space groups")
    src.add_argument("--cif-dir", default=ev.cif_dir, help="folder of CIFs to simulate")
    src.add_argument("--heldout", action="store_true", default=ev.heldout,
                     help="the held-out side of the checkpoint's structure split")
    ap.add_argument("--output-dir", default=ev.output_dir, help=f"where results go (default {ev.output_dir})")
    ap.add_argument("--wavelength", type=float, default=cfg.wavelength, help="measurement wavelength (A)")
    ap.add_argument("--threshold", type=float, default=None,
                    help=f"refusal threshold (default: the calibrated one, else {cfg.refusal_threshold})")
    ap.add_argument("--top-k", type=int, default=cfg.top_k, help="candidates stored per item")
    ap.add_argument("--limit", type=int, default=ev.limit,
                    help="at most this many structures: the first CIFs; for --heldout the in-training "
                         "evaluation.max_test_crystals (default: the run's), same draw and seed")
    ap.add_argument("--device", default=cfg.device)
    ap.add_argument("--json", action="store_true",
                    help="print the metrics as JSON (top1, top5, crystal_system_accuracy, n, ...)")
    ap.add_argument("--config", default=None, help="inference config YAML")
    args = ap.parse_args(argv)
    if not (args.manifest or args.cif_dir or args.heldout):
        ap.error("give one of --manifest, --cif-dir or --heldout")
    cfg.device, cfg.wavelength = args.device, args.wavelength
    cfg.top_k = max(args.top_k, ev.max_k)
    try:
        checkpoints = resolve_checkpoints(args.checkpoint)
        predictor = Predictor.from_checkpoints(checkpoints, cfg, refusal_threshold=args.threshold)
        if args.manifest:
            data = load_manifest(args.manifest)
        elif args.cif_dir:
            data = load_cif_dir(args.cif_dir, ev.symprec, args.limit)
        elif args.heldout:
            from trainer.checkpoint import load_meta

            data = load_heldout(load_meta(checkpoints[0]).config, args.limit)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = evaluate(predictor, data, args.output_dir, cfg, args.wavelength, checkpoints)
    if args.json:
        print(json.dumps(_jsonable(result.metrics), indent=2))
    else:
        print(format_summary(result), end="")
        print(f"results in {args.output_dir}: " + ", ".join(p.name for p in result.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
