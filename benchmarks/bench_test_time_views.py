"""Reading each pattern several ways at test time: does averaging over shifted views help?

    python benchmarks/bench_test_time_views.py [--checkpoint RUN] [--limit 2000] [--seed 0]
                                              [--manifest ../shared/data/experimental/xred/manifest.csv]

A measured pattern's peaks sit where its zero offset and its cell put them, and the training patterns
drew both at random (``simulation.shift``, ``simulation.strain``). Test-time augmentation reads the
pattern again as if the offset or the cell were a little different and averages the calibrated
probabilities of the views. Views, on the model's 2-theta input (after its preprocessing):

- ``shift K``: the input moved by K grid steps (a zero offset of K x the step, 0.02 degrees for the
  bundled model), the uncovered end filled with zeros as a scan window would leave it;
- ``cell S``: every d-spacing scaled by S (sin(theta) / S), an isotropic strain of S - 1.

Scored on the held-out crystals of ``inference.evaluate --heldout --limit L --seed S`` simulated as the
model was trained (and on a manifest's measured patterns with ``--manifest``): right answers at top-1 /
top-5 / top-10 of the patterns in the model's classes, for each single view and for averages of views.
"""
from __future__ import annotations

import argparse
import logging
from typing import Callable

import numpy as np

SHIFTS = (-3, -2, -1, 1, 2, 3)
CELLS = (0.99, 0.995, 1.005, 1.01)
AVERAGES = {
    "shifts +-1": ["as measured", "shift -1", "shift 1"],
    "shifts +-3": ["as measured"] + [f"shift {k}" for k in SHIFTS],
    "cells +-0.5 %": ["as measured", "cell 0.995", "cell 1.005"],
    "cells +-1 %": ["as measured"] + [f"cell {s}" for s in CELLS],
    "all views": None,
}


def shifted(x: np.ndarray, k: int) -> np.ndarray:
    """(B, N) inputs moved by ``k`` grid steps towards higher angles (negative: lower), zeros behind."""
    out = np.zeros_like(x)
    if k > 0:
        out[:, k:] = x[:, :-k]
    elif k < 0:
        out[:, :k] = x[:, -k:]
    else:
        out[:] = x
    return out


def scaled_cell(x: np.ndarray, two_theta_deg: np.ndarray, s: float) -> np.ndarray:
    """(B, N) inputs on the 2-theta grid as if every d-spacing were ``s`` times larger."""
    theta = np.radians(two_theta_deg / 2.0)
    source = 2.0 * np.degrees(np.arcsin(np.clip(np.sin(theta) * s, 0.0, 1.0)))
    return np.stack([np.interp(source, two_theta_deg, row, left=0.0, right=0.0) for row in x]).astype(np.float32)


def views(two_theta_deg: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {"as measured": lambda x: x}
    for k in SHIFTS:
        out[f"shift {k}"] = lambda x, k=k: shifted(x, k)
    for s in CELLS:
        out[f"cell {s}"] = lambda x, s=s: scaled_cell(x, two_theta_deg, s)
    return out


def right_at(p: np.ndarray, y: np.ndarray, classes: np.ndarray, ks=(1, 5, 10)) -> list[int]:
    """Right answers among the top k of each row, for each k (rows whose truth is outside count wrong)."""
    ranked = classes[np.argsort(-p, axis=1)]
    return [int((ranked[:, :k] == y[:, None]).any(axis=1).sum()) for k in ks]


def score_views(name: str, x: np.ndarray, y: np.ndarray, probabilities: Callable[[np.ndarray], np.ndarray],
                classes: np.ndarray, two_theta_deg: np.ndarray, table) -> None:
    """Add a row per view and per average of views to ``table`` for (B, N) inputs ``x`` with truths ``y``."""
    fns = views(two_theta_deg)
    p = {v: probabilities(f(x)) for v, f in fns.items()}
    n = max(int(np.isin(y, classes).sum()), 1)
    rows = dict(p)
    rows.update({f"average: {v}": np.mean([p[m] for m in (members or list(p))], axis=0)
                 for v, members in AVERAGES.items()})
    for v, pv in rows.items():
        table.add_row(name, v, *(f"{r} ({100 * r / n:.1f} %)" for r in right_at(pv, y, classes)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="checkpoint or run folder (default: the bundled model)")
    ap.add_argument("--limit", type=int, default=2000, help="held-out crystals drawn (as inference.evaluate)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--manifest", default=None, help="a manifest CSV of measured patterns scored as well")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rich.console import Console
    from rich.table import Table

    from inference.ensemble import softmax
    from inference.labelled_sets import load_heldout, load_manifest
    from inference.pretrained import bundled_checkpoints
    from inference.predictor import Predictor
    from trainer.checkpoint import load_meta

    path = args.checkpoint or bundled_checkpoints()[0]
    predictor = Predictor.from_checkpoints([path])
    member = predictor.members[0]
    if member.spec.axis != "two_theta":
        raise SystemExit(f"{path}: the views are defined on a 2-theta input, this model reads {member.spec.axis}")
    two_theta = np.asarray(member.spec.grid)
    classes = np.asarray(member.space_groups)

    def probabilities(x: np.ndarray) -> np.ndarray:
        # the temperature alone: the top answer's map never changes the ranking, so the scores are the same
        return softmax(predictor.member_logits(member, x)[0] / member.temperature)

    table = Table(title=f"test-time views of {path}: right answers at top-1 / top-5 / top-10")
    for column in ("set", "views", "top-1", "top-5", "top-10"):
        table.add_column(column)
    data = load_heldout(load_meta(path).config, args.limit, args.seed)
    x, ok = data.simulate(member.simulation)
    score_views(f"held-out ({int(np.isin(data.space_groups[ok], classes).sum())} in the classes)",
                x[ok], data.space_groups[ok], probabilities, classes, two_theta, table)
    if args.manifest:
        measured = load_manifest(args.manifest)
        results = predictor.predict_patterns(measured.patterns)
        good = [i for i, r in enumerate(results) if r.ok]
        xm = np.stack([results[i].model_input.values for i in good])
        score_views(f"{measured.name} ({int(np.isin(measured.space_groups[good], classes).sum())} in the classes)",
                    xm, measured.space_groups[good], probabilities, classes, two_theta, table)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
