"""The training loop: pull a batch, one Adam step, log, checkpoint, evaluate; resumable.

Runs in one process (``fit``) or in every worker of a Ray Train ``TorchTrainer``
(``trainer.distributed``), where the model is wrapped in DDP and each worker pulls its own
batches. Rank 0 logs, checkpoints and talks to the evaluators.
"""
from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cluster.batch import Batch
from cluster.peak_batch import PeakBatch
from trainer.checkpoint import (
    CheckpointMeta,
    load_training_state,
    mark_latest,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
    unwrap,
)
from trainer.config import LoggerConfig, ModelConfig, OptimizerConfig, TrainerConfig, to_dict, typed
from trainer.hooks import EvaluationHook, collect
from trainer.metrics_log import MetricsLog, plot_curves
from trainer.models import build_model, count_parameters
from trainer.models.heads import auxiliary_outputs
from trainer.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """Everything the loop needs besides the batch source and the evaluator."""

    model: Any
    optimizer: Any
    trainer: Any
    space_groups: list[int]
    input_length: int
    simulation: dict = field(default_factory=dict)
    representation: dict = field(default_factory=dict)  # simulator.representation describe(): kind, axis, shape
    volume_norm: Optional[dict] = None
    logger: Any = None
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        self.model = typed(ModelConfig, self.model)
        self.optimizer = typed(OptimizerConfig, self.optimizer)
        self.trainer = typed(TrainerConfig, self.trainer)
        self.logger = typed(LoggerConfig, self.logger)
        self.space_groups = [int(s) for s in self.space_groups]


@dataclass
class FitResult:
    step: int
    samples_seen: int
    final_checkpoint: Optional[Path]
    train_metrics: dict
    eval_metrics: dict  # last finished evaluation
    eval_step: Optional[int]
    output_dir: Path
    skipped_batches: int = 0


