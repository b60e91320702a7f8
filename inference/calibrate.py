"""Fit a checkpoint's temperature and refusal threshold on fresh synthetic patterns or on held-out crystals.

    python -m inference.calibrate --checkpoint RUN [RUN...] [--simulation NAME] [--n 2000] [--seed 0]
                                [--source synthetic|heldout] [--target-accuracy 0.8] [--no-top-label]
                                [--crystal-system-target-accuracy 0.8]
                                [--json] [--dry-run]

``--source heldout`` fits on real crystals of the structure types the model never saw, outside the
crystals ``inference.evaluate --heldout --limit 2000 --seed 0`` scores (``--heldout-exclude-limit``,
``--heldout-exclude-seed``).

Writes ``calibration.json`` beside each checkpoint's ``meta.json`` (see :mod:`inference.calibration`);
``inference.predict`` and ``inference.evaluate`` then use it. Defaults come from the ``calibration``
node of ``conf/inference/default.yaml``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from inference.calibration import Calibration, _finite, calibrate_checkpoint
from inference.command_line import add_checkpoint_argument


def format_result(name: str, c: Calibration, path) -> str:
    acc = "n/a" if c.accuracy_at_threshold is None else f"{100 * c.accuracy_at_threshold:.1f} %"
    what = "held-out crystals' patterns" if c.source == "heldout" else "synthetic patterns"
    lines = [
        f"{name}: {c.n} {what} (simulation: {c.simulation}, statistics: {c.statistics}, seed {c.seed})"
        + (f", {c.n_out_of_scope} outside the model's classes (out of the temperature fit, wrong elsewhere)" if c.n_out_of_scope else ""),
        f"  top-1 accuracy {100 * c.accuracy:.1f} %",
        f"  temperature {c.temperature:.3f}; NLL {c.nll_before:.3f} -> {c.nll_after:.3f}",
        (f"  top answer's map a {c.top_label['a']:.3f}, b {c.top_label['b']:.3f}, c {c.top_label['c']:.3f}"
         if c.top_label else "  no top answer's map"),
        f"  expected calibration error ({c.bins} bins, patterns outside the classes wrong) {100 * c.ece_before:.2f} %"
        + (f" -> {100 * c.ece_temperature:.2f} % (temperature)" if c.top_label else "")
        + f" -> {100 * c.ece_after:.2f} %",
        f"  refusal threshold {c.refusal_threshold:.2f}: keeps {100 * c.coverage_at_threshold:.1f} %, "
        f"accuracy {acc} (target {100 * c.target_accuracy:.0f} %"
        + ("" if c.target_reached else ", never reached: configured default stored") + ")",
        (f"  crystal-system threshold {c.crystal_system_threshold:.2f}: keeps "
         f"{100 * c.crystal_system_kept['coverage']:.1f} %, accuracy {100 * c.crystal_system_kept['accuracy']:.1f} % "
         f"(target {100 * c.crystal_system_target_accuracy:.0f} %)" if c.crystal_system_threshold is not None
         else f"  crystal-system target {100 * c.crystal_system_target_accuracy:.0f} % never reached: none stored"),
    ]
    lines.append(f"  written to {path}" if path is not None else "  not written (--dry-run)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from inference.predict import load_config, split_config_argument

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, argv = split_config_argument(argv)
    try:
        cfg = load_config(config_path)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cal = cfg.calibration
    ap = argparse.ArgumentParser(prog="python -m inference.calibrate",
                                 description="Fit the temperature and refusal threshold of checkpoints.")
    add_checkpoint_argument(ap, help="checkpoint(s) or run folder(s); the flag may repeat", required=True)
    ap.add_argument("--simulation", default=cal.simulation,
                    help="conf/simulation name of the patterns (default: each checkpoint's own simulation)")
    ap.add_argument("--n", type=int, default=cal.n, help=f"synthetic patterns (default {cal.n})")
    ap.add_argument("--seed", type=int, default=cal.seed, help=f"root seed (default {cal.seed})")
    ap.add_argument("--statistics", choices=("default", "run"), default=cal.statistics,
                    help=f"generation statistics: the default database's or the run's (default {cal.statistics})")
    ap.add_argument("--source", choices=("synthetic", "heldout"), default=cal.source,
                    help="fresh synthetic crystals, or real crystals of the held-out structure types outside the "
                         f"evaluation draw (default {cal.source})")
    ap.add_argument("--heldout-exclude-limit", type=int, default=cal.heldout_exclude_limit,
                    help="with --source heldout: keep out the crystals of evaluate --heldout --limit THIS "
                         f"(0: none; default {cal.heldout_exclude_limit})")
    ap.add_argument("--heldout-exclude-seed", type=int, default=cal.heldout_exclude_seed,
                    help=f"... and --seed THIS (default {cal.heldout_exclude_seed})")
    ap.add_argument("--target-accuracy", type=float, default=cal.target_accuracy,
                    help=f"accuracy of the kept patterns the refusal threshold is chosen for (default {cal.target_accuracy})")
    ap.add_argument("--crystal-system-target-accuracy", type=float, default=cal.crystal_system_target_accuracy,
                    help="accuracy of the crystal systems kept at the crystal-system threshold "
                         f"(default {cal.crystal_system_target_accuracy})")
    ap.add_argument("--top-label", action=argparse.BooleanOptionalAction, default=cal.top_label,
                    help="also fit the top answer's map after the temperature (default %(default)s)")
    ap.add_argument("--device", default=cfg.device)
    ap.add_argument("--dry-run", action="store_true", help="report without writing calibration.json")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--config", default=None, help="inference config YAML (default conf/inference/default.yaml)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cal.simulation, cal.n, cal.seed, cal.statistics = args.simulation, args.n, args.seed, args.statistics
    cal.target_accuracy = args.target_accuracy
    cal.source, cal.heldout_exclude_limit = args.source, args.heldout_exclude_limit
    cal.heldout_exclude_seed, cal.top_label = args.heldout_exclude_seed, args.top_label
    cal.crystal_system_target_accuracy = args.crystal_system_target_accuracy
    results = {}
    for checkpoint in args.checkpoint:
        try:
            result, path = calibrate_checkpoint(checkpoint, cal, cfg.refusal_threshold, write=not args.dry_run,
                                                device=args.device)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {checkpoint}: {err}", file=sys.stderr)
            return 2
        results[str(checkpoint)] = {**result.to_dict(), "path": str(path) if path else None}
        if not args.json:
            print(format_result(str(checkpoint), result, path))
    if args.json:
        print(json.dumps(_finite(results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
