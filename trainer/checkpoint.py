"""Portable, atomic checkpoints.

A checkpoint is a directory::

    step_000300/
        model.safetensors     weights (safetensors, CPU tensors)
        meta.json             CheckpointMeta: class list, model and simulation config, volume
                              normalisation, step, run config
        training_state.pt     optimizer + scheduler state and RNG states (plain tensors and
                              containers, loaded with ``torch.load(weights_only=True)``); absent
                              in inference-only exports

It is written into a temporary sibling directory and moved into place with ``os.replace``, so a
reader never sees half a checkpoint. The run's checkpoint folder keeps ``latest.json`` pointing
at the newest complete one; any of the folder, ``latest.json``, the step directory or a file in
it can be passed to :func:`load_for_inference` or ``trainer.resume=PATH``.

The meta is :class:`trainer.checkpoint_meta.CheckpointMeta`, the RNG snapshot :mod:`trainer.rng` and
the atomic text write :mod:`trainer.atomic_io`; all are importable from here too.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

# The meta, the RNG snapshot and the atomic writes live in their own modules; importers of this one
# keep finding them here.
from trainer.atomic_io import atomic_write_text, fsync_dir
from trainer.checkpoint_meta import FORMAT_VERSION, CheckpointMeta  # noqa: F401 (FORMAT_VERSION re-exported)
from trainer.rng import rng_state, set_rng_state  # noqa: F401 (set_rng_state re-exported)

WEIGHTS = "model.safetensors"
META = "meta.json"
STATE = "training_state.pt"
LATEST = "latest.json"
CHECKPOINTS = "checkpoints"  # the run folder's checkpoint subfolder

log = logging.getLogger(__name__)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel) or (
            hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module)
        ):
            model = model.module
        else:
            return model


# ---------------------------------------------------------------------------------------- save
def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    meta: CheckpointMeta,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Any = None,
    extra_state: Optional[dict] = None,
    include_rng: bool = True,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically and return its path.

    ``extra_state`` (plain containers / tensors) is stored in ``training_state.pt`` next to the
    optimizer and scheduler state, e.g. the batch source's state.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "step": str(meta.step)})
        meta.created = meta.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (tmp / META).write_text(meta.to_json())
        if optimizer is not None or scheduler is not None or extra_state is not None or include_rng:
            training = {
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng_state() if include_rng else None,
                "extra": extra_state or {},
            }
            torch.save(training, tmp / STATE)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if final.exists():
            trash = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def mark_latest(checkpoint: str | os.PathLike) -> Path:
    """Point ``<parent>/latest.json`` at ``checkpoint`` (atomically)."""
    checkpoint = Path(checkpoint)
    meta = json.loads((checkpoint / META).read_text())
    pointer = checkpoint.parent / LATEST
    atomic_write_text(pointer, json.dumps({"path": checkpoint.name, "step": meta.get("step", 0)}))
    return pointer


def prune_checkpoints(directory: str | os.PathLike, keep: int, protect: tuple[Path, ...] = ()) -> None:
    """Delete all but the ``keep`` newest ``step_*`` checkpoints in ``directory``."""
    if keep <= 0:
        return
    directory = Path(directory)
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir() and (p / META).exists())
    protected = {Path(p).resolve() for p in protect}
    for p in steps[:-keep]:
        if p.resolve() not in protected:
            shutil.rmtree(p, ignore_errors=True)


def remove_partial_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Delete what a killed :func:`save_checkpoint` left in ``directory``: ``.step_*.tmp`` folders
    (a checkpoint being written) and ``.step_*.old`` folders (a replaced one being deleted).

    Complete checkpoints are never touched. Call it before a run starts writing into the folder
    (not while another process saves there). Returns the removed paths, each logged.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.glob(".step_*")):
        if p.is_dir() and p.suffix in (".tmp", ".old"):
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed partial checkpoint %s (left by an interrupted save)", p)
            removed.append(p)
    return removed


# ---------------------------------------------------------------------------------------- load
def resolve(path: str | os.PathLike) -> Path:
    """The checkpoint directory meant by ``path`` (run folder, checkpoints folder, latest.json,
    step directory, or a file inside one)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}")
    if p.is_file():
        if p.name == LATEST:
            return resolve(p.parent / json.loads(p.read_text())["path"])
        p = p.parent
    if (p / META).exists() and (p / WEIGHTS).exists():
        return p
    for candidate in (p / LATEST, p / "checkpoints" / LATEST):
        if candidate.exists():
            return resolve(candidate)
    raise FileNotFoundError(f"{p} holds no checkpoint ({META} + {WEIGHTS}) and no {LATEST}")


