"""The training loop: pull a batch, one Adam step, log, checkpoint, evaluate; resumable.

Runs in one process (``fit``) or in every worker of a Ray Train ``TorchTrainer``
(``trainer.distributed``), where the model is wrapped in DDP and each worker pulls its own
batches. Rank 0 logs, checkpoints and talks to the evaluators.

The pieces of a step are their own modules: :mod:`trainer.batches` (check a batch, move it onto the
device), :mod:`trainer.loss`, :mod:`trainer.device` (device and autocast precision),
:mod:`trainer.rng` (seeding), :mod:`trainer.source_state` (the batch source's resumable state) and
:mod:`trainer.progress`; their public names are importable from here too.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

# The step's pieces live in their own modules; importers of this one keep finding them here.
from trainer.batches import cell_shape_targets, check_batch, to_tensors
from trainer.clean_view import clean_inputs, clean_view_loss, load_teacher, split_outputs
from trainer.checkpoint import (
    CheckpointMeta,
    load_initial_weights,
    load_training_state,
    mark_latest,
    prune_checkpoints,
    require_classes,
    save_checkpoint,
    unwrap,
)
from trainer.config import LoggerConfig, ModelConfig, OptimizerConfig, TrainerConfig, to_dict, typed
from trainer.device import resolve_device, resolve_precision
from trainer.ema import AVERAGED_STEPS, WeightAverage, training_weights
from trainer.hooks import EvaluationHook, collect
from trainer.loss import compute_loss, crystal_system_of_classes
from trainer.metrics_log import MetricsLog, plot_curves
from trainer.models import build_model, count_parameters
from trainer.models.heads import auxiliary_outputs
from trainer.optim import make_optimizer, make_scheduler, schedule_jump
from trainer.progress import Progress
from trainer.rng import seed_everything, set_rng_state
from trainer.source_state import load_source_state, source_state
from trainer.time_budget import TimeBudget, apply_plan

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


def _json_safe(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


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
        require_classes(meta, spec.space_groups, f"checkpoint {resume_state.path}")
        # With a weight average the checkpoint's weights are the average; the optimizer's own are in its extra state.
        model.load_state_dict(training_weights(resume_state.extra) or resume_state.weights)
        step, samples_seen = int(meta.step), int(meta.samples_seen)
        wandb_id = resume_state.extra.get("wandb_id")
    elif tcfg.init_weights:
        start = load_initial_weights(model, tcfg.init_weights, spec.space_groups, length, spec.model,
                                     grow=tcfg.init_weights_grow)
        if main:
            log.info("started from the weights of %s (step %d, %d patterns)", tcfg.init_weights,
                     int(start.step), int(start.samples_seen))
    model.to(device)
    average = WeightAverage(model, tcfg.ema_decay) if tcfg.ema_decay and main else None
    if average is not None and resume_state is not None and training_weights(resume_state.extra) is not None:
        average.restore(resume_state.weights, resume_state.extra.get(AVERAGED_STEPS, 1))
    teacher = (load_teacher(tcfg.clean_view, spec.model, spec.space_groups, length, device)
               if tcfg.clean_view.enabled and tcfg.clean_view.teacher else None)
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
            jump = schedule_jump(step, (resume_state.meta.config or {}).get("optimizer") or {}, spec.optimizer,
                                 tcfg.batches_per_epoch)
            if jump is not None:
                log.warning("the learning-rate schedule differs from the checkpoint's (another trainer.max_steps "
                            "or optimizer setting): at step %d its multiplier goes from %.3f to %.3f", step, *jump)
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

    def handed_on() -> nn.Module:
        """The weights checkpoints and evaluators get: the average when there is one."""
        return average.module if average is not None else unwrap(model)

    def weights_cpu() -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in handed_on().state_dict().items()}

    def checkpoint(final: bool = False) -> Path:
        meta = CheckpointMeta(
            space_groups=spec.space_groups, model=to_dict(spec.model), input_length=length,
            simulation=spec.simulation, representation=spec.representation, volume_norm=spec.volume_norm,
            step=step, samples_seen=samples_seen,
            config=spec.config, metrics={k: v for k, v in last_eval.items() if isinstance(v, (int, float))},
            final=final,
        )
        extra = {"sources": {str(rank): source_state(source)} if source_state(source) is not None else {},
                 "wandb_id": logger.wandb_id if logger is not None else None,
                 **(average.state(unwrap(model)) if average is not None else {})}
        path = save_checkpoint(ckpt_dir / f"step_{step:07d}", handed_on(), meta, optimizer, scheduler, extra)
        mark_latest(path)
        prune_checkpoints(ckpt_dir, tcfg.keep_checkpoints, protect=(path,))
        return path

    # Running sums on the device: no host sync per step.
    sums = {"loss": torch.zeros((), device=device), "ce": torch.zeros((), device=device),
            "volume_mae": torch.zeros((), device=device), "correct": torch.zeros((), device=device),
            "crystal_system_ce": torch.zeros((), device=device),
            "crystal_system_correct": torch.zeros((), device=device),
            "clean_ce": torch.zeros((), device=device), "distill": torch.zeros((), device=device),
            "cell_mae": torch.zeros((), device=device)}
    class_systems = crystal_system_of_classes(spec.space_groups, device)
    has_cs_head = False  # set once the model returns crystal-system logits
    window = {"samples": 0, "steps": 0, "wait": 0.0, "t0": time.perf_counter()}
    bad_in_a_row, skipped_total = 0, 0
    progress = Progress(tcfg.progress and main, tcfg.max_steps, step)
    final_path: Optional[Path] = None
    last_train: dict = {}
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    budget = TimeBudget(tcfg.time_budget_s, step, tcfg.max_steps) if tcfg.time_budget_s else None
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
                if tcfg.clean_view.enabled and teacher is None:  # the measured and clean view in one pass
                    x = torch.cat([x, clean_inputs(batch, tcfg.clean_view, device)])
                with autocast:
                    out = auxiliary_outputs(model, train_model(x))
                if teacher is not None:
                    with torch.no_grad(), autocast:
                        clean_logits = teacher(clean_inputs(batch, tcfg.clean_view, device))["logits"]
                elif tcfg.clean_view.enabled:
                    out, clean_logits = split_outputs(out, len(y))
                cells = cell_shape_targets(batch, device) if spec.model.cell_head else None
                loss, parts = compute_loss(out, y, v, spec.volume_norm, tcfg.volume_loss_weight, tcfg.label_smoothing,
                                           class_systems, cell_shape=cells, cell_weight=tcfg.cell_loss_weight)
                if tcfg.clean_view.enabled:
                    extra, clean_parts = clean_view_loss(out["logits"], clean_logits, y, tcfg.clean_view,
                                                         tcfg.label_smoothing, learn_clean=teacher is None)
                    loss = loss + extra
                    parts.update(clean_parts)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # Gradients are identical on every rank after DDP's all-reduce, so this decision is too.
                max_norm = spec.optimizer.grad_clip if spec.optimizer.grad_clip else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                if torch.isfinite(grad_norm):
                    optimizer.step()
                    scheduler.step()
                    if average is not None:
                        average.update(model)
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
            for key in ("clean_ce", "distill", "cell_mae"):
                if key in parts:
                    sums[key] += parts[key].float()

            planned = budget.plan(step) if budget is not None else None
            if planned is not None and planned != tcfg.max_steps:
                apply_plan(planned, tcfg, spec.optimizer, scheduler, optimizer, spec.config)
                progress.total = planned
                if main and planned == step:
                    log.info("trainer.time_budget_s=%g s spent at step %d", tcfg.time_budget_s, step)
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
                if spec.model.cell_head:
                    last_train["cell_mae"] = sums["cell_mae"].item() / k
                if tcfg.clean_view.enabled:
                    last_train.update(clean_ce=sums["clean_ce"].item() / k, distill=sums["distill"].item() / k)
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
