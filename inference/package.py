"""Bundle a trained checkpoint inside the package, with its model card.

    python -m inference.package RUN_OR_CHECKPOINT --name NAME [--card-extra FILE.json]
                              [--eval heldout=FILE.json --eval synthetic=FILE.json --eval xred=FILE.json]
                              [--dtype auto|float32|float16] [--max-mb 45] [--force]
    python -m inference.package --refresh --name NAME [--eval SET=FILE.json ...] [--card-extra FILE.json]

Copies the final weights (weights only: no optimizer or RNG state) and ``meta.json`` of a run or
checkpoint into ``inference/pretrained/NAME/``, with ``calibration.json`` when the checkpoint has
one (``python -m inference.calibrate``), and writes ``MODEL_CARD.md`` (:mod:`inference.model_card`)
from what the run folder holds (``config.yaml``, ``summary.json``, ``metrics.jsonl``) and the
evaluation JSON files given (``python -m inference.evaluate --json`` output or its ``metrics.json``).

Weights are stored as float32 when that stays under ``--max-mb``, else as float16 (``--dtype auto``);
the loader casts them back to float32. The folder is written next to its destination and moved
into place, then loaded once to check it.

What the card was rendered from (the run folder's facts, the evaluations, the extra content) is kept
beside it as ``card_inputs.json``, so ``--refresh`` can render the card again after the bundled
model is recalibrated (``python -m inference.calibrate --checkpoint inference/pretrained/NAME``) or
evaluated anew, without the run folder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file

from inference.calibration import CALIBRATION
from trainer.checkpoint import META, WEIGHTS, load_meta, resolve

CARD_INPUTS = "card_inputs.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EVAL_SETS = ("heldout", "synthetic", "xred")
DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class RunInfo:
    """What a run folder tells about how a checkpoint was made (any part may be missing).

    Attributes:
        checkpoint: the checkpoint directory.
        run_dir: the run folder (the checkpoints folder's parent), or None.
        config: the run's resolved config (``config.yaml``, else the checkpoint's meta), as a dict.
        summary: ``summary.json``.
        last_train: the last "train" record of ``metrics.jsonl``.
        last_eval: the last "eval" record of ``metrics.jsonl``.
        wall_time_s: training wall time in seconds (``summary.json``, else the span of the run's files).
        wall_time_source: "summary", "files" or None.
        overrides: the command-line overrides of the run (``.hydra/overrides.yaml``), or None.
    """

    checkpoint: Path
    run_dir: Optional[Path] = None
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    last_train: dict = field(default_factory=dict)
    last_eval: dict = field(default_factory=dict)
    wall_time_s: Optional[float] = None
    wall_time_source: Optional[str] = None
    overrides: Optional[list[str]] = None


def find_run_dir(checkpoint: Path) -> Optional[Path]:
    """The run folder of a checkpoint in ``RUN/checkpoints/step_N``, else None."""
    parent = checkpoint.parent
    if parent.name == "checkpoints" and any((parent.parent / f).exists()
                                            for f in ("config.yaml", "summary.json", "metrics.jsonl")):
        return parent.parent
    return None


def resolve_final(path: str | Path) -> Path:
    """The checkpoint meant by ``path``; for a run folder its final checkpoint (``summary.json``'s
    ``final_checkpoint`` when it exists, else the newest)."""
    p = Path(path).expanduser()
    summary = p / "summary.json"
    if p.is_dir() and summary.exists():
        try:
            final = json.loads(summary.read_text()).get("final_checkpoint")
        except json.JSONDecodeError as err:
            raise ValueError(f"{summary}: not JSON ({err})") from err
        if final:
            for candidate in (Path(final), p / "checkpoints" / Path(final).name):
                if (candidate / META).exists() and (candidate / WEIGHTS).exists():
                    return candidate
    return resolve(p)


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut off by a crash
    return out


def run_info(checkpoint: Path) -> RunInfo:
    """Gather what the run folder around ``checkpoint`` holds."""
    info = RunInfo(checkpoint=checkpoint, run_dir=find_run_dir(checkpoint))
    meta = load_meta(checkpoint)
    info.config = dict(meta.config or {})
    run = info.run_dir
    if run is None:
        return info
    if (run / "config.yaml").exists():
        from omegaconf import OmegaConf

        try:
            info.config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False)
        except Exception as err:
            raise ValueError(f"{run / 'config.yaml'}: cannot be read ({err})") from err
    if (run / ".hydra" / "overrides.yaml").exists():
        from omegaconf import OmegaConf

        try:
            info.overrides = [str(o) for o in OmegaConf.load(run / ".hydra" / "overrides.yaml")]
        except Exception:
            info.overrides = None   # unreadable: the card says the experiment was not recorded
    if (run / "summary.json").exists():
        try:
            info.summary = json.loads((run / "summary.json").read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{run / 'summary.json'}: not JSON ({err})") from err
    if (run / "metrics.jsonl").exists():
        records = _read_jsonl(run / "metrics.jsonl")
        trains = [r for r in records if r.get("kind") == "train"]
        evals = [r for r in records if r.get("kind") == "eval"]
        info.last_train = trains[-1] if trains else {}
        info.last_eval = evals[-1] if evals else {}
    for key in ("wall_time_s", "train/wall_time_s", "elapsed_s"):
        if isinstance(info.summary.get(key), (int, float)):
            info.wall_time_s, info.wall_time_source = float(info.summary[key]), "summary"
            break
    else:
        start = run / "config.yaml"
        end = run / "summary.json" if (run / "summary.json").exists() else checkpoint / META
        if start.exists() and end.exists() and end.stat().st_mtime > start.stat().st_mtime:
            info.wall_time_s, info.wall_time_source = end.stat().st_mtime - start.stat().st_mtime, "files"
    return info


def _json_object(path: Path, name: str, expected: str) -> dict:
    """The JSON object in ``path``; errors say which file (``name`` when it is missing) and what was wrong."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{name} not found") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected {expected}")
    return data


