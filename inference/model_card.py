"""``MODEL_CARD.md`` of a bundled model, filled with what is known about it.

Sections: model, training recipe, training (steps, patterns, hardware, wall time), accuracy per
evaluation set (held-out, synthetic, xred, ...: top-1, top-5, crystal system), calibration
(temperature, ECE before/after, refusal threshold) and coverage-accuracy points. Whatever was not
measured says so instead of being left out. Used by :mod:`inference.package`.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Optional

EVAL_ORDER = ("heldout", "synthetic", "xred")
EVAL_TITLES = {"heldout": "held-out structure types (simulated)", "synthetic": "fresh synthetic crystals",
               "xred": "measured patterns (xred)"}
COVERAGE_POINTS = (0.0, 0.3, 0.45, 0.6, 0.8, 0.9)
NOT_MEASURED = "not measured"


def _pct(v: Any) -> str:
    return f"{100 * float(v):.1f} %" if isinstance(v, (int, float)) and math.isfinite(float(v)) else "–"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(float(v)) if isinstance(v, (int, float)) and math.isfinite(float(v)) else "–"


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return NOT_MEASURED
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def _started_from(cfg: dict, seen: Any, stated_total: Any = None) -> list[str]:
    """Card lines for a run that started from earlier weights (``trainer.init_weights``), following
    each earlier checkpoint's own ``init_weights`` while its ``meta.json`` is still there; where the
    chain breaks, ``stated_total`` (``patterns_in_all`` of the card extra) gives the patterns in all."""
    from trainer.checkpoint import load_meta

    lines, total, path = [], seen if isinstance(seen, int) else None, _get(cfg, "trainer.init_weights")
    grown = bool(_get(cfg, "trainer.init_weights_grow"))
    for _ in range(10):  # a chain of fine-tunings; a cycle of paths cannot loop forever
        if not path:
            break
        try:
            earlier = load_meta(path)
        except (OSError, ValueError):
            earlier = None
        if earlier is None or _get(earlier.config or {}, "trainer.init_weights") == path:
            # gone, or the folder now holds weights trained from its own earlier content (a bundled
            # model replaced by its next cycle): its meta.json no longer describes what the run started from
            lines.append(f"- started from the weights of `{path}` ("
                         + ("its meta.json was not found at packaging)" if earlier is None
                            else "since replaced by later weights)"))
            if isinstance(stated_total, int):
                lines.append(f"- patterns seen by these weights in all: {stated_total:,} (as stated at packaging)")
            return lines
        lines.append(f"- started from the weights of `{path}`: step {earlier.step:,}, "
                     f"{earlier.samples_seen:,} patterns, with a new optimizer and learning-rate schedule"
                     + ("; grown: the residual branches that model lacked started as the identity" if grown else ""))
        total = None if total is None else total + int(earlier.samples_seen)
        path = _get(earlier.config or {}, "trainer.init_weights")
        grown = bool(_get(earlier.config or {}, "trainer.init_weights_grow"))
    if lines and total is not None:
        lines.append(f"- patterns seen by these weights in all: {total:,}")
    return lines


def _get(d: dict, path: str, default: Any = None) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def _params(meta) -> Optional[int]:
    try:
        from trainer.models import build_model

        model = build_model(meta.model, meta.n_classes, meta.input_length)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # the card is written even when the model cannot be rebuilt here
        return None


def _experiment(info, extra: dict) -> str:
    if extra.get("experiment"):
        return str(extra["experiment"])
    overrides = getattr(info, "overrides", None)
    if overrides is not None:
        exp = [o.split("=", 1)[1] for o in map(str, overrides) if o.lstrip("+").startswith("experiment=")]
        rest = [o for o in map(str, overrides) if not o.lstrip("+").startswith("experiment=")]
        text = f"`+experiment={exp[0]}`" if exp else "none (the defaults of conf/train.yaml)"
        return text + (f", overrides `{' '.join(rest)}`" if rest else "")
    return "not recorded (the run config below is complete; `experiment` in --card-extra names it)"


def _hardware(info, extra: dict) -> str:
    for value in (extra.get("hardware"), info.summary.get("hardware"), info.summary.get("train/hardware")):
        if value:
            return str(value)
    t = info.config.get("trainer", {}) if isinstance(info.config, dict) else {}
    workers = t.get("num_workers", 1)
    device = "GPU" if t.get("use_gpu") else t.get("device", "?")
    return f"not recorded (config: device {device}, {workers} worker{'s' if workers != 1 else ''})"


def _eval_row(name: str, m: Optional[dict], title: Optional[str] = None) -> str:
    title = title or EVAL_TITLES.get(name, name)
    if not m:
        return f"| {title} | {NOT_MEASURED} | | | | | |"
    # inference.evaluate's top1 is over its "n" in-class items (files with "top1_all"), formerly over "n_answered"
    n = m.get("n") if "top1_all" in m else m.get("n_answered", m.get("n"))
    return (f"| {title} | {n if n is not None else '–'} | {_pct(m.get('top1'))} | {_pct(m.get('top5'))} "
            f"| {_pct(m.get('crystal_system_accuracy'))} | {_pct(m.get('crystal_system_summed_accuracy'))} "
            f"| {_pct(m.get('mean_confidence'))} / {_pct(m.get('ece'))} |")


def _coverage_cell(curve: dict, threshold: float) -> str:
    """"coverage / accuracy" of a coverage-accuracy curve at its threshold nearest ``threshold``."""
    t = [float(x) for x in curve.get("thresholds", [])]
    if not t:
        return "–"
    i = min(range(len(t)), key=lambda j: abs(t[j] - threshold))
    if abs(t[i] - threshold) > 0.026:
        return "–"
    acc = curve["accuracy"][i]
    return f"{_pct(curve['coverage'][i])} / {_pct(acc) if acc is not None else '–'}"


def _with_point(curve: dict, threshold: Optional[float], coverage: Any, accuracy: Any) -> dict:
    """``curve`` with its exact point at ``threshold`` added: the curve's grid (0, 0.05, ...) rarely holds
    the calibrated threshold, and the nearest grid point would count other patterns as kept."""
    if threshold is None or not isinstance(coverage, (int, float)):
        return curve
    t = [float(x) for x in curve.get("thresholds", [])]
    if any(abs(x - float(threshold)) < 1e-9 for x in t):
        return curve
    i = sum(x < float(threshold) for x in t)
    return {**curve, "thresholds": t[:i] + [float(threshold)] + t[i:],
            "coverage": list(curve["coverage"][:i]) + [coverage] + list(curve["coverage"][i:]),
            "accuracy": list(curve["accuracy"][:i]) + [accuracy] + list(curve["accuracy"][i:])}


def _coverage_table(curves: dict[str, dict], threshold: Optional[float]) -> list[str]:
    """Rows: refusal thresholds (the calibrated one marked); columns: sets; cells: coverage / accuracy."""
    if not curves:
        return []
    points = sorted(set(COVERAGE_POINTS) | ({round(float(threshold), 2)} if threshold is not None else set()))
    lines = ["| threshold | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
    for p in points:
        mark = " (in use)" if threshold is not None and abs(p - float(threshold)) < 1e-9 else ""
        lines.append(f"| {p:.2f}{mark} | " + " | ".join(_coverage_cell(c, p) for c in curves.values()) + " |")
    return lines


def render_card(name: str, meta, info, evaluations: dict, calibration: Optional[dict], extra: dict,
                dtype: str, size_mb: float) -> str:
    """The Markdown model card."""
    sim = meta.simulation or {}
    grid = sim.get("grid", {})
    cfg = info.config if isinstance(info.config, dict) else {}
    n_params = _params(meta)
    lines = [f"# {name}: space-group classifier for powder diffraction patterns", ""]
    if extra.get("description"):
        lines += [str(extra["description"]), ""]
    lines += [
        f"A `{meta.model.get('name', '?')}` network ({meta.model.get('arch', '?')}) that reads a powder X-ray "
        f"diffraction pattern and gives probabilities over {meta.n_classes} space groups. It was trained with "
        "crystalstream on patterns simulated from synthetic crystals only.",
        "",
        "```bash",
        "python -m inference.predict scan.xy            # the bundled model(s) when no --checkpoint is given",
        "python -m inference.evaluate --manifest M.csv --json",
        "```",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{meta.model.get('name', '?')}` ({meta.model.get('arch', '?')}) |",
        f"| parameters | {n_params:,} |" if n_params is not None else "| parameters | – |",
        f"| classes | {meta.n_classes} space groups: {', '.join(str(s) for s in meta.space_groups)} |",
        f"| input | {meta.input_length} points, 2θ {grid.get('two_theta_min', '?')}–{grid.get('two_theta_max', '?')}° "
        f"step {grid.get('step', '?')}°, λ = {sim.get('wavelength', '?')} Å, "
        f"{'square-rooted' if sim.get('sqrt') else 'linear'} intensities |",
        f"| volume head | {'yes' if meta.model.get('volume_head') and meta.volume_norm else 'no'} |",
        f"| weights | `model.safetensors`, {dtype}, {size_mb:.{1 if size_mb >= 1 else 3}f} MB "
        "(weights only, no optimizer state) |",
        "",
        "## Training recipe",
        "",
        f"- experiment: {_experiment(info, extra)}",
        f"- model config: `{json.dumps(meta.model, sort_keys=True)}`",
    ]
    opt = cfg.get("optimizer", {})
    if opt:
        lines.append(f"- optimizer: {opt.get('name', '?')}, learning rate {opt.get('lr', '?')}, schedule "
                     f"{opt.get('schedule', '?')}")
    if _get(cfg, "trainer.ema_decay", None):
        lines.append(f"- weights: exponential moving average of the trained weights, decay {_get(cfg, 'trainer.ema_decay', '?')}")
    clu = cfg.get("cluster", {})
    if clu:
        lines.append(f"- batch size {clu.get('batch_size', '?')}, source {clu.get('source', '?')}")
    if cfg.get("generator"):
        lines.append(f"- synthetic crystals: space-group prior {_get(cfg, 'generator.spacegroup_prior', '?')}, "
                     f"database {_get(cfg, 'database.name', '?')}, split {_get(cfg, 'split.kind', _get(cfg, 'split.name', '?'))}")
    imperfections = [k for k in ("gp_background", "vecsei_background", "noise", "impurity")
                     if isinstance(sim.get(k), dict) and sim[k].get("enabled")]
    lines.append(f"- simulation: {_get(sim, 'profile.shape', '?')} peaks, "
                 + (f"imperfections: {', '.join(imperfections)}" if imperfections else "pure patterns (no imperfections)"))
    if "seed" in cfg:
        lines.append(f"- root seed {cfg['seed']}")
    if info.run_dir is not None:
        lines.append(f"- run folder at packaging: `{info.run_dir}` (its `config.yaml` is the full recipe; "
                     "`meta.json` holds it too)")
    s, tr = info.summary, info.last_train
    steps = s.get("step", meta.step)
    seen = s.get("samples_seen", meta.samples_seen)
    lines += [
        "",
        "## Training",
        "",
        f"- steps: {steps:,}" if isinstance(steps, int) else f"- steps: {steps}",
        f"- patterns seen: {seen:,} (each simulated once, never repeated)" if isinstance(seen, int)
        else f"- patterns seen: {seen}",
        *_started_from(cfg, seen, extra.get("patterns_in_all")),
        f"- hardware: {_hardware(info, extra)}",
        "- wall time: " + (_duration(extra["wall_time_s"]) if isinstance(extra.get("wall_time_s"), (int, float)) else
                           _duration(info.wall_time_s) + (" (from the run folder's file times)"
                                                          if info.wall_time_source == "files" else "")),
    ]
    loss = s.get("train/loss", tr.get("loss"))
    acc = s.get("train/accuracy", tr.get("accuracy"))
    speed = s.get("train/samples_per_s", tr.get("samples_per_s"))
    if loss is not None:
        lines.append(f"- final training loss {_num(loss)}, batch accuracy {_pct(acc)}, {_num(speed, '{:.0f}')} patterns/s")

    lines += ["", "## Accuracy", "",
              "Top-1, top-5 and crystal-system accuracy over the answered patterns (n): the crystal system of "
              "the top space group, and the most probable system by the summed probabilities of its space "
              "groups (what `inference.predict` lists); and the mean top probability with its expected "
              "calibration error (ECE, 15 bins; out-of-scope patterns count as wrong).", "",
              "| set | n | top-1 | top-5 | crystal system | crystal system, summed | top probability / ECE |",
              "|---|---|---|---|---|---|---|"]
    names = list(EVAL_ORDER) + [k for k in evaluations if k not in EVAL_ORDER]
    rows = {k: _eval_row(k, evaluations.get(k)) for k in names}
    heldout_fit = bool(calibration) and calibration.get("source") == "heldout"
    fit_title = ("held-out structure types, the calibration crystals" if heldout_fit
                 else EVAL_TITLES["synthetic"] + " (calibration set)")
    if calibration and calibration.get("synthetic") and (heldout_fit or not evaluations.get("synthetic")):
        if heldout_fit:
            names.insert(names.index("heldout") + 1, "calibration")
        rows["calibration" if heldout_fit else "synthetic"] = _eval_row("synthetic", calibration["synthetic"],
                                                                     fit_title)
    lines += [rows[k] for k in names]
    during = {k: v for k, v in {**meta.metrics, **{k[5:]: v for k, v in s.items() if k.startswith("eval/")}}.items()
              if k.endswith(("/top1", "/top5", "/crystal_system_accuracy"))}
    if during:
        sets = sorted({k.rsplit("/", 1)[0] for k in during})
        lines += ["", f"Last evaluation during training (step {s.get('step', meta.step)}):", "",
                  "| test set | top-1 | top-5 | crystal system |", "|---|---|---|---|"]
        lines += [f"| {t} | {_pct(during.get(f'{t}/top1'))} | {_pct(during.get(f'{t}/top5'))} "
                  f"| {_pct(during.get(f'{t}/crystal_system_accuracy'))} |" for t in sets]

    lines += ["", "## Calibration", ""]
    threshold = None
    if calibration:
        threshold = calibration.get("refusal_threshold")
        excluded = calibration.get("excluded") or {}
        settings = (f"simulation: {calibration.get('simulation', '?')}, seed {calibration.get('seed', '?')}")
        if heldout_fit:
            fitted_on = (f"{calibration.get('n', '?')} patterns of real crystals of the held-out structure types "
                         f"({settings}; none of them among the {excluded.get('limit', '?')} that `inference.evaluate "
                         f"--heldout --limit {excluded.get('limit', '?')} --seed {excluded.get('seed', '?')}` scores)")
        else:
            fitted_on = f"{calibration.get('n', '?')} fresh synthetic patterns ({settings})"
        top_label = calibration.get("top_label") or {}
        lines += [
            f"Temperature scaling fitted on {fitted_on}; "
            "`inference.predict` and `inference.evaluate` divide the logits by T"
            + ("; then the top answer's probability p becomes sigmoid(a ln p - b ln(1 - p) + c), the "
               "difference moving among the other space groups of its crystal system." if top_label else "."),
            "",
            "| | |", "|---|---|",
            f"| temperature T | {_num(calibration.get('temperature'))} |",
            *([f"| top answer's map a / b / c | {_num(top_label.get('a'))} / {_num(top_label.get('b'))} / "
               f"{_num(top_label.get('c'))} |"] if top_label else []),
            f"| ECE before ({calibration.get('bins', 15)} bins) | {_pct(calibration.get('ece_before'))} |",
            *([f"| ECE with the temperature alone | {_pct(calibration.get('ece_temperature'))} |"] if top_label else []),
            f"| ECE after | {_pct(calibration.get('ece_after'))} |",
            f"| refusal threshold | {_num(threshold, '{:.2f}')} (target accuracy of the kept patterns "
            f"{_pct(calibration.get('target_accuracy'))}"
            + ("" if calibration.get("target_reached", True) else ", not reached: configured default") + ") |",
            f"| kept / accuracy at the threshold ({'calibration crystals' if heldout_fit else 'synthetic'}) "
            f"| {_pct(calibration.get('coverage_at_threshold'))} / "
            f"{_pct(calibration.get('accuracy_at_threshold'))} |",
        ]
        if calibration.get("crystal_system_threshold") is not None:
            kept = calibration.get("crystal_system_kept") or {}
            lines.append(f"| crystal-system threshold (summed probability; target accuracy "
                         f"{_pct(calibration.get('crystal_system_target_accuracy'))}): kept / accuracy | "
                         f"{_num(calibration['crystal_system_threshold'], '{:.2f}')}: {_pct(kept.get('coverage'))} / "
                         f"{_pct(kept.get('accuracy'))} |")
    else:
        lines.append("Not calibrated (no `calibration.json`): probabilities are the raw softmax and the refusal "
                     "threshold is the configured default. Run `python -m inference.calibrate --checkpoint RUN`.")

    curves = {}
    if calibration and calibration.get("coverage_accuracy"):
        curves["held-out (calibration crystals)" if heldout_fit else "synthetic (calibration set)"] = _with_point(
            calibration["coverage_accuracy"], calibration.get("refusal_threshold"),
            calibration.get("coverage_at_threshold"), calibration.get("accuracy_at_threshold"))
    for k in names:
        m = evaluations.get(k) or {}
        if m.get("coverage_accuracy"):
            r = m.get("refusal") or {}
            curves[EVAL_TITLES.get(k, k)] = _with_point(m["coverage_accuracy"], r.get("threshold"),
                                                        r.get("coverage"), r.get("accuracy_kept"))
    lines += ["", "## Coverage and accuracy with refusal", ""]
    if curves:
        lines += ["Per refusal threshold: the fraction of patterns answered (top probability at least the "
                  "threshold) / the top-1 accuracy on them.", ""] + _coverage_table(curves, threshold)
    else:
        lines.append(NOT_MEASURED + ".")

    lines += ["", "## Intended use and limitations", "",
              str(extra.get("intended_use") or "Ranking candidate space groups of a single-phase powder pattern "
                  "before indexing and refinement; not a replacement for them."), ""]
    limitations = extra.get("limitations") or [
        "Trained only on simulated patterns; measured patterns with strong preferred orientation, several phases "
        "or an unknown wavelength are harder.",
        f"Knows only the {meta.n_classes} space groups listed above; any other is always answered wrongly.",
        "Honour the REFUSED flag: below the refusal threshold the list is a guess.",
    ]
    lines += [f"- {x}" for x in (limitations if isinstance(limitations, list) else [limitations])]
    if extra.get("notes"):
        lines += ["", "## Notes", "", str(extra["notes"])]
    lines += ["", "## Provenance", "",
              f"- checkpoint: `{info.checkpoint}` (step {meta.step}, {'final' if meta.final else 'not final'}, "
              f"created {meta.created or '?'})",
              f"- packaged {time.strftime('%Y-%m-%d', time.gmtime())} with `python -m inference.package`",
              f"- license: {extra.get('license', 'as the crystalstream repository')}", ""]
    return "\n".join(lines)
