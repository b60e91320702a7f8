"""Evaluate a checkpoint or an ensemble on a labelled set and write metrics, predictions and plots.

    python -m inference.evaluate [--checkpoint CKPT [CKPT...]] --manifest CSV [--json]
    python -m inference.evaluate --checkpoint CKPT --cif-dir DIR
    python -m inference.evaluate --checkpoint CKPT --heldout
    python -m inference.evaluate --checkpoint CKPT --heldout --simulation default   # scored on pure patterns

Without ``--checkpoint`` the models bundled in ``inference/pretrained/`` are evaluated (several form
an ensemble); calibration files are applied as in ``inference.predict``.

Labelled sets:

* a manifest CSV of measured patterns (a ``pattern_file``/``file``/``path`` column relative to the
  CSV, a ``space_group`` column, optionally ``name`` and ``wavelength``), read and brought onto
  each model's input like ``inference.predict`` does;
* a folder of CIFs, labelled by spglib under the project's symmetry policy and simulated with each
  model's own training simulator;
* the held-out side of the structure split the checkpoint was trained with (its run config).

CIF and held-out sets are simulated as each model was trained, or with ``--simulation NAME``
(``conf/simulation/NAME.yaml``) on each model's grid and wavelength: how a model trained on
measured-looking patterns reads pure ones, and the other way round.

Prints top-1/5/10 and crystal-system accuracy (counts for small sets), or with ``--json`` the
metrics as JSON (``top1``, ``top5``, ``crystal_system_accuracy``: fractions of the ``n`` scored
items, those whose space group is among the model's classes; ``top1_all``...: fractions of
``n + n_out_of_scope``, the items outside the classes counted wrong; ``n_items``: items in the set;
the rule of the in-training evaluators, see :mod:`evaluation.testsets`), and writes to the output
folder ``metrics.json``, ``predictions.json`` and the PNGs ``top_k.png``,
``confusion_crystal_system.png``, ``recall_per_space_group.png`` and ``coverage_accuracy.png``.
Defaults come from ``conf/inference/default.yaml`` (``evaluate`` node). This module predicts and
scores; the sets are loaded by :mod:`inference.labelled_sets` and the summary and files are written
by :mod:`inference.evaluation_report` (their names are importable from here too).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from generator.symmetry import CRYSTAL_SYSTEMS, crystal_system
from inference.calibration import expected_calibration_error
from inference.command_line import add_checkpoint_argument, config_and_arguments, load_predictor
from inference.config import InferenceConfig
from inference.ensemble import coverage_accuracy, refused
from inference.evaluation_report import EvaluationResult, format_summary, jsonable, write_plots, write_results
from inference.labelled_sets import LabelledSet, heldout_config, load_cif_dir, load_heldout, load_manifest
from inference.predictor import PatternPrediction, Predictor
from inference.space_groups import crystal_system_membership

__all__ = ["EvaluationResult", "LabelledSet", "evaluate", "evaluate_predictions", "format_summary", "heldout_config",
           "load_cif_dir", "load_heldout", "load_manifest", "main", "predict_set", "write_plots"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- predicting


def _simulated_predictions(predictor: Predictor, data: LabelledSet, seed: int,
                           simulation: Optional[str] = None) -> list[PatternPrediction]:
    """Simulate every structure with each member's representation (2-theta, 1/d or G(r)) and predict; with
    ``simulation`` (a conf/simulation name) its patterns instead, on each member's grid and wavelength."""
    from inference.simulations import simulation_on_grid
    from simulator import make_representation

    n = len(data)
    inputs: dict[str, np.ndarray] = {}
    ok = np.array([i not in data.errors and data.structures[i] is not None for i in range(n)], bool)
    errors = dict(data.errors)
    for m in predictor.members:
        key = predictor.spec_keys[id(m)]
        if key in inputs:
            continue
        sim_cfg = simulation_on_grid(simulation, m.simulation) if simulation else (m.simulation or None)
        if data.simulate is not None:
            x, simulated = data.simulate(sim_cfg)
            for i in np.flatnonzero(ok & ~simulated):
                ok[i] = False
                errors[i] = f"{data.ids[i]}: simulation failed"
            inputs[key] = x
            continue
        sim = make_representation(sim_cfg)
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
        for i in good:
            results[i] = PatternPrediction(source=data.ids[i], n_members=len(predictor.members), coverage=1.0)
        predictor.fill_predictions(results, good, [inputs[predictor.spec_keys[id(m)]][good] for m in predictor.members])
    return results


