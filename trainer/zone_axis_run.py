"""Train on zone-axis images and score the held-out structure types at the end (Tiong et al.).

    python -m trainer.zone_axis_run +experiment=tiong_msdn                     # shaped images, MSDN
    python -m trainer.zone_axis_run +experiment=tiong_msdn model=msdn_single representation.shaping=false

Same config tree as ``python -m trainer`` (``conf/train.yaml``) plus the ``representation`` group
(``conf/representation/zone_axis.yaml``). The batches come from ``cluster.sources.make_source`` with
the zone-axis representation (generation actors or in-process), the loop is ``trainer.loop.fit``
(checkpoints, metrics.jsonl, curves as usual). The evaluator's test sets hold powder patterns, so
instead of the evaluator actors the final weights are scored here on zone-axis images of the same
held-out crystals (the same seeded subset of ``split.test_ids``) with the project's metrics
(:func:`evaluation.metrics.summarize`): "test_database", "test_spglib" and a fixed "synthetic" set.
Results go to ``<run>/zone_axis_eval.json`` and the usual report table.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from generator.config import conf_dir

log = logging.getLogger(__name__)


def held_out_images(prepared, statistics, simulator, max_crystals: int | None, seed: int) -> dict[str, dict]:
    """{"test_database", "test_spglib"}: images (n, 3, H, W), labels (n,), space_groups (n,) of the held-out
    crystals whose label is a classified space group (the evaluator's seeded subset of ``split.test_ids``)."""
    from generator.seeding import EVALUATION, seed_for

    ids = sorted(map(str, prepared.split.test_ids))
    if max_crystals is not None and max_crystals < len(ids):
        rng = np.random.default_rng(seed_for(seed, EVALUATION, 0, 99))  # as evaluation.testsets' held-out subset
        ids = sorted(rng.choice(ids, size=int(max_crystals), replace=False).tolist())
    records = [prepared.database[i] for i in ids]
    images = np.zeros((len(records),) + simulator.shape, np.float32)
    ok = np.ones(len(records), bool)
    for i, r in enumerate(records):
        try:
            images[i] = simulator(r.to_crystal())
        except Exception as exc:  # a pathological structure must not stop the evaluation
            ok[i] = False
            log.warning("zone-axis images failed for %s: %s", ids[i], exc)
    class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
    out = {}
    for name, sgs in (("test_database", [r.database_space_group for r in records]),
                      ("test_spglib", [r.space_group for r in records])):
        sgs = np.asarray(sgs, np.int64)
        keep = ok & np.array([int(s) in class_index for s in sgs], bool)
        out[name] = {"images": images[keep], "labels": np.array([class_index[int(s)] for s in sgs[keep]], np.int64),
                     "n_unclassified": int((ok & ~keep).sum())}
    return out


def synthetic_images(statistics, generator_cfg, simulator, size: int, seed: int) -> dict:
    """A fixed set of ``size`` fresh synthetic crystals' images (seeded like the evaluator's synthetic set)."""
    from generator.seeding import EVALUATION, seed_for
    from generator import CrystalSampler, GeneratorConfig
    from generator.config import as_config

    sampler = CrystalSampler.from_config(statistics, as_config(GeneratorConfig, generator_cfg),
                                         seed=seed_for(seed, EVALUATION, 2, 0))
    crystals = sampler.sample_many(int(size))
    class_index = {int(sg): i for i, sg in enumerate(statistics.space_groups)}
    return {"images": simulator.images(crystals),
            "labels": np.array([class_index[int(c.space_group)] for c in crystals], np.int64)}


def score_sets(model, sets: dict[str, dict], space_groups, batch_size: int = 64, topk=(1, 5)) -> dict:
    """{"<set>/<metric>": value} of ``model`` on image sets (evaluation.metrics.summarize scalars)."""
    import torch

    from evaluation.metrics import summarize

    model.eval()
    metrics: dict[str, Any] = {}
    with torch.no_grad():
        for name, s in sets.items():
            logits = [model(torch.from_numpy(np.ascontiguousarray(s["images"][i:i + batch_size])))["logits"].float().numpy()
                      for i in range(0, len(s["labels"]), batch_size)]
            scores = np.concatenate(logits) if logits else np.zeros((0, len(space_groups)), np.float32)
            summary = summarize(scores, s["labels"], space_groups, topk)
            metrics.update({f"{name}/{k}": float(v) for k, v in summary.items() if np.isscalar(v)})
            if "n_unclassified" in s:
                metrics[f"{name}/n_unclassified"] = float(s["n_unclassified"])
    return metrics


def run_zone_axis(cfg: DictConfig):
    """Data, zone-axis stream, training loop, held-out scoring; returns the ``FitResult`` with those scores."""
    import torch

    from cluster.sources import make_source
    from generator.pipeline import prepare_data
    from simulator.zone_axis import ZoneAxisConfig, ZoneAxisSimulator
    from trainer.checkpoint import load_weights
    from trainer.config import to_dict
    from trainer.loop import RunSpec, fit, resolve_device
    from trainer.models import build_model
    from trainer.run import print_report, setup_run, volume_normalisation

    if "representation" not in cfg:
        raise ValueError("no representation config: add +representation=zone_axis or use +experiment=tiong_msdn")
    setup = setup_run(cfg)
    out_dir, tcfg = setup.out_dir, setup.trainer
    cluster_cfg, eval_cfg, generator_cfg = setup.cluster, setup.evaluation, setup.generator
    try:
        za_cfg = ZoneAxisConfig.from_any(cfg.representation)
    except Exception as err:
        raise ValueError(f"conf/representation: invalid zone-axis config: {err}") from err
    if cluster_cfg.source not in ("ray", "local"):
        raise ValueError(f"cluster.source={cluster_cfg.source!r}: zone-axis images come from 'ray' or 'local'")
    device = resolve_device(tcfg.device)
    if device.type == "cpu" and tcfg.torch_threads == 0:
        torch.set_num_threads(max(1, int(round(cluster_cfg.trainer_cpus))))

    prepared = prepare_data(cfg)
    statistics = prepared.statistics
    simulator = ZoneAxisSimulator(za_cfg)
    spec = RunSpec(model=cfg.model, optimizer=cfg.optimizer, trainer=tcfg, logger=cfg.logger,
                   space_groups=[int(s) for s in statistics.space_groups], input_length=int(np.prod(simulator.shape)),
                   simulation=dataclasses.asdict(za_cfg), volume_norm=volume_normalisation(statistics),
                   config=OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    source = make_source(to_dict(cluster_cfg), statistics, generator_cfg=to_dict(generator_cfg), simulation_cfg=za_cfg)
    try:
        result = fit(spec, source, None, device=device)
    finally:
        source.close()

    metrics: dict[str, Any] = {}
    if eval_cfg.enabled:
        model = build_model(spec.model, len(spec.space_groups), spec.input_length)
        model.load_state_dict(load_weights(result.final_checkpoint))
        sets = held_out_images(prepared, statistics, simulator, eval_cfg.max_test_crystals, eval_cfg.seed)
        if "synthetic" in eval_cfg.test_sets:
            sets["synthetic"] = synthetic_images(statistics, generator_cfg, simulator, eval_cfg.synthetic_size,
                                                 eval_cfg.seed)
        metrics = score_sets(model, sets, spec.space_groups, eval_cfg.batch_size, eval_cfg.topk)
        (out_dir / "zone_axis_eval.json").write_text(json.dumps({"step": result.step, **metrics}, indent=1))
        result = dataclasses.replace(result, eval_metrics=metrics, eval_step=result.step)
    print_report(result)
    return result


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    logging.getLogger("trainer").setLevel(logging.INFO)
    run_zone_axis(cfg)


if __name__ == "__main__":
    main()
