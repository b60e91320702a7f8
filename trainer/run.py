"""One training run from a composed config: data, batch source, evaluators, model, loop, report.

``python -m trainer`` (see ``trainer/__main__.py``) calls :func:`run` with the Hydra config of
``conf/train.yaml``.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from trainer.checkpoint import CHECKPOINTS, load_meta, remove_partial_checkpoints, run_folder
from trainer.config import TrainerConfig, to_dict, typed
from trainer.hooks import ModelFactory
from trainer.loop import FitResult, RunSpec, fit, resolve_device
from trainer.metrics_log import truncate_metrics

log = logging.getLogger(__name__)


def volume_normalisation(statistics) -> Optional[dict]:
    """Mean and standard deviation of ln(conventional cell volume) of the statistics-side crystals."""
    volumes = np.asarray((getattr(statistics, "descriptors", None) or {}).get("volume", []), np.float64)
    volumes = volumes[np.isfinite(volumes) & (volumes > 0)]
    if len(volumes) < 2:
        return None
    logv = np.log(volumes)
    return {"mean": float(logv.mean()), "std": float(max(logv.std(), 1e-6))}


def derived_seed(seed: int, rank: int, start_step: int) -> int:
    """The batch-source seed of a worker: ``seed`` itself for rank 0 of a fresh run, otherwise an
    independent child (so a resumed run or another worker never replays the same stream)."""
    if rank == 0 and start_step == 0:
        return int(seed)
    ss = np.random.SeedSequence([int(seed), int(rank), int(start_step)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


@dataclass
class SourceBuilder:
    """Picklable recipe of a worker's batch source (``cluster.sources.make_source``)."""

    cluster: dict
    statistics: Any
    generator: dict
    simulation: Any
    prepared: Any = None
    cache_dir: Optional[str] = None
    reserved_cpus: float = 0.0
    start_step: int = 0

    def __call__(self, rank: int = 0):
        from cluster.sources import make_source

        cfg = dict(self.cluster)
        seed = derived_seed(cfg.get("seed", 0), rank, self.start_step)
        if cfg.get("source") == "real":
            # one fixed training set, simulated (and cached) from the root seed on every worker and
            # after a resume; only the order its patterns are drawn in depends on rank and start step
            return make_source(cfg, self.statistics, simulation_cfg=self.simulation, prepared=self.prepared,
                               cache_dir=self.cache_dir, shuffle_seed=seed)
        cfg["seed"] = seed
        return make_source(cfg, self.statistics, generator_cfg=self.generator, simulation_cfg=self.simulation,
                           prepared=self.prepared, reserved_cpus=self.reserved_cpus, cache_dir=self.cache_dir)


@dataclass
class SharedSource:
    """Every worker pulls from the same queue (a picklable consumer view of a Ray stream)."""

    consumer: Any

    def __call__(self, rank: int = 0):
        return self.consumer


def _extra_trainer_cpus(tcfg: TrainerConfig, cluster_cfg) -> float:
    """CPUs the data-parallel workers take beyond ``cluster.trainer_cpus`` (left to them when the
    number of generation actors is derived)."""
    if tcfg.num_workers <= 1:
        return 0.0
    return max(0.0, tcfg.num_workers * tcfg.worker_cpus - cluster_cfg.trainer_cpus)


def _output_dir(cfg: DictConfig) -> Path:
    """Where the run writes: ``trainer.output_dir`` when set; else, when resuming, the run folder of
    the checkpoint (``<run>/checkpoints/step_N`` -> ``<run>``); else the Hydra run directory."""
    if cfg.trainer.get("output_dir"):
        return Path(cfg.trainer.output_dir)
    if cfg.trainer.get("resume"):
        folder = run_folder(cfg.trainer.resume)
        if folder is not None:
            return folder
        log.info("checkpoint %s is not in a run's checkpoints/ folder: writing to a new run folder",
                 cfg.trainer.resume)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:
        return Path("outputs") / "train" / time.strftime("%Y-%m-%d_%H-%M-%S")