def predict_set(predictor: Predictor, data: LabelledSet, seed: int = 0, wavelength: Optional[float] = None,
                simulation: Optional[str] = None) -> list[PatternPrediction]:
    """One prediction (or error) per item of ``data``; ``simulation``: see :func:`_simulated_predictions`
    (ignored for measured patterns)."""
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
    return _simulated_predictions(predictor, data, seed, simulation)


# ------------------------------------------------------------------------------------ metrics


def summed_crystal_system_metrics(probs: np.ndarray, true_systems: np.ndarray, classes: Sequence[int],
                                  inside: np.ndarray) -> dict:
    """The crystal system answered by summing the probabilities of its space groups (what
    ``inference.predict`` lists): its accuracy over the scored items (``crystal_system_summed_accuracy``)
    and over all answered ones (``_all``: a space group outside the classes can still have its system
    right), and the calibration error of its probability over all answered ones.

    probs (B, C) over ``classes``; true_systems (B,) indices into ``CRYSTAL_SYSTEMS``; inside (B,) bool."""
    per_system = probs @ crystal_system_membership(classes)
    right = per_system.argmax(axis=1) == true_systems
    return {"crystal_system_summed_accuracy": float(right[inside].mean()) if inside.any() else float("nan"),
            "crystal_system_summed_accuracy_all": float(right.mean()),
            "crystal_system_summed_ece": expected_calibration_error(per_system, true_systems)}


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
    * ``crystal_system_summed_accuracy`` (``_all``, ``_ece``): the crystal system of the summed
      probabilities, see :func:`summed_crystal_system_metrics`.
    * ``ece`` and ``mean_confidence``: the expected calibration error of the top space-group
      probability (15 bins) and its mean, over all answered items (out-of-scope ones counted wrong),
      to set beside ``top1_all``: how far the probabilities shown run ahead of the answers' accuracy.

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
        system_of = np.array([systems.index(crystal_system(int(sg))) for sg in all_classes], np.int64)
        true_systems = system_of[labels]
        cm = np.zeros((7, 7), np.int64)
        np.add.at(cm, (true_systems, system_of[pred]), 1)
        out["confusion_crystal_system"] = {"labels": systems, "matrix": cm.tolist()}
        out["crystal_system_count"] = int(np.trace(cm))
        out["crystal_system_accuracy_all"] = float(np.trace(cm) / len(labels))
        out.update(summed_crystal_system_metrics(probs, true_systems, classes, inside))
        scored_labels = np.where(inside, labels, -1)   # out of scope: a class the model cannot give
        out["ece"] = expected_calibration_error(probs, scored_labels)
        out["mean_confidence"] = float(probs.max(axis=1).mean())
        support = np.bincount(labels, minlength=len(all_classes))
        out["support_per_space_group"] = {int(all_classes[i]): int(c) for i, c in enumerate(support) if c}
        curve = coverage_accuracy(probs, scored_labels, np.linspace(0.0, 1.0, max(2, int(n_thresholds))))
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


def crystal_system_refusal(results: Sequence[PatternPrediction], true_space_groups: Sequence[int],
                           threshold: Optional[float]) -> Optional[dict]:
    """The crystal-system answers kept at the crystal-system threshold (the predictor's
    ``crystal_system_refused`` flags) over the answered items, out-of-scope ones included (their crystal
    system is known): {"threshold", "kept", "coverage", "accuracy_kept", "correct_kept"}; None
    without a threshold."""
    if threshold is None:
        return None
    rows = [(r, int(t)) for r, t in zip(results, true_space_groups)
            if r.ok and int(t) > 0 and r.crystal_system_refused is not None]
    kept = [r.crystal_systems[0].crystal_system == crystal_system(t) for r, t in rows if not r.crystal_system_refused]
    return {"threshold": float(threshold), "kept": len(kept), "coverage": len(kept) / len(rows) if rows else float("nan"),
            "accuracy_kept": float(np.mean(kept)) if kept else None, "correct_kept": int(sum(kept))}


