"""Space-group candidates for measured powder patterns from one checkpoint or an ensemble.

    python -m inference.predict FILE... [--checkpoint CKPT [CKPT...]] [--wavelength A] [--top-k 5] [--json]
                                [--plot DIR]

Without ``--checkpoint`` the models bundled in ``inference/pretrained/`` are used (several form an
ensemble). A checkpoint with a ``calibration.json`` (``python -m inference.calibrate``) has its
logits divided by the fitted temperature, and its refusal threshold replaces the configured one
unless ``--threshold`` is given (an ensemble uses the mean of its members' thresholds when every
member is calibrated, else the configured one).

Each file is read, checked and brought onto every model's input exactly as the training patterns
were made (see :mod:`inference.patterns`); the members' class probabilities are averaged
(:mod:`inference.ensemble`). Per file the report lists the top-k space groups (number,
Hermann-Mauguin symbol, crystal system, probability), the most probable crystal systems (the
probabilities of their space groups summed), how many members agree on the top-1, the
predicted cell volume where the models have a volume head, and a refusal flag when the top
probability is below the configured threshold. ``--plot DIR`` also writes one PNG per answered
file: the pattern as the (first) model reads it beside the candidates' probabilities. A file that
cannot be used gets a clear error and the other files still get their answers (exit status 1 when
any file failed).

Defaults come from ``conf/inference/default.yaml``. This module holds the command and its report
formats; the config is in :mod:`inference.config`, the members in :mod:`inference.members` and
the ensemble in :mod:`inference.predictor` (their names are importable from here too).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from inference.command_line import (add_checkpoint_argument, config_and_arguments, load_predictor,
                                     resolve_checkpoints, split_config_argument)
from inference.config import CONF_DIR, DEFAULT_CONFIG, EvaluateConfig, InferenceConfig, load_config
from inference.members import Member, input_spec, load_member
from inference.predictor import Candidate, PatternPrediction, Predictor
from inference.space_groups import crystal_system, space_group_symbol

__all__ = ["CONF_DIR", "DEFAULT_CONFIG", "Candidate", "EvaluateConfig", "InferenceConfig", "Member",
           "PatternPrediction", "Predictor", "build_parser", "crystal_system", "format_table", "input_spec",
           "load_config", "load_member", "main", "resolve_checkpoints", "space_group_symbol",
           "split_config_argument", "to_json", "write_plots"]


# ----------------------------------------------------------------------------------------- output


def format_table(results: Sequence[PatternPrediction], threshold: float,
                 system_threshold: Optional[float] = None) -> str:
    """Human-readable report of predictions (``system_threshold``: the crystal-system refusal threshold)."""
    lines: list[str] = []
    for r in results:
        if not r.ok:
            lines.append(f"{r.source}: ERROR: {r.error}")
            lines.append("")
            continue
        wl = f"{r.wavelength:.4f} A" + {"option": " (given)", "file": " (from file)",
                                         "model": " (assumed: the model's)"}.get(r.wavelength_source or "", "")
        head = [f"wavelength {wl}", f"coverage {r.coverage:.0%}",
                f"{r.agreement} of {r.n_members} model{'s' if r.n_members != 1 else ''} agree on the top-1"]
        if r.volume is not None:
            head.append(f"volume ~{r.volume:.0f} A^3")
        lines.append(f"{r.source}: " + "; ".join(head))
        lines.append(f"  {'rank':>4}  {'SG':>3}  {'symbol':<11} {'crystal system':<13} {'probability':>11}")
        for k, c in enumerate(r.candidates, 1):
            lines.append(f"  {k:>4}  {c.space_group:>3}  {c.symbol:<11} {c.crystal_system:<13} {c.probability:>11.3f}")
        systems = [f"{s.crystal_system} {s.probability:.3f}" for s in r.crystal_systems[:3] if s.probability >= 0.01]
        if systems:
            lines.append("  crystal system: " + ", ".join(systems))
        if r.refused:
            lines.append(f"  REFUSED: top probability {r.top_probability:.3f} is below the threshold {threshold:.2f}; "
                         "treat the space groups as a guess (the crystal-system line sums their probabilities)")
            if r.crystal_system_refused is not None and system_threshold is not None:
                best = r.crystal_systems[0]
                lines.append(f"  crystal system {best.crystal_system} ({best.probability:.3f}) is "
                             + (f"below its threshold {system_threshold:.2f}: a guess too" if r.crystal_system_refused
                                else f"at or above its threshold {system_threshold:.2f}: answered"))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_json(results: Sequence[PatternPrediction], threshold: float, checkpoints: Sequence[str],
            threshold_source: Optional[str] = None, temperatures: Optional[Sequence[float]] = None,
            top_label_maps: Optional[Sequence[Optional[dict]]] = None,
            system_threshold: Optional[float] = None) -> str:
    head: dict[str, Any] = {"refusal_threshold": threshold, "crystal_system_threshold": system_threshold}
    if threshold_source is not None:
        head["refusal_threshold_source"] = threshold_source
    if temperatures is not None:
        head["temperatures"] = [float(t) for t in temperatures]
    if top_label_maps is not None:
        head["top_label_maps"] = list(top_label_maps)
    return json.dumps({**head, "checkpoints": [str(c) for c in checkpoints],
                       "predictions": [r.to_dict() for r in results]}, indent=2)


# ------------------------------------------------------------------------------------ command


def build_parser(cfg: InferenceConfig) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m inference.predict",
                                 description="Space-group candidates for measured powder patterns.")
    ap.add_argument("files", nargs="+", help="pattern files (.xy, .xye, .csv, .txt, RRUFF, instrument formats)")
    add_checkpoint_argument(ap, help="checkpoint(s); several form an ensemble, the flag may repeat (default: "
                                     "config 'checkpoints', else the models bundled in inference/pretrained/)")
    ap.add_argument("--wavelength", type=float, default=cfg.wavelength,
                    help="measurement wavelength in A; overrides one stated in a file "
                         "(default: the file's, else the model's)")
    ap.add_argument("--top-k", type=int, default=cfg.top_k, help=f"candidates per file (default {cfg.top_k})")
    ap.add_argument("--threshold", type=float, default=None,
                    help="refusal threshold on the top probability (default: the checkpoints' calibrated "
                         f"threshold, else {cfg.refusal_threshold})")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--device", default=cfg.device, help=f"torch device (default {cfg.device})")
    ap.add_argument("--plot", metavar="DIR", default=None,
                    help="also write a PNG per answered file into DIR: the pattern as the model reads it "
                         "and the candidates' probabilities")
    return ap


def plot_names(sources: Sequence[str]) -> list[str]:
    """A distinct PNG file name per source: the file's stem, with its folder where stems repeat
    (measured patterns often share a file name, one folder per sample), and a counter where that repeats too."""
    paths = [Path(s) for s in sources]
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 and p.parent.name else p.stem for p in paths]
    out: list[str] = []
    for i, n in enumerate(names):
        out.append(f"{n}_{names[:i].count(n) + 1}.png" if names.count(n) > 1 else f"{n}.png")
    return out


def write_plots(results: Sequence[PatternPrediction], predictor: Predictor, folder: str) -> list[str]:
    """One PNG per answered pattern in ``folder`` (see :func:`inference.reports.plot_prediction`); their paths."""
    from inference.reports import plot_prediction

    spec = predictor.members[0].spec
    answered = [r for r in results if r.ok and r.model_input is not None]
    written = []
    for r, name in zip(answered, plot_names([r.source for r in answered])):
        candidates = [(f"{c.space_group} {c.symbol} ({c.crystal_system})", c.probability) for c in r.candidates]
        title = f"{Path(*Path(r.source).parts[-2:])}: coverage {r.coverage:.0%}, λ {r.wavelength:.4f} Å"
        system = ""
        if r.crystal_system_refused is not None and r.crystal_systems:
            best = r.crystal_systems[0]
            system = (f"{best.crystal_system} {best.probability:.0%}, "
                      + ("a guess too" if r.crystal_system_refused else "answered"))
        written.append(str(plot_prediction(spec.grid, spec.axis, r.model_input.values, r.model_input.mask,
                                           candidates, predictor.refusal_threshold, Path(folder) / name, title,
                                           system)))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    cfg, argv = config_and_arguments(argv)
    parser = build_parser(cfg)
    parser.add_argument("--config", default=None, help="inference config YAML (default conf/inference/default.yaml)")
    args = parser.parse_args(argv)
    cfg.top_k, cfg.device, cfg.wavelength = args.top_k, args.device, args.wavelength
    try:
        checkpoints, predictor = load_predictor(args.checkpoint, cfg, args.threshold)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = predictor.predict_files(args.files)
    threshold = predictor.refusal_threshold
    if args.json:
        print(to_json(results, threshold, checkpoints, predictor.threshold_source, predictor.temperatures,
                      predictor.top_label_maps, predictor.crystal_system_threshold))
    else:
        print(format_table(results, threshold, predictor.crystal_system_threshold), end="")
    ok = all(r.ok for r in results)
    if args.plot:
        try:
            for path in write_plots(results, predictor, args.plot):
                print(f"plot: {path}", file=sys.stderr if args.json else sys.stdout)
        except OSError as err:
            print(f"error: --plot {args.plot}: cannot write the plots ({err})", file=sys.stderr)
            ok = False
    for r in results:
        if not r.ok:
            print(f"error: {r.source}: {r.error}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