def load_evaluation(path: str | Path) -> dict:
    """Metrics of an evaluation JSON file (``inference.evaluate --json`` output or ``metrics.json``)."""
    path = Path(path)
    data = _json_object(path, f"evaluation file {path}", "a JSON object of metrics")
    if "top1" not in data and "top1_count" not in data:
        raise ValueError(f"{path}: no 'top1' in it; give inference.evaluate --json output or its metrics.json")
    return data


def parse_evals(items: Sequence[str]) -> dict[str, dict]:
    """``["heldout=FILE", ...]`` -> {set name: metrics}."""
    out = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise ValueError(f"--eval wants NAME=FILE.json, got {item!r}")
        out[name.strip()] = load_evaluation(file.strip())
    return out


def export_weights(source: Path, dest: Path, dtype: str = "auto", max_mb: float = 45.0) -> tuple[str, float]:
    """Write the floating-point weights of ``source`` (a safetensors file) to ``dest`` as float32 when
    they fit in ``max_mb`` (or as asked), else float16; integer buffers are kept. Returns (dtype, MB)."""
    weights = load_file(str(source))
    n_float = sum(t.numel() for t in weights.values() if t.is_floating_point())
    other = sum(t.numel() * t.element_size() for t in weights.values() if not t.is_floating_point())
    if dtype == "auto":
        dtype = "float32" if (4 * n_float + other) / 2 ** 20 <= max_mb else "float16"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto, float32 or float16, got {dtype!r}")
    mb = ((2 if dtype == "float16" else 4) * n_float + other) / 2 ** 20
    if mb > max_mb:
        raise ValueError(f"{source}: the weights take {mb:.1f} MB as {dtype}, more than --max-mb {max_mb:g}")
    out = {k: (t.to(DTYPES[dtype]) if t.is_floating_point() else t).contiguous() for k, t in weights.items()}
    save_file(out, str(dest), metadata={"format": "pt", "dtype": dtype})
    os.chmod(dest, 0o644)  # readable by everyone once installed (the writer may create it private)
    return dtype, dest.stat().st_size / 2 ** 20


def package(source: str | Path, name: str, dest_root: Optional[Path] = None, evaluations: Optional[dict] = None,
            card_extra: Optional[dict] = None, dtype: str = "auto", max_mb: float = 45.0,
            force: bool = False, check: bool = True) -> Path:
    """Copy a checkpoint into ``dest_root/name`` (default ``inference/pretrained/NAME``) with its card."""
    from inference import pretrained
    from inference.model_card import render_card

    if not NAME_PATTERN.match(name):
        raise ValueError(f"--name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter or digit")
    checkpoint = resolve_final(source)
    info = run_info(checkpoint)
    meta = load_meta(checkpoint)
    root = Path(dest_root) if dest_root is not None else pretrained.package_root()
    final = root / name
    if final.exists() and not force:
        raise FileExistsError(f"{final} exists; give --force to replace it")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        stored_dtype, mb = export_weights(checkpoint / WEIGHTS, tmp / WEIGHTS, dtype, max_mb)
        shutil.copyfile(checkpoint / META, tmp / META)
        calibration = None
        if (checkpoint / CALIBRATION).exists():
            shutil.copyfile(checkpoint / CALIBRATION, tmp / CALIBRATION)
            calibration = json.loads((checkpoint / CALIBRATION).read_text())
        inputs = {"run": _run_record(info), "evaluations": evaluations or {}, "extra": card_extra or {},
                  "dtype": stored_dtype, "size_mb": mb}
        (tmp / pretrained.CARD).write_text(render_card(
            name=name, meta=meta, info=info, evaluations=inputs["evaluations"], calibration=calibration,
            extra=inputs["extra"], dtype=stored_dtype, size_mb=mb))
        (tmp / CARD_INPUTS).write_text(json.dumps(inputs, indent=1, default=str))
        if check:
            from inference.predict import load_member

            load_member(tmp)
        if final.exists():
            trash = root / f".{name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _run_record(info: RunInfo) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}