def evaluate(predictor: Predictor, data: LabelledSet, out_dir: str | Path | None = None,
             cfg: InferenceConfig | None = None, wavelength: Optional[float] = None,
             checkpoints: Sequence[str] = ()) -> EvaluationResult:
    """Predict every item of ``data``, compute the metrics and (with ``out_dir``) write JSON and plots."""
    cfg = cfg if cfg is not None else predictor.cfg
    ev = cfg.evaluate
    results = predict_set(predictor, data, seed=ev.seed, wavelength=wavelength, simulation=ev.simulation)
    metrics = evaluate_predictions(results, data.space_groups, predictor.space_groups, ev.max_k, ev.thresholds,
                                   predictor.refusal_threshold, data.log_volumes)
    if "refusal" in metrics:
        metrics["refusal"]["source"] = predictor.threshold_source
    metrics["crystal_system_refusal"] = crystal_system_refusal(results, data.space_groups,
                                                               predictor.crystal_system_threshold)
    metrics = {"set": data.name, "simulation": None if data.patterns is not None else (ev.simulation or "model"),
               "checkpoints": [str(c) for c in checkpoints],
               "temperatures": predictor.temperatures, "top_label_maps": predictor.top_label_maps, **metrics}
    out = EvaluationResult(metrics=metrics, predictions=results, true_space_groups=data.space_groups, ids=list(data.ids))
    if out_dir is not None:
        out.files = write_results(out, out_dir, data.name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cfg, argv = config_and_arguments(argv)
    ev = cfg.evaluate
    ap = argparse.ArgumentParser(prog="python -m inference.evaluate", description="Evaluate classifiers on a labelled set.")
    add_checkpoint_argument(ap, help="checkpoint(s) (ensemble; the flag may repeat); default: config "
                                     "'checkpoints', else the bundled models")
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
    ap.add_argument("--seed", type=int, default=None,
                    help="--heldout: the seed of the crystal draw and its patterns (default: the run's "
                         "evaluation.seed); the same seed scores runs of other seeds on the same patterns")
    ap.add_argument("--simulation", default=ev.simulation,
                    help="--heldout / --cif-dir: simulate with conf/simulation/NAME.yaml (or a YAML path) on each "
                         "model's grid and wavelength instead of the model's own simulation, e.g. a model trained "
                         "on measured-looking patterns scored on pure ones")
    ap.add_argument("--device", default=cfg.device)
    ap.add_argument("--json", action="store_true",
                    help="print the metrics as JSON (top1, top5, crystal_system_accuracy, n, ...)")
    ap.add_argument("--config", default=None, help="inference config YAML")
    args = ap.parse_args(argv)
    if not (args.manifest or args.cif_dir or args.heldout):
        ap.error("give one of --manifest, --cif-dir or --heldout")
    if args.simulation and args.manifest:
        ap.error("--simulation applies to simulated sets (--heldout, --cif-dir), not to measured patterns")
    ev.simulation = args.simulation or None
    cfg.device, cfg.wavelength = args.device, args.wavelength
    cfg.top_k = max(args.top_k, ev.max_k)
    try:
        checkpoints, predictor = load_predictor(args.checkpoint, cfg, args.threshold)
        if ev.simulation:  # a bad name or a model it cannot feed fails here, before any set is built
            from inference.simulations import simulation_on_grid

            for m in predictor.members:
                simulation_on_grid(ev.simulation, m.simulation)
        if args.manifest:
            data = load_manifest(args.manifest)
        elif args.cif_dir:
            data = load_cif_dir(args.cif_dir, ev.symprec, args.limit)
        elif args.heldout:
            from trainer.checkpoint import load_meta

            data = load_heldout(load_meta(checkpoints[0]).config, args.limit, args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = evaluate(predictor, data, args.output_dir, cfg, args.wavelength, checkpoints)
    if args.json:
        print(json.dumps(jsonable(result.metrics), indent=2))
    else:
        print(format_summary(result), end="")
        print(f"results in {args.output_dir}: " + ", ".join(p.name for p in result.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