def run_folder(checkpoint: str | os.PathLike) -> Optional[Path]:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/step_N`` -> ``<run>``), or None
    for a checkpoint that does not sit in a run's ``checkpoints/`` folder (e.g. an export)."""
    directory = resolve(checkpoint)
    if directory.parent.name == CHECKPOINTS:
        return directory.parent.parent
    return None


# Largest model (parameters, counted from the config without allocating) a checkpoint may ask for.
MAX_PARAMETERS = 2_000_000_000


def load_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The ``meta.json`` of a checkpoint; ``ValueError`` naming the file when it is not valid JSON
    or does not describe a checkpoint (missing or mistyped fields)."""
    file = resolve(path) / META
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in ("space_groups", "model", "input_length") if k not in data]
    if missing:
        raise ValueError(f"{file}: missing field(s) {', '.join(missing)}")
    try:
        meta = CheckpointMeta.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{file}: {err}") from err
    problems = []
    if not isinstance(meta.space_groups, list) or not meta.space_groups or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 230 for s in meta.space_groups):
        problems.append("space_groups must be a non-empty list of space-group numbers 1..230")
    if not isinstance(meta.model, dict):
        problems.append("model must be an object (the model config)")
    if not isinstance(meta.input_length, int) or isinstance(meta.input_length, bool) or not 1 <= meta.input_length <= 10**7:
        problems.append(f"input_length must be an integer in 1..10^7, got {meta.input_length!r}")
    if meta.volume_norm is not None and not (isinstance(meta.volume_norm, dict) and {"mean", "std"} <= set(meta.volume_norm)):
        problems.append("volume_norm must be null or an object with 'mean' and 'std'")
    if not isinstance(meta.representation, dict) or (meta.representation and not (
            meta.representation.get("kind") in ("two_theta", "ideal", "pdf")
            and isinstance(meta.representation.get("config"), dict))):
        problems.append("representation must be empty or an object with 'kind' (two_theta, ideal or pdf) and "
                        "'config'")
    if problems:
        raise ValueError(f"{file}: " + "; ".join(problems))
    return meta


def count_parameters(meta: CheckpointMeta, source: str | os.PathLike = META,
                     limit: Optional[int] = MAX_PARAMETERS) -> int:
    """Parameters of the model ``meta`` describes, counted on the ``meta`` device (nothing is
    allocated); ``ValueError`` naming ``source`` when the config cannot be built or the count exceeds
    ``limit``."""
    from trainer.models import build_model

    try:
        with torch.device("meta"):
            model = build_model(meta.model, meta.n_classes, meta.input_length)
    except Exception as err:  # the model builder's own errors carry no file name
        raise ValueError(f"{source}: the model config cannot be built ({type(err).__name__}: {err})") from err
    n = sum(p.numel() for p in model.parameters())
    if limit is not None and n > limit:
        raise ValueError(f"{source}: the model config asks for {n:,} parameters, more than the limit of "
                         f"{limit:,}; refusing to build it (absurd layer sizes in the model config?)")
    return n


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(resolve(path) / WEIGHTS), device=str(device))


def load_for_inference(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model of a checkpoint with its weights, in eval mode, on ``device``."""
    from trainer.models import build_model

    directory = resolve(path)
    meta = load_meta(directory)
    count_parameters(meta, directory / META)
    model = build_model(meta.model, meta.n_classes, meta.input_length)
    model.load_state_dict(load_weights(directory, "cpu"), strict=True)
    model.to(device).eval()
    return model, meta


def require_classes(meta: CheckpointMeta, space_groups: list[int], source: str) -> None:
    """``ValueError`` naming ``source`` unless the checkpoint's classes are the run's, in the same order."""
    if [int(s) for s in meta.space_groups] != [int(s) for s in space_groups]:
        raise ValueError(f"{source} was trained on other classes than this run")


