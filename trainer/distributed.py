"""Data-parallel training on several workers with Ray Train's ``TorchTrainer`` (DDP).

Every worker runs :func:`trainer.loop.fit` on its own batches: with a Ray stream all workers pull
from the one shared queue (``RayStream.consumer()``), other sources are rebuilt per worker with
a per-rank seed. Gradients are averaged by DDP (NCCL on GPUs, gloo on CPUs); rank 0 logs,
checkpoints and submits weights to the evaluators.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional

from trainer.checkpoint import atomic_write_text
from trainer.loop import FitResult, RunSpec, fit

log = logging.getLogger(__name__)

RESULT_FILE = "workers_result.json"  # rank 0's summary, read back by the driver


def _train_worker(config: dict) -> None:
    import ray.train
    import torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec: RunSpec = config["spec"]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING)
    if spec.trainer.use_gpu and torch.cuda.is_available():
        import ray.train.torch

        device = ray.train.torch.get_device()
    else:
        device = torch.device("cpu")
    if device.type == "cpu" and spec.trainer.torch_threads > 0:
        torch.set_num_threads(spec.trainer.torch_threads)
    source = config["source_for_rank"](rank)
    evaluator = config["evaluator_factory"]() if (rank == 0 and config["evaluator_factory"] is not None) else None
    try:
        result = fit(spec, source, evaluator, rank=rank, world_size=world, device=device)
    finally:
        if evaluator is not None:
            evaluator.close()
        if config.get("close_sources", True):
            source.close()
    metrics = {"step": result.step, "samples_seen": result.samples_seen, "skipped_batches": result.skipped_batches}
    if rank == 0:
        metrics.update(final_checkpoint=str(result.final_checkpoint) if result.final_checkpoint else None,
                       eval_step=result.eval_step, eval_metrics=result.eval_metrics,
                       train_metrics=result.train_metrics)
        path = Path(spec.trainer.output_dir or ".") / RESULT_FILE
        atomic_write_text(path, json.dumps(metrics, default=str))
    ray.train.report({"step": result.step})


def check_resources(tcfg) -> None:
    """Fail with a clear message (instead of waiting forever) when Ray cannot place the workers."""
    import ray

    need = {"CPU": tcfg.num_workers * tcfg.worker_cpus}
    if tcfg.use_gpu:
        need["GPU"] = float(tcfg.num_workers)
    total = ray.cluster_resources()
    free = ray.available_resources()
    for kind, amount in need.items():
        if free.get(kind, 0.0) + 1e-9 < amount:
            raise RuntimeError(
                f"{tcfg.num_workers} training workers need {amount:g} {kind} but Ray has {free.get(kind, 0.0):g} free "
                f"of {total.get(kind, 0.0):g} (generation and evaluator actors take the rest). Lower "
                f"cluster.num_actors / trainer.worker_cpus, or give Ray more (cluster.num_cpus, more nodes).")


def fit_distributed(
    spec: RunSpec,
    source_for_rank: Callable[[int], Any],
    evaluator_factory: Optional[Callable[[], Any]] = None,
    *,
    close_sources: bool = True,
) -> FitResult:
    """Train ``spec`` on ``spec.trainer.num_workers`` Ray Train workers; returns rank 0's result.

    Args:
        source_for_rank: picklable callable giving each worker's batch source from its rank.
        evaluator_factory: picklable callable building the evaluation hook on rank 0 (or None).
        close_sources: close each worker's source when it is done (False for views of a shared
            queue whose owner closes it).
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    tcfg = spec.trainer
    if not ray.is_initialized():
        raise RuntimeError("fit_distributed needs a running Ray (ray.init or a Ray stream)")
    backend = tcfg.ddp_backend
    if backend == "auto":
        backend = "nccl" if tcfg.use_gpu else "gloo"
    out_dir = Path(tcfg.output_dir or ".").resolve()
    tcfg.output_dir = str(out_dir)  # workers may run in another working directory
    storage = out_dir / "ray_train"
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"spec": spec, "source_for_rank": source_for_rank,
                           "evaluator_factory": evaluator_factory, "close_sources": close_sources},
        torch_config=TorchConfig(backend=backend),
        scaling_config=ScalingConfig(num_workers=tcfg.num_workers, use_gpu=tcfg.use_gpu,
                                     resources_per_worker={"CPU": tcfg.worker_cpus}),
        run_config=RunConfig(storage_path=str(storage), name="workers"),
    )
    result_file = out_dir / RESULT_FILE
    result_file.unlink(missing_ok=True)
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if not result_file.exists():
        raise RuntimeError(f"the workers finished without writing {result_file}")
    m = json.loads(result_file.read_text())
    final = m.get("final_checkpoint")
    return FitResult(step=int(m.get("step", 0)), samples_seen=int(m.get("samples_seen", 0)),
                     final_checkpoint=Path(final) if final else None,
                     train_metrics=m.get("train_metrics", {}), eval_metrics=m.get("eval_metrics", {}),
                     eval_step=m.get("eval_step"), output_dir=out_dir,
                     skipped_batches=int(m.get("skipped_batches", 0)))
