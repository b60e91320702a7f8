"""Calibration maps after the temperature, side by side on real crystals of unseen structure types.

    python benchmarks/bench_calibration_maps.py [--checkpoint RUN] [--n 5000] [--fit 2000 [3000 ...]] [--splits 3]

Simulates ``n`` held-out crystals outside the evaluation draw of ``inference.evaluate --heldout --limit
2000 --seed 0`` with the checkpoint's own simulation (default: the bundled model), then for each of
``splits`` random splits fits on ``fit`` of them (each of several sizes in turn, to see how the fits
settle with more patterns) and scores the rest (with several sizes, the same ``n`` - the largest size
patterns of the split for every size):

- the temperature alone (``inference.calibration``);
- the top answer's beta map, its difference spread inside the crystal system (what ships:
  ``inference.top_label``), and the same map with the difference spread over all other classes;
- isotonic regression (scikit-learn, when installed) and 12-bin equal-mass histogram binning of the
  top probability, spread over all other classes.

Per map it prints the top-label ECE (15 bins; patterns outside the classes count as wrong), the ECE of
the summed crystal system, the top-1 of all patterns (the maps that spread over all classes can change
it), and the largest probability shown. The maps are fitted on all the fitting patterns, outside the
classes counted wrong; the temperature on those in the classes.

Last, scores to refuse by, on all ``n`` patterns at the temperature of the first split (of the last
size): the share of patterns that can be kept with the kept ones ``--target`` right (at least 20 kept),
and the area under
the risk-coverage curve (lower is better), for the top probability (what ships), the margin and the
ratio of the two largest, the entropy, the largest logit and the largest crystal-system sum.
"""
from __future__ import annotations

import argparse
import logging
from typing import Callable

import numpy as np


def spread_over_all(p: np.ndarray, q_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Each row's top probability replaced by ``q_of`` of it, the others rescaled to fill the rest."""
    p = p.copy()
    rows, top = np.arange(len(p)), p.argmax(axis=1)
    p1 = p[rows, top]
    q = q_of(p1)
    p *= ((1.0 - q) / np.maximum(1.0 - p1, 1e-12))[:, None]
    p[rows, top] = q
    return p


def binned(confidence: np.ndarray, right: np.ndarray, bins: int = 12) -> Callable[[np.ndarray], np.ndarray]:
    """Equal-mass histogram binning, bin accuracies made monotone and interpolated between bin means."""
    chunks = np.array_split(np.argsort(confidence), bins)
    x = np.array([confidence[c].mean() for c in chunks])
    y = np.maximum.accumulate(np.array([right[c].mean() for c in chunks]))
    return lambda p: np.interp(p, x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="checkpoint or run folder (default: the bundled model)")
    ap.add_argument("--n", type=int, default=5000, help="held-out crystals outside the evaluation draw")
    ap.add_argument("--fit", type=int, nargs="+", default=[2000],
                    help="of them, fitted on; the rest scored (several sizes: one after another)")
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, nargs="+", default=[0.5, 0.6, 0.7],
                    help="accuracies of the kept patterns for the refusal scores")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from inference.calibration import expected_calibration_error
    from inference.calibration_sets import heldout_logits
    from inference.pretrained import bundled_checkpoints
    from inference.simulations import simulation_config
    from inference.top_label import system_index
    from trainer.checkpoint import load_for_inference

    path = args.checkpoint or bundled_checkpoints()[0]
    model, meta = load_for_inference(path)
    simulation, _ = simulation_config(None, meta)
    classes = [int(s) for s in meta.space_groups]
    sets = heldout_logits(model, classes, meta.config, simulation, args.n, args.seed, 2000, 0)
    z, y = sets.logits, sets.labels
    systems = system_index(classes)
    one_hot = np.eye(systems.max() + 1)[systems]

    def scores(p: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, float]:
        inside = labels >= 0
        true_system = one_hot[labels[inside]].argmax(axis=1)
        return (expected_calibration_error(p, labels), expected_calibration_error(p[inside] @ one_hot, true_system),
                float((p.argmax(axis=1) == labels).mean()), float(p.max(axis=1).max()))

    if max(args.fit) >= len(y):
        raise SystemExit(f"--fit {max(args.fit)} leaves nothing of the {len(y)} patterns to score")
    for fit_size in args.fit:
        temperature = compare_maps(z, y, systems, fit_size, max(args.fit), args.splits, args.seed, scores, path)
    refusal_scores(z, y, temperature, one_hot, args.target)


