"""Space-group candidates for measured powder patterns from one checkpoint or an ensemble.

    python -m inference.predict FILE... [--checkpoint CKPT [CKPT...]] [--wavelength A] [--top-k 5] [--json]

Without ``--checkpoint`` the models bundled in ``inference/pretrained/`` are used (several form an
ensemble). A checkpoint with a ``calibration.json`` (``python -m inference.calibrate``) has its
logits divided by the fitted temperature, and its refusal threshold replaces the configured one
unless ``--threshold`` is given (an ensemble uses the mean of its members' thresholds when every
member is calibrated, else the configured one).

Each file is read, checked and brought onto every model's input exactly as the training patterns
were made (see :mod:`inference.patterns`); the members' class probabilities are averaged
(:mod:`inference.ensemble`). Per file the report lists the top-k space groups (number,
Hermann-Mauguin symbol, crystal system, probability), how many members agree on the top-1, the
predicted cell volume where the models have a volume head, and a refusal flag when the top
probability is below the configured threshold. A file that cannot be used gets a clear error and
the other files still get their answers (exit status 1 when any file failed).

Defaults come from ``conf/inference/default.yaml``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from generator.config import conf_dir
from inference.calibration import CalibrationConfig
from inference.ensemble import EnsemblePrediction, align_classes, combine, refused, softmax, top_k
from inference.patterns import InputSpec, PatternConfig, prepare_pattern
from inference.readers import MeasuredPattern, PatternError, read_pattern

CONF_DIR = conf_dir()  # conf/ of a checkout, or the installed crystalstream_conf package
DEFAULT_CONFIG = CONF_DIR / "inference" / "default.yaml"


# ------------------------------------------------------------------------------------------ config


@dataclass
class EvaluateConfig:
    """Labelled sets for ``python -m inference.evaluate`` (``conf/inference/default.yaml``: ``evaluate``)."""

    manifest: Optional[str] = None
    cif_dir: Optional[str] = None
    heldout: bool = False
    output_dir: str = "evaluation"
    max_k: int = 10
    thresholds: int = 21
    seed: int = 0
    limit: Optional[int] = None
    symprec: Optional[float] = None


@dataclass
class InferenceConfig:
    """Using trained classifiers (``conf/inference/default.yaml``)."""

    checkpoints: list[str] = field(default_factory=list)
    wavelength: Optional[float] = None
    top_k: int = 5
    refusal_threshold: float = 0.45
    device: str = "cpu"
    batch_size: int = 32
    pattern: PatternConfig = field(default_factory=PatternConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> InferenceConfig:
    """The inference config from ``path`` (default ``conf/inference/default.yaml``) checked against
    :class:`InferenceConfig`, with ``overrides`` (a nested dict) applied on top."""
    base = OmegaConf.structured(InferenceConfig)
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        merged = OmegaConf.merge(base, OmegaConf.load(path)) if path.exists() else base
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.create(overrides))
        cfg = OmegaConf.to_object(merged)
    except Exception as err:
        raise ValueError(f"{path}: invalid inference config: {err}") from err
    if not 0.0 <= cfg.refusal_threshold <= 1.0:
        raise ValueError(f"refusal_threshold must be in [0, 1], got {cfg.refusal_threshold}")
    if cfg.top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {cfg.top_k}")
    try:
        cfg.calibration.validate()
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return cfg


# ------------------------------------------------------------------------------------ space groups


@lru_cache(maxsize=None)
def _symbols() -> dict[int, str]:
    import spglib

    out: dict[int, str] = {}
    for hall in range(1, 531):
        t = spglib.get_spacegroup_type(hall)
        number = int(t.number if hasattr(t, "number") else t["number"])
        if number not in out:
            out[number] = str(t.international_short if hasattr(t, "international_short") else t["international_short"])
    return out


def space_group_symbol(number: int) -> str:
    """Short Hermann-Mauguin symbol of the standard setting (spglib), e.g. 225 -> 'Fm-3m'."""
    return _symbols().get(int(number), "?")


def crystal_system(number: int) -> str:
    from generator.symmetry import crystal_system as _cs

    return _cs(int(number))


# ------------------------------------------------------------------------------------- prediction


@dataclass
class Candidate:
    """One candidate space group of a prediction."""

    space_group: int
    symbol: str
    crystal_system: str
    probability: float


@dataclass
class PatternPrediction:
    """What the ensemble says about one pattern (or why it could not say anything).

    Attributes:
        source: the file (or a name for in-memory patterns).
        candidates: top-k space groups, most probable first (empty when ``error`` is set).
        top_probability: ensemble probability of the first candidate.
        refused: True when ``top_probability`` is below the refusal threshold.
        agreement: members whose own top-1 is the ensemble's top-1.
        n_members: members in the ensemble.
        volume: predicted cell volume, A^3 (geometric mean over members with a volume head), or None.
        volume_spread: standard deviation of the members' natural-log volumes, or None.
        coverage: fraction of the model grid the measurement covers (smallest over members).
        wavelength: measurement wavelength used, A.
        wavelength_source: "option", "file" or "model" (assumed equal to the model's).
        error: the reason no prediction was made, else None.
        probabilities: (C,) ensemble probabilities over ``Predictor.space_groups`` (not in JSON).
    """

    source: str
    candidates: list[Candidate] = field(default_factory=list)
    top_probability: Optional[float] = None
    refused: bool = False
    agreement: int = 0
    n_members: int = 0
    volume: Optional[float] = None
    volume_spread: Optional[float] = None
    coverage: Optional[float] = None
    wavelength: Optional[float] = None
    wavelength_source: Optional[str] = None
    error: Optional[str] = None
    probabilities: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("probabilities")
        return d


@dataclass
class Member:
    """One network of an ensemble with what it needs to read patterns."""

    model: torch.nn.Module
    space_groups: list[int]
    spec: InputSpec
    volume_norm: Optional[dict] = None
    name: str = ""
    simulation: dict = field(default_factory=dict)
    temperature: float = 1.0
    calibration: Optional[dict] = None


def input_spec(representation: Any) -> InputSpec:
    """The input axis and training-time preprocessing of a model's representation
    (:mod:`simulator.representation`): a representation object, a checkpoint's ``representation``
    description, or a simulation config dict (with or without ``kind``; none: the 2-theta pattern)."""
    from simulator.representation import from_description, make_representation

    if hasattr(representation, "prepare_measured"):
        rep = representation
    elif isinstance(representation, dict) and "config" in representation and "axis" in representation:
        rep = from_description(representation)
    else:
        rep = make_representation(representation or None)
    return InputSpec(grid=np.asarray(rep.axis.values, dtype=np.float64), axis=rep.axis.short,
                     wavelength=rep.wavelength, preprocess=rep.preprocess, lorentz_polarisation=rep.training_lp,
                     measured_error=rep.measured_error)


def load_member(path: str | Path, device: str = "cpu", calibrated: bool = True) -> Member:
    """A checkpoint as an ensemble member (model in eval mode plus its input spec); with
    ``calibrated``, the temperature and refusal threshold of its ``calibration.json`` if it has one."""
    from inference.calibration import load_calibration
    from trainer.checkpoint import load_for_inference

    model, meta = load_for_inference(path, device=device)
    spec = input_spec(meta.input_representation())  # older checkpoints: the 2-theta pattern of their simulation
    if len(spec.grid) != meta.input_length:
        raise ValueError(f"{path}: the {meta.representation_kind} axis has {len(spec.grid)} points, the model "
                         f"expects {meta.input_length}")
    calibration = load_calibration(path) if calibrated else None
    return Member(model=model, space_groups=[int(s) for s in meta.space_groups], spec=spec,
                  volume_norm=meta.volume_norm, name=str(path), simulation=dict(meta.simulation),
                  temperature=float(calibration["temperature"]) if calibration else 1.0, calibration=calibration)


class Predictor:
    """An ensemble of one or more classifiers answering for measured or simulated patterns."""

    def __init__(self, members: Sequence[Member], cfg: InferenceConfig | None = None,
                 refusal_threshold: Optional[float] = None):
        """``refusal_threshold``: the user's threshold; None: the members' calibrated one, else the config's."""
        if not members:
            raise ValueError("no checkpoints given")
        if refusal_threshold is not None and not 0.0 <= refusal_threshold <= 1.0:
            raise ValueError(f"refusal threshold must be in [0, 1], got {refusal_threshold}")
        self.members = list(members)
        self.cfg = cfg if cfg is not None else load_config()
        self.threshold_override = refusal_threshold
        order: list[int] = []
        for m in self.members:
            order += [s for s in m.space_groups if s not in order]
        same = all(m.space_groups == self.members[0].space_groups for m in self.members)
        self.space_groups: list[int] = list(self.members[0].space_groups) if same else sorted(order)
        self.spec_keys = {id(m): json.dumps(m.simulation, sort_keys=True, default=str) if m.simulation
                           else f"spec-{id(m.spec)}" for m in self.members}

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], cfg: InferenceConfig | None = None,
                         refusal_threshold: Optional[float] = None) -> "Predictor":
        cfg = cfg if cfg is not None else load_config()
        return cls([load_member(p, cfg.device, cfg.calibration.apply) for p in paths], cfg, refusal_threshold)

    @property
    def calibrated_threshold(self) -> Optional[float]:
        """The refusal threshold of the members' calibration files (their mean for an ensemble), or
        None unless every member has one."""
        values = [m.calibration.get("refusal_threshold") if m.calibration else None for m in self.members]
        if not values or any(v is None for v in values):
            return None
        return float(np.mean([float(v) for v in values]))

    @property
    def threshold_source(self) -> str:
        """Where the refusal threshold comes from: "option", "calibration" or "config"."""
        if self.threshold_override is not None:
            return "option"
        if self.calibrated_threshold is not None:
            return "calibration"
        return "config"

    @property
    def refusal_threshold(self) -> float:
        """The user's threshold, else the calibrated one, else ``cfg.refusal_threshold``."""
        if self.threshold_override is not None:
            return float(self.threshold_override)
        calibrated = self.calibrated_threshold
        return calibrated if calibrated is not None else float(self.cfg.refusal_threshold)

    @property
    def temperatures(self) -> list[float]:
        return [float(m.temperature) for m in self.members]

    @property
    def device(self) -> torch.device:
        return next(self.members[0].model.parameters()).device

    # -- raw model outputs ------------------------------------------------------------------
    @torch.no_grad()
    def member_logits(self, member: Member, inputs: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Raw logits (B, C_member) over ``member.space_groups`` (not divided by the temperature)
        and log volumes (B,) or None of one member."""
        device = next(member.model.parameters()).device
        logits, logv = [], []
        bs = max(1, int(self.cfg.batch_size))
        for i in range(0, len(inputs), bs):
            x = torch.as_tensor(np.asarray(inputs[i:i + bs], dtype=np.float32), device=device)
            out = member.model(x)
            logits.append(out["logits"].float().cpu().numpy().astype(np.float64))
            if "log_volume" in out and member.volume_norm is not None:
                z = out["log_volume"].float().cpu().numpy().reshape(-1)
                logv.append(member.volume_norm["mean"] + member.volume_norm["std"] * z)
        z = np.concatenate(logits) if logits else np.zeros((0, len(member.space_groups)))
        return z, (np.concatenate(logv) if logv else None)

    def member_outputs(self, member: Member, inputs: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities (B, C) over ``self.space_groups`` (softmax of the logits divided by the
        member's temperature) and log volumes (B,) or None of one member."""
        z, logv = self.member_logits(member, inputs)
        p = softmax(z / member.temperature) if len(z) else z
        if member.space_groups != self.space_groups:
            p = align_classes(p, member.space_groups, self.space_groups)
        return p, logv

    def ensemble(self, inputs: Sequence[np.ndarray]) -> EnsemblePrediction:
        """Combine the members on prepared inputs: ``inputs[m]`` is (B, N_m) for member m."""
        outs = [self.member_outputs(m, x) for m, x in zip(self.members, inputs)]
        return combine([o[0] for o in outs], [o[1] for o in outs])

    # -- patterns ---------------------------------------------------------------------------
    def predict_patterns(self, patterns: Sequence[MeasuredPattern | PatternError],
                         wavelength: float | None = None) -> list[PatternPrediction]:
        """Predictions for measured patterns; a :class:`PatternError` in the list (a file that could
        not be read) or a pattern that cannot be prepared gets an error entry instead."""
        wavelength = wavelength if wavelength is not None else self.cfg.wavelength
        results: list[PatternPrediction] = []
        prepared_rows: list[list[np.ndarray]] = []
        good: list[int] = []
        for pattern in patterns:
            if isinstance(pattern, PatternError):
                results.append(PatternPrediction(source=pattern.source, error=pattern.problem,
                                                 n_members=len(self.members)))
                continue
            source = str(pattern.source)
            if wavelength is not None:
                wl_source = "option"
            elif pattern.wavelength is not None:
                wl_source = "file"
            else:
                wl_source = "model"
            try:
                per_member, cov, wl_used = [], 1.0, None
                cache: dict[str, Any] = {}  # members trained on the same simulation share one preparation
                for m in self.members:
                    key = self.spec_keys[id(m)]
                    if key not in cache:
                        cache[key] = prepare_pattern(pattern, m.spec, self.cfg.pattern, wavelength=wavelength)
                    prep = cache[key]
                    per_member.append(prep.values)
                    cov = min(cov, prep.coverage)
                    wl_used = prep.wavelength
            except (ValueError, ArithmeticError) as err:  # PatternError, or anything else this one file caused
                problem = err.problem if isinstance(err, PatternError) else f"cannot be prepared ({err})"
                results.append(PatternPrediction(source=source, error=problem, n_members=len(self.members),
                                                 wavelength_source=wl_source))
                continue
            results.append(PatternPrediction(source=source, coverage=cov, wavelength=wl_used,
                                             wavelength_source=wl_source, n_members=len(self.members)))
            prepared_rows.append(per_member)
            good.append(len(results) - 1)
        if good:
            inputs = [np.stack([row[m] for row in prepared_rows]) for m in range(len(self.members))]
            ens = self.ensemble(inputs)
            for j, i in enumerate(good):
                self.fill_prediction(results[i], ens, j)
        return results

    def predict_files(self, paths: Sequence[str | Path], wavelength: float | None = None) -> list[PatternPrediction]:
        """Read each file (errors are reported per file) and predict."""
        patterns: list[MeasuredPattern | PatternError] = []
        for p in paths:
            try:
                patterns.append(read_pattern(p))
            except PatternError as err:
                patterns.append(err)
            except (ValueError, ArithmeticError, OSError) as err:  # one bad file must not stop the others
                patterns.append(PatternError(p, f"cannot be read ({err})"))
        return self.predict_patterns(patterns, wavelength=wavelength)

    def fill_prediction(self, result: PatternPrediction, ens: EnsemblePrediction, j: int) -> None:
        probs = ens.probabilities[j]
        idx, val = top_k(probs[None, :], self.cfg.top_k)
        result.candidates = [
            Candidate(space_group=self.space_groups[int(c)], symbol=space_group_symbol(self.space_groups[int(c)]),
                      crystal_system=crystal_system(self.space_groups[int(c)]), probability=float(p))
            for c, p in zip(idx[0], val[0])
        ]
        result.top_probability = float(val[0, 0])
        result.refused = bool(refused(probs[None, :], self.refusal_threshold)[0])
        result.agreement = int(ens.agreement[j])
        result.n_members = ens.n_members
        if ens.log_volume is not None:
            result.volume = float(math.exp(ens.log_volume[j]))
            result.volume_spread = float(ens.log_volume_std[j])
        result.probabilities = probs


# ----------------------------------------------------------------------------------------- output


def format_table(results: Sequence[PatternPrediction], threshold: float) -> str:
    """Human-readable report of predictions."""
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
        if r.refused:
            lines.append(f"  REFUSED: top probability {r.top_probability:.3f} is below the threshold {threshold:.2f}; "
                         "treat the list as a guess")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_json(results: Sequence[PatternPrediction], threshold: float, checkpoints: Sequence[str],
            threshold_source: Optional[str] = None, temperatures: Optional[Sequence[float]] = None) -> str:
    head: dict[str, Any] = {"refusal_threshold": threshold}
    if threshold_source is not None:
        head["refusal_threshold_source"] = threshold_source
    if temperatures is not None:
        head["temperatures"] = [float(t) for t in temperatures]
    return json.dumps({**head, "checkpoints": [str(c) for c in checkpoints],
                       "predictions": [r.to_dict() for r in results]}, indent=2)


def resolve_checkpoints(given: Sequence[str] | None) -> list[str]:
    """The checkpoints given, else the bundled models (:class:`inference.pretrained.NoBundledModel` when none)."""
    from inference import pretrained

    return pretrained.checkpoints_or_bundled(list(given or []))


def build_parser(cfg: InferenceConfig) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m inference.predict",
                                 description="Space-group candidates for measured powder patterns.")
    ap.add_argument("files", nargs="+", help="pattern files (.xy, .xye, .csv, .txt, RRUFF, instrument formats)")
    ap.add_argument("--checkpoint", "-c", nargs="+", default=list(cfg.checkpoints),
                    help="checkpoint(s); several form an ensemble (default: config 'checkpoints', "
                         "else the models bundled in inference/pretrained/)")
    ap.add_argument("--wavelength", type=float, default=cfg.wavelength,
                    help="measurement wavelength in A; overrides one stated in a file "
                         "(default: the file's, else the model's)")
    ap.add_argument("--top-k", type=int, default=cfg.top_k, help=f"candidates per file (default {cfg.top_k})")
    ap.add_argument("--threshold", type=float, default=None,
                    help="refusal threshold on the top probability (default: the checkpoints' calibrated "
                         f"threshold, else {cfg.refusal_threshold})")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--device", default=cfg.device, help=f"torch device (default {cfg.device})")
    return ap


def split_config_argument(argv: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """Pull ``--config PATH`` out of argv before the main parser (its defaults depend on it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    return known.config, rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, argv = split_config_argument(argv)
    cfg = load_config(config_path)
    parser = build_parser(cfg)
    parser.add_argument("--config", default=None, help="inference config YAML (default conf/inference/default.yaml)")
    args = parser.parse_args(argv)
    cfg.top_k, cfg.device, cfg.wavelength = args.top_k, args.device, args.wavelength
    try:
        checkpoints = resolve_checkpoints(args.checkpoint)
        predictor = Predictor.from_checkpoints(checkpoints, cfg, refusal_threshold=args.threshold)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = predictor.predict_files(args.files)
    threshold = predictor.refusal_threshold
    if args.json:
        print(to_json(results, threshold, checkpoints, predictor.threshold_source, predictor.temperatures))
    else:
        print(format_table(results, threshold), end="")
    for r in results:
        if not r.ok:
            print(f"error: {r.source}: {r.error}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