def prepare_output_dir(out_dir: Path, resume: Optional[str] = None) -> int:
    """Make a run folder ready to be written into; returns the step training starts from.

    Removes partial checkpoints left by a kill. When resuming, drops the metric rows of the steps
    after the checkpoint's (they are trained again), so that each step is logged once.
    """
    remove_partial_checkpoints(out_dir / CHECKPOINTS)
    if not resume:
        return 0
    step = int(load_meta(resume).step)
    truncate_metrics(out_dir, step)
    return step


def print_report(result: FitResult, console=None) -> None:
    """Held-out accuracies of the last evaluation, then the final checkpoint's path (last line)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    ev = result.eval_metrics or {}
    sets = sorted({k.split("/")[0] for k in ev if "/" in k and k.split("/")[0] != "gap"})
    if sets:
        table = Table(title=f"Evaluation at step {result.eval_step}",
                      caption="n: crystals scored; crystal system: predicted space group in the true crystal "
                              "system; gap: synthetic top-1 minus this set's top-1")
        table.add_column("test set")
        for col in ("n", "top-1", "top-5", "crystal system", "gap"):
            table.add_column(col, justify="right")
        for s in sets:
            def fmt(key, pct=True):
                v = ev.get(key)
                if not isinstance(v, (int, float)):
                    return "-"
                return f"{100 * v:.1f} %" if pct else f"{v:.0f}"

            table.add_row(s, fmt(f"{s}/n", pct=False), fmt(f"{s}/top1"), fmt(f"{s}/top5"),
                          fmt(f"{s}/crystal_system_accuracy"), fmt(f"gap/{s}"))
        console.print(table)
        left_out = {s: int(ev[f"{s}/n_unclassified"]) for s in sets if ev.get(f"{s}/n_unclassified")}
        if left_out:
            console.print("not scored (space group not among the trained classes): "
                          + ", ".join(f"{s} {n}" for s, n in left_out.items()))
    elif result.eval_step is None:
        console.print("no evaluation results (evaluation disabled or none finished in time)")
    tm = result.train_metrics or {}
    if tm:
        console.print(f"step {result.step}, {result.samples_seen} patterns: train loss {tm.get('loss', float('nan')):.3f}, "
                      f"batch accuracy {100 * tm.get('accuracy', 0.0):.1f} %, {tm.get('samples_per_s', 0.0):.0f}/s")
    console.print(f"metrics, curves and evaluation details in {result.output_dir}")
    print(f"Final checkpoint: {result.final_checkpoint}", flush=True)


def validate_config(cfg: DictConfig) -> None:
    """Reject impossible values of the trainer, optimizer, cluster, simulation and evaluation groups with a
    ``ValueError`` naming the key, before any data is built or Ray is started."""
    from cluster.config import ClusterConfig, to_dataclass
    from evaluation.config import EvaluationConfig
    from trainer.config import ModelConfig, OptimizerConfig
    from trainer.models.log_axis import fit_log_axis

    from cluster.producer import check_payload
    from simulator.representation import make_representation

    trainer_cfg = typed(TrainerConfig, cfg.trainer).validate()
    typed(OptimizerConfig, cfg.optimizer).validate()
    cluster_cfg = to_dataclass(ClusterConfig, cfg.cluster).validate()
    if trainer_cfg.clean_view.enabled and cluster_cfg.payload != "peaks":
        raise ValueError(f"trainer.clean_view.enabled renders each pattern's clean view from its peak list; it needs "
                         f"cluster.payload=peaks, got {cluster_cfg.payload!r}")
    teacher = trainer_cfg.clean_view.teacher
    if teacher:  # a missing or broken checkpoint stops the run before any stream starts
        from trainer.checkpoint import load_meta
        try:
            load_meta(teacher)
        except (OSError, ValueError) as err:
            raise ValueError(f"trainer.clean_view.teacher must name a readable checkpoint ({err})") from err
    if cfg.get("simulation") is not None:  # the representation (kind) and its config, and a payload that can carry it
        representation = make_representation(cfg.simulation)
        check_payload(cluster_cfg.payload, representation)
        if cfg.get("model") is not None:
            fit_log_axis(to_dict(typed(ModelConfig, cfg.model)), representation)
    if cfg.get("evaluation") is not None:
        eval_cfg = to_dataclass(EvaluationConfig, cfg.evaluation).validate()
        _check_statistics_only(cfg, eval_cfg, cluster_cfg)


def _check_statistics_only(cfg: DictConfig, eval_cfg, cluster_cfg) -> None:
    """A run from a saved statistics folder has no real crystals: refuse what would need them."""
    if not (cfg.get("statistics") or {}).get("path"):
        return
    real_sets = [t for t in eval_cfg.test_sets if t != "synthetic"] if eval_cfg.enabled else []
    if real_sets:
        raise ValueError(f"statistics.path reads no database, so the test sets {real_sets} have no crystals: "
                         "use evaluation.test_sets=[synthetic] or evaluation=none")
    if cluster_cfg.source == "real":
        raise ValueError("statistics.path reads no database: cluster.source=real has no crystals to simulate")


def began_from(cfg: DictConfig) -> Optional[str]:
    """``trainer.init_weights`` of the run, and for a resumed run the one its checkpoint records: the weights
    stay from the checkpoint, the record of where the run began stays in its config (model cards follow
    it back through earlier cycles). The command line cannot give both (:func:`validate_config`)."""
    if cfg.trainer.get("init_weights") or not cfg.trainer.get("resume"):
        return cfg.trainer.get("init_weights")
    from trainer.checkpoint import load_meta

    earlier = (load_meta(cfg.trainer.resume).config or {}).get("trainer") or {}
    return earlier.get("init_weights")


@dataclass
class RunSetup:
    """A run's folder and its typed config groups, after validation (see :func:`setup_run`)."""

    out_dir: Path
    start_step: int  # the resumed checkpoint's step (0 for a fresh run)
    trainer: TrainerConfig
    cluster: Any
    evaluation: Any
    generator: Any