# ------------------------------------------------------------------------------------ helpers
def _json_safe(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA requested but not available; training on the CPU")
        return torch.device("cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype (None: full fp32). bf16 autocast only on CUDA devices that support it."""
    if name == "fp32":
        return None
    if name not in ("auto", "bf16"):
        raise ValueError(f"unknown precision {name!r} (auto | bf16 | fp32)")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if name == "bf16":
        log.warning("bf16 autocast needs a CUDA device with bf16 support; training in fp32")
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def check_batch(batch: Batch, n_classes: int, input_length: int, image_channels: Optional[int] = None) -> Optional[str]:
    """Why a batch cannot be trained on (None if it can). ``image_channels``: the model reads (B, C, H, W)
    images (zone-axis models) instead of (B, input_length) patterns."""
    if isinstance(batch, PeakBatch):
        return batch.check(n_classes, input_length)
    p, y = batch.patterns, batch.labels
    if image_channels is not None:
        if p.ndim != 4 or p.shape[1] != image_channels:
            return f"patterns of shape {tuple(p.shape)}, expected (B, {image_channels}, H, W) images"
    elif p.ndim != 2 or p.shape[1] != input_length:
        return f"patterns of shape {tuple(p.shape)}, expected (B, {input_length})"
    if len(y) != len(p) or len(p) == 0:
        return f"{len(p)} patterns but {len(y)} labels"
    if (np.asarray(y) < 0).any() or (np.asarray(y) >= n_classes).any():
        return f"labels outside [0, {n_classes})"
    if not np.isfinite(np.asarray(p, np.float32)).all():
        return "non-finite pattern values"
    return None


def to_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    non_blocking = device.type == "cuda"
    if isinstance(batch, PeakBatch):  # peak payload (cluster.payload=peaks): rendered here, on the device
        from cluster.torch_render import render_batch

        y = torch.as_tensor(np.asarray(batch.labels, np.int64), device=device)
        return render_batch(batch, device), y, torch.as_tensor(np.asarray(batch.log_volume, np.float32), device=device)
    x = torch.from_numpy(np.ascontiguousarray(batch.patterns))
    y = torch.from_numpy(np.asarray(batch.labels, np.int64))
    v = torch.from_numpy(np.asarray(batch.log_volume, np.float32))
    if non_blocking:
        x, y, v = x.pin_memory(), y.pin_memory(), v.pin_memory()
    x = x.to(device, non_blocking=non_blocking).float()
    return x, y.to(device, non_blocking=non_blocking), v.to(device, non_blocking=non_blocking)


def crystal_system_of_classes(space_groups: list[int], device: torch.device | None = None) -> torch.Tensor:
    """(C,) int64: the crystal-system index (0 triclinic .. 6 cubic, ``generator.symmetry.CRYSTAL_SYSTEMS``)
    of each class's space group: the targets of a crystal-system head."""
    from generator.symmetry import CRYSTAL_SYSTEMS, crystal_system

    return torch.tensor([CRYSTAL_SYSTEMS.index(crystal_system(int(s))) for s in space_groups], dtype=torch.int64,
                        device=device)


def compute_loss(out: dict[str, torch.Tensor], y: torch.Tensor, log_volume: torch.Tensor,
                 volume_norm: Optional[dict], volume_weight: float,
                 label_smoothing: float = 0.0, class_systems: Optional[torch.Tensor] = None,
                 crystal_system_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy (optionally label-smoothed) plus ``volume_weight`` x MAE of the z-scored log volume
    (when there is a volume head), plus ``crystal_system_weight`` x the cross-entropy of the crystal system
    when the model has a crystal-system head (an output "crystal_system_logits" (B, 7); ``class_systems``
    (C,) maps class -> crystal system, :func:`crystal_system_of_classes`). Models without these outputs
    get the plain cross-entropy."""
    logits = out["logits"].float()
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    parts = {"ce": ce.detach()}
    loss = ce
    if "log_volume" in out and volume_norm is not None:
        z = (log_volume - volume_norm["mean"]) / volume_norm["std"]
        mae = (out["log_volume"].float() - z).abs().mean()
        parts["volume_mae"] = mae.detach()
        loss = loss + volume_weight * mae
    if "crystal_system_logits" in out and class_systems is not None:
        cs_logits = out["crystal_system_logits"].float()
        cs_target = class_systems.to(y.device)[y]
        cs_ce = F.cross_entropy(cs_logits, cs_target, label_smoothing=label_smoothing)
        parts["crystal_system_ce"] = cs_ce.detach()
        parts["crystal_system_correct"] = (cs_logits.detach().argmax(1) == cs_target).sum()
        loss = loss + crystal_system_weight * cs_ce
    parts["correct"] = (logits.detach().argmax(1) == y).sum()
    return loss, parts


# ---------------------------------------------------------------------------- batch source state
def source_state(source: Any) -> Optional[dict]:
    """A resumable snapshot of a batch source (plain containers / tensors), if it has one."""
    if hasattr(source, "state_dict"):
        return source.state_dict()
    from cluster import sources

    if isinstance(source, sources.ArraySource):
        return {"kind": "array", "rng": json.dumps(source.rng.bit_generator.state),
                "order": torch.from_numpy(np.asarray(source._order, np.int64)), "epochs": int(source.epochs)}
    return None


def load_source_state(source: Any, state: Optional[dict]) -> bool:
    """Restore :func:`source_state`; False if the source cannot be restored."""
    if not state:
        return False
    if hasattr(source, "load_state_dict"):
        source.load_state_dict(state)
        return True
    if state.get("kind") == "array" and hasattr(source, "rng") and hasattr(source, "_order"):
        source.rng.bit_generator.state = json.loads(state["rng"])
        source._order = state["order"].numpy().astype(np.int64)
        source.epochs = int(state["epochs"])
        return True
    return False


# ------------------------------------------------------------------------------------- the loop
class _Progress:
    """A rich bar on a terminal; elsewhere (a log file, CI, nohup) a log line at most every ``every_s`` seconds."""

    def __init__(self, enabled: bool, total: int, start: int, every_s: float = 30.0):
        from rich.console import Console

        self.bar = None
        self.total, self.every_s = total, every_s
        self.enabled = enabled
        self.last_line = time.perf_counter()
        if enabled and Console().is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.description}"), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=total, completed=start)

    def update(self, step: int, text: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, **({"description": text} if text else {}))
        elif self.enabled and text and time.perf_counter() - self.last_line >= self.every_s:
            self.last_line = time.perf_counter()
            log.info("train %d/%d: %s", step, self.total, text)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def fit(
    spec: RunSpec,
    source: Any,
    evaluator: Optional[EvaluationHook] = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: Optional[torch.device] = None,
    on_log: Optional[Callable[[str, int, dict], None]] = None,
) -> FitResult:
    """Train ``spec`` on batches from ``source`` until ``trainer.max_steps``; see the module docstring."""
    tcfg: TrainerConfig = spec.trainer
    out_dir = Path(tcfg.output_dir or ".")
    ckpt_dir = out_dir / "checkpoints"
    main = rank == 0
    device = device or resolve_device(tcfg.device)
    amp_dtype = resolve_precision(tcfg.precision, device)
    if tcfg.torch_threads > 0:
        torch.set_num_threads(tcfg.torch_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tcfg.tf32
        torch.backends.cudnn.allow_tf32 = tcfg.tf32
        torch.backends.cudnn.benchmark = True
    n_classes, length = len(spec.space_groups), spec.input_length
    seed_everything(tcfg.seed)  # identical initial weights on every rank
    model = build_model(spec.model, n_classes, length)

    step, samples_seen, resume_state, wandb_id = 0, 0, None, None
    if tcfg.resume:
        resume_state = load_training_state(tcfg.resume)
        meta = resume_state.meta
        if [int(s) for s in meta.space_groups] != spec.space_groups:
            raise ValueError(f"checkpoint {resume_state.path} was trained on other classes than this run")
        model.load_state_dict(resume_state.weights)
        step, samples_seen = int(meta.step), int(meta.samples_seen)
        wandb_id = resume_state.extra.get("wandb_id")
    model.to(device)
    optimizer = make_optimizer(model.parameters(), spec.optimizer)
    scheduler = make_scheduler(optimizer, spec.optimizer, tcfg.batches_per_epoch)
    if resume_state is not None:
        if resume_state.optimizer:
            optimizer.load_state_dict(resume_state.optimizer)
        if resume_state.scheduler:
            scheduler.load_state_dict(resume_state.scheduler)
        restored = load_source_state(source, (resume_state.extra.get("sources") or {}).get(str(rank)))
        if resume_state.rng and world_size == 1:
            set_rng_state(resume_state.rng)
        else:
            seed_everything(tcfg.seed + 1_000_003 * step + rank)
        if main:
            log.info("resumed from %s at step %d (batch source %s)", resume_state.path, step,
                     "restored" if restored else "reseeded")
    else:
        seed_everything(tcfg.seed + rank)

    train_model: nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg.compile and device.type == "cuda":
        train_model = torch.compile(train_model)

    logger = None
    if main:
        logger = MetricsLog(out_dir, spec.logger, spec.config, resume_id=wandb_id)
        n_params = count_parameters(model)
        log.info("model %s: %s parameters, %d classes, %d input points, device %s, autocast %s",
                 spec.model.name, f"{n_params:,}", n_classes, length, device, amp_dtype)

    def emit(kind: str, at: int, metrics: dict) -> None:
        if logger is not None:
            logger.log(kind, at, metrics)
        if on_log is not None:
            on_log(kind, at, metrics)

    last_eval: dict = {}
    last_eval_step: Optional[int] = None
    submitted: set[int] = set()

    def drain(results) -> None:
        nonlocal last_eval, last_eval_step
        for at, metrics, details in sorted(collect(results), key=lambda r: r[0]):
            emit("eval", at, metrics)
            if last_eval_step is None or at >= last_eval_step:
                last_eval, last_eval_step = metrics, at
                if main and details:
                    out_dir.mkdir(parents=True, exist_ok=True)
                    (out_dir / "eval_details.json").write_text(
                        json.dumps({"step": at, **details}, indent=1, default=_json_safe))

    def weights_cpu() -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}

    def checkpoint(final: bool = False) -> Path:
        meta = CheckpointMeta(
            space_groups=spec.space_groups, model=to_dict(spec.model), input_length=length,
            simulation=spec.simulation, representation=spec.representation, volume_norm=spec.volume_norm,
            step=step, samples_seen=samples_seen,
            config=spec.config, metrics={k: v for k, v in last_eval.items() if isinstance(v, (int, float))},
            final=final,
        )
        extra = {"sources": {str(rank): source_state(source)} if source_state(source) is not None else {},
                 "wandb_id": logger.wandb_id if logger is not None else None}
        path = save_checkpoint(ckpt_dir / f"step_{step:07d}", model, meta, optimizer, scheduler, extra)
        mark_latest(path)
        prune_checkpoints(ckpt_dir, tcfg.keep_checkpoints, protect=(path,))
        return path

    # Running sums on the device: no host sync per step.
    sums = {"loss": torch.zeros((), device=device), "ce": torch.zeros((), device=device),
            "volume_mae": torch.zeros((), device=device), "correct": torch.zeros((), device=device),
            "crystal_system_ce": torch.zeros((), device=device),
            "crystal_system_correct": torch.zeros((), device=device)}
    class_systems = crystal_system_of_classes(spec.space_groups, device)
    has_cs_head = False  # set once the model returns crystal-system logits
    window = {"samples": 0, "steps": 0, "wait": 0.0, "t0": time.perf_counter()}
    bad_in_a_row, skipped_total = 0, 0
    progress = _Progress(tcfg.progress and main, tcfg.max_steps, step)
    final_path: Optional[Path] = None
    last_train: dict = {}
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    train_model.train()
    try:
        while step < tcfg.max_steps:
            t_wait = time.perf_counter()
            problem: Optional[str] = None
            batch = None
            try:
                batch = source.get(timeout=tcfg.batch_timeout_s)
            except TimeoutError as err:
                raise TimeoutError(
                    f"step {step}: no training batch within trainer.batch_timeout_s={tcfg.batch_timeout_s:g} s "
                    f"({err}). Are the generation actors alive and is the queue being filled?") from err
            except Exception as err:  # a producer error must not kill a long run
                problem = f"batch source raised {type(err).__name__}: {err}"
            window["wait"] += time.perf_counter() - t_wait
            if problem is None:
                problem = check_batch(batch, n_classes, length, getattr(model.backbone, "input_channels", None))
            if world_size > 1:
                flag = torch.tensor([0.0 if problem else 1.0], device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
                if flag.item() < 1.0 and problem is None:
                    problem = "skipped on another worker"
            if problem is None:
                x, y, v = to_tensors(batch, device)
                with autocast:
                    out = auxiliary_outputs(model, train_model(x))
                loss, parts = compute_loss(out, y, v, spec.volume_norm, tcfg.volume_loss_weight, tcfg.label_smoothing,
                                           class_systems)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # Gradients are identical on every rank after DDP's all-reduce, so this decision is too.
                max_norm = spec.optimizer.grad_clip if spec.optimizer.grad_clip else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                if torch.isfinite(grad_norm):
                    optimizer.step()
                    scheduler.step()
                else:
                    problem = "non-finite loss or gradients"
                    optimizer.zero_grad(set_to_none=True)
            if problem is not None:
                bad_in_a_row += 1
                skipped_total += 1
                if main:
                    log.warning("step %d: skipped a batch (%s)", step, problem)
                if bad_in_a_row > tcfg.max_bad_batches:
                    raise RuntimeError(f"{bad_in_a_row} bad batches in a row (last: {problem}); "
                                       f"giving up (trainer.max_bad_batches={tcfg.max_bad_batches})")
                continue
            bad_in_a_row = 0
            step += 1
            n = len(batch) * world_size
            samples_seen += n
            window["samples"] += n
            window["steps"] += 1
            sums["loss"] += loss.detach().float()
            sums["ce"] += parts["ce"].float()
            sums["correct"] += parts["correct"].float()
            if "volume_mae" in parts:
                sums["volume_mae"] += parts["volume_mae"].float()
            if "crystal_system_ce" in parts:
                has_cs_head = True
                sums["crystal_system_ce"] += parts["crystal_system_ce"].float()
                sums["crystal_system_correct"] += parts["crystal_system_correct"].float()

            if main and (step % tcfg.log_every == 0 or step == tcfg.max_steps):
                elapsed = max(time.perf_counter() - window["t0"], 1e-9)
                k = window["steps"]
                per_rank = window["samples"] / world_size
                last_train = {
                    "loss": sums["loss"].item() / k,
                    "ce": sums["ce"].item() / k,
                    "accuracy": sums["correct"].item() / max(per_rank, 1),
                    "lr": optimizer.param_groups[0]["lr"],
                    "samples_per_s": window["samples"] / elapsed,
                    "wait_fraction": window["wait"] / elapsed,
                    "samples_seen": samples_seen,
                    "epoch": step / tcfg.batches_per_epoch,
                    "skipped_batches": skipped_total,
                }
                if spec.model.volume_head and spec.volume_norm is not None:
                    last_train["volume_mae"] = sums["volume_mae"].item() / k
                if has_cs_head:
                    last_train["crystal_system_ce"] = sums["crystal_system_ce"].item() / k
                    last_train["crystal_system_accuracy"] = sums["crystal_system_correct"].item() / max(per_rank, 1)
                try:
                    last_train.update({f"source/{a}": b for a, b in (source.metrics() or {}).items()})
                except Exception as err:  # metrics are best effort
                    log.debug("source metrics failed: %s", err)
                emit("train", step, last_train)
                progress.update(step, f"loss {last_train['loss']:.3f} acc {last_train['accuracy']:.3f} "
                                      f"{last_train['samples_per_s']:.0f}/s")
                for s in sums.values():
                    s.zero_()
                window.update(samples=0, steps=0, wait=0.0, t0=time.perf_counter())
                if evaluator is not None:
                    drain(evaluator.poll())
            elif main:
                progress.update(step)
            if main and evaluator is not None and tcfg.eval_every > 0 and step % tcfg.eval_every == 0:
                evaluator.submit(weights_cpu(), step)
                submitted.add(step)
            if main and tcfg.checkpoint_every > 0 and step % tcfg.checkpoint_every == 0 and step < tcfg.max_steps:
                checkpoint()
        progress.stop()
        if main and evaluator is not None:
            if tcfg.final_eval and step not in submitted:
                evaluator.submit(weights_cpu(), step)
            drain(evaluator.wait(tcfg.eval_timeout_s))
        if main:
            final_path = checkpoint(final=True)
            if logger is not None:
                logger.summary({"step": step, "samples_seen": samples_seen, "final_checkpoint": str(final_path),
                                **{f"train/{k}": v for k, v in last_train.items()},
                                **{f"eval/{k}": v for k, v in last_eval.items()}})
                plot_curves(logger.jsonl, out_dir / "curves.png")
    finally:
        progress.stop()
        if logger is not None:
            logger.close()
    return FitResult(step=step, samples_seen=samples_seen, final_checkpoint=final_path, train_metrics=last_train,
                     eval_metrics=last_eval, eval_step=last_eval_step, output_dir=out_dir,
                     skipped_batches=skipped_total)