def refresh_card(name: str, dest_root: Optional[Path] = None, evaluations: Optional[dict] = None,
                 card_extra: Optional[dict] = None) -> Path:
    """Render ``MODEL_CARD.md`` of the bundled model ``name`` again from its ``card_inputs.json`` and its
    current ``calibration.json``; ``evaluations`` replace or add sets, ``card_extra`` keys replace the
    stored ones. Both files are replaced atomically; returns the card's path."""
    from inference import pretrained
    from inference.model_card import render_card
    from trainer.checkpoint import atomic_write_text

    folder = (Path(dest_root) if dest_root is not None else pretrained.package_root()) / name
    inputs_path = folder / CARD_INPUTS
    if not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"--refresh: no bundled model {folder}")
    if not inputs_path.exists():
        raise FileNotFoundError(f"--refresh: {inputs_path} is missing (the model was bundled before card inputs "
                                "were kept); package it again from its run folder")
    inputs = _json_object(inputs_path, str(inputs_path), "a JSON object")
    run = dict(inputs.get("run") or {})
    run["checkpoint"] = Path(run.get("checkpoint") or folder)
    run["run_dir"] = Path(run["run_dir"]) if run.get("run_dir") else None
    info = RunInfo(**{k: v for k, v in run.items() if k in RunInfo.__dataclass_fields__})
    inputs["evaluations"] = {**(inputs.get("evaluations") or {}), **(evaluations or {})}
    inputs["extra"] = {**(inputs.get("extra") or {}), **(card_extra or {})}
    calibration = json.loads((folder / CALIBRATION).read_text()) if (folder / CALIBRATION).exists() else None
    card = render_card(name=name, meta=load_meta(folder), info=info, evaluations=inputs["evaluations"],
                       calibration=calibration, extra=inputs["extra"], dtype=str(inputs.get("dtype", "float32")),
                       size_mb=float(inputs.get("size_mb", (folder / WEIGHTS).stat().st_size / 2 ** 20)))
    atomic_write_text(inputs_path, json.dumps(inputs, indent=1, default=str))
    atomic_write_text(folder / pretrained.CARD, card)
    return folder / pretrained.CARD


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.package",
                                 description="Bundle a trained checkpoint in inference/pretrained/NAME with a model card.")
    ap.add_argument("source", nargs="?", help="run folder, checkpoints folder, step directory or latest.json")
    ap.add_argument("--refresh", action="store_true",
                    help="render the card of the bundled model NAME again (after calibrating or evaluating it anew) "
                         "from its card_inputs.json, with --eval and --card-extra added")
    ap.add_argument("--name", required=True, help="folder name under inference/pretrained/")
    ap.add_argument("--card-extra", default=None,
                    help="JSON object with more card content: evaluations {set: metrics}, hardware, wall_time_s, "
                         "intended_use, limitations, notes, license")
    ap.add_argument("--eval", action="append", default=[], metavar="SET=FILE.json",
                    help="evaluation metrics of a set (heldout, synthetic, xred or any name); repeatable")
    ap.add_argument("--dtype", choices=("auto", "float32", "float16"), default="auto",
                    help="stored weight type (auto: float32 when it fits in --max-mb, else float16)")
    ap.add_argument("--max-mb", type=float, default=45.0, help="largest weights file allowed, MB (default 45)")
    ap.add_argument("--dest", default=None, help="folder to write NAME into (default: inference/pretrained/)")
    ap.add_argument("--force", action="store_true", help="replace an existing bundled model of that name")
    args = ap.parse_args(argv)
    try:
        extra: dict[str, Any] = {}
        if args.card_extra:
            extra = _json_object(Path(args.card_extra), f"--card-extra {args.card_extra}", "a JSON object")
        evaluations = {k: v for k, v in (extra.get("evaluations") or {}).items()}
        evaluations.update(parse_evals(args.eval))
        if args.refresh:
            extra.pop("evaluations", None)
            card = refresh_card(args.name, Path(args.dest) if args.dest else None, evaluations, extra)
            print(f"refreshed {card}")
            return 0
        if not args.source:
            raise ValueError("give the run folder or checkpoint to package (or --refresh --name NAME)")
        out = package(args.source, args.name, Path(args.dest) if args.dest else None, evaluations, extra,
                      args.dtype, args.max_mb, args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not load_meta(out).final:
        print(f"warning: {args.source} is not the final checkpoint of its run (training may not have ended)",
              file=sys.stderr)
    size = (out / WEIGHTS).stat().st_size / 2 ** 20
    dtype = json.loads(_safetensors_header(out / WEIGHTS)).get("__metadata__", {}).get("dtype", "?")
    print(f"bundled {out}: {WEIGHTS} ({dtype}, {size:.1f} MB), {META}"
          + (f", {CALIBRATION}" if (out / CALIBRATION).exists() else " (no calibration: run python -m inference.calibrate first)")
          + ", MODEL_CARD.md")
    return 0


def _safetensors_header(path: Path) -> str:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return f.read(n).decode()


if __name__ == "__main__":
    sys.exit(main())