def compare_maps(z: np.ndarray, y: np.ndarray, systems: np.ndarray, fit_size: int, score_from: int, splits: int,
                 seed: int, scores: Callable, path) -> float:
    """Fit every map on the first ``fit_size`` patterns of each split's order, print its scores on the
    patterns from ``score_from`` on; returns the first split's temperature."""
    from inference.calibration import fit_temperature
    from inference.ensemble import softmax
    from inference.top_label import apply_top_label_map, fit_top_label_map, top_label_confidence

    print(f"{path}: {len(y)} held-out patterns ({int((y < 0).sum())} outside the classes), fit on {fit_size}, "
          f"scored on {len(y) - score_from}, {splits} splits")
    print(f"{'map':40s} {'ECE top':>8s} {'ECE system':>11s} {'top-1 all':>10s} {'max shown':>10s}")
    temperature = 1.0
    for split in range(splits):
        order = np.random.default_rng([seed, split]).permutation(len(y))
        fit, test = order[:fit_size], order[score_from:]
        inside = y[fit] >= 0
        t = fit_temperature(z[fit][inside], y[fit][inside])
        p_fit, p_test = softmax(z[fit] / t), softmax(z[test] / t)
        conf, right = p_fit.max(axis=1), p_fit.argmax(axis=1) == y[fit]
        beta = fit_top_label_map(conf, right)
        maps = {f"temperature alone (T {t:.3f})": p_test,
                "beta map inside the crystal system": apply_top_label_map(p_test, beta, systems),
                "beta map over all classes": spread_over_all(p_test, lambda q: top_label_confidence(q, beta)),
                "12-bin histogram binning": spread_over_all(p_test, binned(conf, right.astype(float)))}
        try:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, right.astype(float))
            maps["isotonic regression"] = spread_over_all(p_test, iso.predict)
        except ImportError:
            pass
        print(f"split {split}: beta map a {beta['a']:.3f} b {beta['b']:.3f} c {beta['c']:.3f}")
        for name, p in maps.items():
            ece, ece_system, top1, top = scores(p, y[test])
            print(f"  {name:38s} {100 * ece:7.1f}% {100 * ece_system:10.1f}% {100 * top1:9.1f}% {top:10.2f}")
        if split == 0:
            temperature = t
    return temperature


def refusal_scores(z: np.ndarray, y: np.ndarray, temperature: float, one_hot: np.ndarray,
                   targets: list[float]) -> None:
    """Coverage at each target accuracy and the risk-coverage area of several scores to refuse by."""
    from inference.ensemble import softmax

    p = softmax(z / temperature)
    right = p.argmax(axis=1) == y
    ordered = np.sort(p, axis=1)
    candidates = {"top probability": ordered[:, -1], "margin of the two largest": ordered[:, -1] - ordered[:, -2],
                  "ratio of the two largest": ordered[:, -1] / ordered[:, -2],
                  "negative entropy": (p * np.log(p + 1e-300)).sum(axis=1), "largest logit": z.max(axis=1),
                  "largest crystal-system sum": (p @ one_hot).max(axis=1)}
    print(f"refusal scores on all {len(y)} patterns (T {temperature:.3f}): coverage at "
          + ", ".join(f"{100 * t:.0f} %" for t in targets) + " right, and the risk-coverage area")
    kept = np.arange(1, len(y) + 1)
    for name, score in candidates.items():
        accuracy = np.cumsum(right[np.argsort(-score, kind="stable")]) / kept
        coverage = [float(kept[(accuracy >= t) & (kept >= 20)].max(initial=0)) / len(y) for t in targets]
        print(f"  {name:38s} " + " ".join(f"{100 * c:6.1f}%" for c in coverage) + f"   {1 - accuracy.mean():.3f}")


if __name__ == "__main__":
    main()