def setup_run(cfg: DictConfig) -> RunSetup:
    """Validate ``cfg``, create (or, on resume, clean) the run folder, record it in ``cfg.trainer.output_dir``,
    resolve the interpolations and type the groups every kind of run needs."""
    from cluster.config import ClusterConfig, to_dataclass
    from evaluation.config import EvaluationConfig
    from generator import GeneratorConfig

    validate_config(cfg)
    out_dir = _output_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    start_step = prepare_output_dir(out_dir, cfg.trainer.get("resume"))
    OmegaConf.set_struct(cfg, False)
    cfg.trainer.output_dir = str(out_dir)
    cfg.trainer.init_weights = began_from(cfg)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.resolve(cfg)
    return RunSetup(out_dir, start_step, typed(TrainerConfig, cfg.trainer), to_dataclass(ClusterConfig, cfg.cluster),
                    to_dataclass(EvaluationConfig, cfg.evaluation), to_dataclass(GeneratorConfig, cfg.generator))


def run(cfg: DictConfig) -> FitResult:
    """Prepare data, start the stream and evaluators, train, report. See ``conf/train.yaml``."""
    from cluster.connect import init_ray
    from cluster.evaluators import make_evaluator, reserved_cpus
    from evaluation.testsets import build_test_sets, pattern_cache_dir
    from cluster.producer import check_payload
    from generator.pipeline import prepare_data
    from simulator.representation import make_representation
    from trainer.models.log_axis import fit_log_axis

    setup = setup_run(cfg)
    out_dir, start_step, tcfg = setup.out_dir, setup.start_step, setup.trainer
    cluster_cfg, eval_cfg, generator_cfg = setup.cluster, setup.evaluation, setup.generator
    # the model input: the 2-theta pattern, the ideal 1/d profile or G(r), by conf/simulation `kind`
    representation = make_representation(cfg.simulation)
    simulation_cfg = representation.config  # typed; what the stream, the test sets and the checkpoints get
    check_payload(cluster_cfg.payload, representation)

    device = resolve_device(tcfg.device)
    if device.type == "cpu" and tcfg.torch_threads == 0:
        import torch

        torch.set_num_threads(max(1, int(round(cluster_cfg.trainer_cpus))))

    t0 = time.perf_counter()
    prepared = prepare_data(cfg)
    statistics = prepared.statistics
    log.info("data: %d classes, %d statistics / %d test crystals (%.1f s)", len(statistics.space_groups),
             prepared.report.get("n_statistics", -1), prepared.report.get("n_test", -1), time.perf_counter() - t0)

    spec = RunSpec(
        model=fit_log_axis(to_dict(cfg.model), representation), optimizer=cfg.optimizer, trainer=tcfg, logger=cfg.logger,
        space_groups=[int(s) for s in statistics.space_groups], input_length=representation.shape[1],
        simulation=to_dict(simulation_cfg), representation=representation.describe(),
        volume_norm=volume_normalisation(statistics),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    model_factory = ModelFactory(to_dict(spec.model), len(spec.space_groups), spec.input_length)

    test_sets = []
    if eval_cfg.enabled and eval_cfg.test_sets:
        t1 = time.perf_counter()
        test_sets = build_test_sets(eval_cfg, statistics, prepared, simulation_cfg=simulation_cfg,
                                    generator_cfg=generator_cfg)
        log.info("test sets: %s (%.1f s)", ", ".join(
            f"{t.name} ({len(t)}" + (f", {t.n_unclassified} outside the classes left out)" if getattr(
                t, "n_unclassified", 0) else ")") for t in test_sets), time.perf_counter() - t1)

    builder = SourceBuilder(
        cluster=to_dict(cluster_cfg), statistics=statistics, generator=to_dict(generator_cfg),
        simulation=simulation_cfg, prepared=prepared if cluster_cfg.source == "real" else None,
        cache_dir=str(pattern_cache_dir(eval_cfg)) if pattern_cache_dir(eval_cfg) else None,
        reserved_cpus=reserved_cpus(eval_cfg) + _extra_trainer_cpus(tcfg, cluster_cfg), start_step=start_step,
    )
    started_ray = False
    source = evaluator = None
    try:
        needs_ray = (cluster_cfg.source == "ray" or tcfg.num_workers > 1
                     or (eval_cfg.enabled and eval_cfg.backend == "ray" and test_sets))
        if needs_ray:  # Ray is imported only where it is used: the process and local sources run without it
            import ray
        if needs_ray and cluster_cfg.source != "ray" and not ray.is_initialized():
            init_ray(cluster_cfg.address, num_cpus=cluster_cfg.num_cpus if cluster_cfg.address is None
                     else None, include_dashboard=False)
            started_ray = True
        if tcfg.num_workers > 1:
            from trainer.distributed import fit_distributed, check_resources

            evaluator_factory = (functools.partial(make_evaluator, eval_cfg, model_factory, test_sets,
                                                   spec.space_groups) if test_sets else None)
            if cluster_cfg.source == "ray":
                source = builder(0)
                source.start_watchdog()  # the workers only pull: dead generation actors are replaced here
                check_resources(tcfg)
                result = fit_distributed(spec, SharedSource(source.consumer()), evaluator_factory,
                                         close_sources=False)
            else:
                check_resources(tcfg)
                result = fit_distributed(spec, builder, evaluator_factory)
        else:
            source = builder(0)
            evaluator = make_evaluator(eval_cfg, model_factory, test_sets, spec.space_groups) if test_sets else None
            result = fit(spec, source, evaluator, device=device)
    finally:
        if evaluator is not None:
            evaluator.close()
        if source is not None:
            source.close()
        if started_ray:
            import ray

            ray.shutdown()
    print_report(result)
    return result
