"""Hydra composition of the training config and every experiment; every group validates against its schema."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from trainer.config import LoggerConfig, ModelConfig, OptimizerConfig, TrainerConfig, typed

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
CPU_BUDGET = {"tiong_msdn", "measured_convnet", "measured_logq",  # experiments sized for CPUs (documented in each file)
              "ozaki_ideal", "liu_pdf", "vecsei_dense"}


def compose_train(overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def validate(cfg):
    """Every group against its schema; returns the typed trainer-side groups."""
    from cluster.config import ClusterConfig, to_dataclass
    from evaluation.config import EvaluationConfig
    from generator import GeneratorConfig
    from simulator import make_representation

    OmegaConf.resolve(cfg)
    to_dataclass(ClusterConfig, cfg.cluster)
    to_dataclass(EvaluationConfig, cfg.evaluation)
    to_dataclass(GeneratorConfig, cfg.generator)
    make_representation(cfg.simulation)  # any kind: 2-theta, ideal 1/d or G(r)
    return (typed(ModelConfig, cfg.model), typed(OptimizerConfig, cfg.optimizer),
            typed(TrainerConfig, cfg.trainer), typed(LoggerConfig, cfg.logger))


def test_expected_experiments_exist():
    assert set(EXPERIMENTS) >= {"parkcnn_medium", "parkcnn_big", "resnet10", "resnet50", "resnet101",
                                "imperfections", "baseline_random", "baseline_structure_type"}


def test_default_is_a_small_cpu_run():
    cfg = compose_train()
    model, opt, trainer, logger = validate(cfg)
    assert model.name == "convnet_logq" and model.input_axis == "log_q" and model.pool == "global"
    assert opt.name == "adamw" and opt.schedule == "cosine" and opt.total_steps == trainer.max_steps
    # under 6 minutes on two cores: 1500 steps of 64, one pattern per distinct crystal, one torch thread
    assert trainer.max_steps * cfg.cluster.batch_size <= 100_000 and trainer.resume is None
    assert trainer.num_workers == 1 and cfg.cluster.trainer_cpus == 1 and model.axis_points == 2048
    assert cfg.cluster.patterns_per_crystal == 1
    assert logger.name == "none"
    assert cfg.cluster.seed == cfg.trainer.seed == cfg.evaluation.seed == cfg.seed
    assert trainer.eval_every == cfg.evaluation.interval_steps
    assert set(cfg) >= {"database", "split", "statistics", "generator", "simulation", "model", "optimizer",
                        "evaluation", "logger", "cluster", "trainer"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name):
    cfg = compose_train([f"+experiment={name}"])
    model, opt, trainer, _ = validate(cfg)
    if name not in CPU_BUDGET:
        assert trainer.max_steps > 10_000  # the paper's budgets, not the laptop default
    assert cfg.trainer.eval_every == cfg.evaluation.interval_steps


@pytest.mark.parametrize("name,model,lr,batch,steps", [
    ("parkcnn_big", "parkcnn_big", 1e-3, 870, 150 * 1000),
    ("parkcnn_medium", "parkcnn_medium", 1e-3, 870, 150 * 1000),
    ("resnet10", "resnet10", 1e-4, 145, 900 * 2000),
    ("resnet50", "resnet50", 1e-4, 145, 900 * 2000),
    ("resnet101", "resnet101", 1e-4, 145, 900 * 2000),
])
def test_paper_settings(name, model, lr, batch, steps):
    cfg = compose_train([f"+experiment={name}"])
    m, opt, trainer, _ = validate(cfg)
    assert m.name == model and opt.lr == lr and cfg.cluster.batch_size == batch
    assert trainer.max_steps == steps
    if name.startswith("resnet"):
        assert opt.schedule == "step" and opt.step_epochs == 500 and opt.gamma == 0.5
        assert trainer.batches_per_epoch == 900 and cfg.simulation.sqrt
        assert m.norm_groups == 32 and m.kernel_size == 9 and m.group_stride == 4 and m.hidden == [256]
    else:
        assert cfg.cluster.patterns_per_crystal == 2 and not cfg.simulation.sqrt
        assert m.dropout_conv == 0 and m.dropout_dense == 0


def test_imperfections_and_baselines():
    cfg = compose_train(["+experiment=imperfections"])
    validate(cfg)
    assert cfg.model.name == "resnet50" and cfg.simulation.noise.enabled and cfg.simulation.impurity.enabled
    assert cfg.trainer.max_steps == 900 * 1000
    for name in ("ozaki_ideal", "liu_pdf", "vecsei_dense"):       # the laptop budget of the README's table
        assert compose_train([f"+experiment={name}"]).trainer.max_steps == 400
    assert compose_train(["+experiment=measured_logq"]).model.axis_points == 4096   # the bundled model's axis
    for name, split, model in [("baseline_random", "random", "parkcnn_medium"),
                               ("baseline_structure_type", "structure_type", "parkcnn_big")]:
        cfg = compose_train([f"+experiment={name}"])
        m, *_ = validate(cfg)
        assert cfg.split.kind == split and cfg.cluster.source == "real" and m.name == model
        assert m.dropout_conv == 0.3 and m.dropout_dense == 0.5


def test_overrides_and_wandb_logger():
    cfg = compose_train(["logger=wandb", "model=resnet10", "model.volume_head=true", "trainer.max_steps=5",
                         "seed=7"])
    model, _, trainer, logger = validate(cfg)
    assert logger.name == "wandb" and logger.mode == "offline"
    assert model.volume_head and trainer.max_steps == 5 and cfg.cluster.seed == 7


def test_unknown_keys_are_rejected():
    cfg = compose_train()
    OmegaConf.set_struct(cfg, False)
    cfg.model.not_a_knob = 3
    with pytest.raises(Exception):
        typed(ModelConfig, cfg.model)


def test_crystal_filter_lives_in_the_split_only():
    """max_volume / max_asym_atoms are conf/split keys; the sampler takes them from the statistics' provenance."""
    import copy

    from toy_statistics import toy_statistics

    from generator import CrystalSampler, GeneratorConfig

    cfg = compose_train(["split.max_volume=450", "split.max_asym_atoms=5"])
    for key in ("max_volume", "max_asym_atoms", "seed"):
        assert key not in cfg.generator, f"generator.{key} would be a second copy of a knob"
    stats = copy.deepcopy(toy_statistics())
    stats.provenance.update(max_volume=float(cfg.split.max_volume), max_asym_atoms=int(cfg.split.max_asym_atoms))
    sampler = CrystalSampler.from_config(stats, GeneratorConfig(), seed=3)
    assert (sampler.max_volume, sampler.max_asym_atoms) == (450.0, 5)
    crystals = sampler.sample_many(20)
    assert all(c.volume <= 450.0 and c.n_asym < 5 for c in crystals)
    # statistics without provenance (built by hand): the conf/split defaults
    bare = CrystalSampler(toy_statistics(), seed=3)
    default_split = OmegaConf.load(CONF / "split" / "structure_type.yaml")
    assert (bare.max_volume, bare.max_asym_atoms) == (default_split.max_volume, default_split.max_asym_atoms)


def test_group_option_applies_its_defaults_list(tmp_path, monkeypatch):
    from generator import config as gc
    from inference.calibration_sets import generator_config

    uniform = generator_config("uniform")       # conf/generator/uniform.yaml: defaults [default, _self_]
    default = generator_config("default")
    assert uniform.spacegroup_prior == "uniform" and default.spacegroup_prior != "uniform"
    assert uniform.max_restarts == default.max_restarts   # the rest comes from default.yaml
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.yaml").write_text("defaults: [b, _self_]\nx: 1\n")
    (tmp_path / "g" / "b.yaml").write_text("x: 2\ny: 3\n")
    (tmp_path / "g" / "c.yaml").write_text("defaults: [c]\n")
    monkeypatch.setattr(gc, "conf_dir", lambda: tmp_path)
    assert dict(gc.group_option("g", "a")) == {"x": 1, "y": 3}
    with pytest.raises(ValueError, match="loops"):
        gc.group_option("g", "c")
    with pytest.raises(FileNotFoundError, match="options of g: a, b, c"):
        gc.group_option("g", "nope")