def _log_axis(model_cfg) -> Optional[tuple]:
    """(2-theta range, points) of a log-Q model's front end, None for a model that reads its input as is."""
    from trainer.config import ModelConfig, typed

    cfg = typed(ModelConfig, model_cfg)
    if cfg.input_axis != "log_q" or cfg.axis_two_theta is None:
        return None
    return tuple(round(float(v), 6) for v in cfg.axis_two_theta), int(cfg.axis_points)


def load_grown_state(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load ``weights`` of a smaller model into ``model``, which may hold extra residual branches (blocks
    with ``new_branches``, e.g. ``model.stage_double=true`` grown from ``false``): every branch whose
    parameters are all absent from ``weights`` starts as the identity (``start_branch_as_identity``), so
    the grown model computes exactly what the checkpoint did. Returns the started branches' names;
    ``RuntimeError`` (as ``load_state_dict``) for any other missing, unexpected or reshaped weight."""
    new: dict[str, tuple[nn.Module, str]] = {}
    for name, module in model.named_modules():
        for branch in getattr(module, "new_branches", tuple)():
            prefix = f"{name}.{branch}." if name else f"{branch}."
            if not any(k.startswith(prefix) for k in weights):
                new[prefix] = (module, branch)
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not any(k.startswith(p) for p in new)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"Error(s) in loading state_dict: missing {missing[:3]}, "
                           f"unexpected {list(result.unexpected_keys)[:3]}")
    for module, branch in new.values():
        module.start_branch_as_identity(branch)
    return [p.rstrip(".") for p in new]


def load_initial_weights(model: nn.Module, path: str | os.PathLike, space_groups: list[int],
                         input_length: int, model_cfg=None, key: str = "trainer.init_weights",
                         grow: bool = False) -> CheckpointMeta:
    """Load the weights of checkpoint ``path`` into ``model`` (``trainer.init_weights``); ``ValueError``
    naming the key when its classes, input length or layers differ from the run's. A log-Q model (its
    ``model_cfg``) may start from one trained on another 2-theta step over the same range and log axis:
    its layers only ever see the log-Q axis (pure patterns on the paper's grid, then measured-looking ones).
    ``grow``: ``model`` may have residual branches the checkpoint lacks; they start as the identity
    (:func:`load_grown_state`). ``key`` names the config key in the errors, a missing checkpoint's too."""
    try:
        meta = load_meta(path)
    except FileNotFoundError as err:
        raise ValueError(f"{key}: {err}") from err
    require_classes(meta, space_groups, f"{key}: {path}")
    same_axis = model_cfg is not None and _log_axis(model_cfg) is not None \
        and _log_axis(meta.model) == _log_axis(model_cfg)
    if int(meta.input_length) != int(input_length) and not same_axis:
        raise ValueError(f"{key}: {path} reads {meta.input_length} points, this run's "
                         f"patterns have {input_length}")
    try:
        if grow:
            grown = load_grown_state(model, load_weights(path))
            log.info("%s: %d residual branches new to %s start as the identity", key, len(grown), path)
        else:
            model.load_state_dict(load_weights(path), strict=True)
    except RuntimeError as err:  # missing, unexpected or differently shaped layers
        raise ValueError(f"{key}: the weights of {path} do not fit this run's model "
                         f"({str(err).splitlines()[0]})") from err
    return meta


@dataclass
class TrainingState:
    """What :func:`load_training_state` returns to resume a run."""

    path: Path
    meta: CheckpointMeta
    weights: dict[str, torch.Tensor]
    optimizer: Optional[dict]
    scheduler: Optional[dict]
    rng: Optional[dict]
    extra: dict


def load_training_state(path: str | os.PathLike) -> TrainingState:
    """Weights, optimizer, scheduler, RNG and extra state of a checkpoint (for ``trainer.resume``)."""
    directory = resolve(path)
    meta = load_meta(directory)
    weights = load_weights(directory)
    state_file = directory / STATE
    if state_file.exists():
        training = torch.load(state_file, map_location="cpu", weights_only=True)
    else:
        training = {}
    return TrainingState(
        path=directory,
        meta=meta,
        weights=weights,
        optimizer=training.get("optimizer"),
        scheduler=training.get("scheduler"),
        rng=training.get("rng"),
        extra=training.get("extra") or {},
    )
