"""Typed views of the trainer's config groups (model, optimizer, trainer, logger).

The YAML files under ``conf/`` are the source of every value; these dataclasses are the schema
they are checked against (unknown keys and wrong types raise), built with :func:`typed`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from omegaconf import DictConfig, OmegaConf

from generator.config import as_config

T = TypeVar("T")


def _check(ok: bool, key: str, problem: str) -> None:
    """Raise ``ValueError("<key> <problem>")`` unless ``ok``: the one form of a bad-config message."""
    if not ok:
        raise ValueError(f"{key} {problem}")


def typed(schema: type[T], cfg: Any) -> T:
    """``cfg`` (DictConfig, dict, dataclass instance or None) checked against ``schema``."""
    return as_config(schema, cfg)


def to_dict(cfg: Any) -> dict:
    """Plain JSON-able dict of a dataclass / DictConfig / dict."""
    if isinstance(cfg, dict):
        return OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


@dataclass
class ModelConfig:
    """Architecture of a space-group classifier (conf/model/*.yaml).

    ``arch`` picks the backbone: "park" (Park et al. CNN), "resnet" (1D ResNet) or "convnet" (compact
    normalised CNN for CPUs) on powder patterns; "msdn" (multistream DenseNet) on zone-axis images.
    Fields of the other backbones are ignored. Each arch name is registered with its builder in
    :mod:`trainer.models.registry`.
    """

    name: str = "parkcnn_small"
    arch: str = "park"
    # Dense layers between the flattened features and the output (Park: two, ResNet: one of 256).
    hidden: list[int] = field(default_factory=lambda: [700, 70])
    dropout_dense: float = 0.0
    # Park CNN
    channels: int = 80
    kernels: list[int] = field(default_factory=lambda: [100, 50, 25])
    strides: list[int] = field(default_factory=lambda: [5, 5, 2])
    pool_sizes: list[int] = field(default_factory=lambda: [3, 3, 3])
    pool_strides: list[int] = field(default_factory=lambda: [2, 3, 3])
    dropout_conv: float = 0.0
    # ResNet
    depth: int = 10
    kernel_size: int = 9
    group_stride: int = 4
    norm_groups: int = 32  # GroupNorm groups; 0 selects BatchNorm
    stem_channels: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: int = 3
    stem_pool_stride: int = 2
    width_multiplier: float = 1.0
    # Compact CNN ("convnet"; also uses kernel_size, norm_groups and the stem fields above)
    stage_channels: list[int] = field(default_factory=lambda: [32, 48, 64, 96, 128, 160, 192])
    stage_double: bool = False  # a second, residual stride-1 convolution in every stage
    # Multistream DenseNet on zone-axis images ("msdn"; also uses stem_channels, norm_groups, dropout_conv)
    block_layers: list[int] = field(default_factory=lambda: [3, 6, 8, 6])
    growth_rate: int = 40
    bottleneck_width: int = 1  # the 1x1 convolution of a dense layer outputs bottleneck_width x growth_rate maps
    compression: float = 1.0  # transition output channels / input channels
    streams: int = 3  # 3: one shared-weight stream per zone axis; 1: one stream over the 3 channels (spot baseline)
    input_scale: float = 1.0  # inputs are multiplied by this first (1/255 for uint8 batches)
    # Dense network on the raw pattern ("vecsei_dense"): these dense layers (ReLU, dropout_dense) are its trunk;
    # with crystal_system_head a 7-class crystal-system head sits on the trunk next to the space-group head.
    dense_layers: list[int] = field(default_factory=lambda: [2048, 1024, 256])
    crystal_system_head: bool = False
    # Input axis of every 1D backbone: "two_theta" (the simulated grid as it is) or "log_q" (a fixed
    # front end, trainer.models.log_axis, resamples the 2-theta input onto axis_points points uniform in
    # ln Q over axis_two_theta, the input's 2-theta range (null: the run takes the simulated grid's), where
    # a cell's size is a shift of all peaks).
    input_axis: str = "two_theta"
    axis_two_theta: Optional[list[float]] = None
    axis_points: int = 4096
    # How the compact CNN turns its last feature map into features: "flatten" (positions kept) or
    # "global" (mean and max over positions: invariant to shifts, with input_axis log_q to the cell size).
    pool: str = "flatten"
    # Second head regressing the z-scored log cell volume (multi-task).
    volume_head: bool = False
    volume_hidden: list[int] = field(default_factory=lambda: [256, 64])
    volume_source: str = "flatten"  # "flatten" (backbone features) or "hidden" (last hidden layer)
    # Head regressing the cell's scale-free shape (generator.crystal.SyntheticCrystal.cell_shape: two length
    # ratios, three |cos| of angles) from the last hidden layer (multi-task, like a lattice head).
    cell_head: bool = False
    cell_hidden: list[int] = field(default_factory=lambda: [64])


@dataclass
class OptimizerConfig:
    """Adam and its learning-rate schedule (conf/optimizer/*.yaml).

    ``schedule``: "constant" or "step" (multiply by ``gamma`` every ``step_epochs`` epochs of
    ``batches_per_epoch`` batches, the ResNet schedule of the paper). ``warmup_steps`` ramps
    the rate up linearly (0: off).
    """

    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-7
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_epochs: int = 500
    gamma: float = 0.5
    warmup_steps: int = 0
    grad_clip: Optional[float] = None
    total_steps: int = 0  # "cosine": steps over which the rate decays to min_lr_factor (the run's max_steps)
    min_lr_factor: float = 0.02

    def validate(self, prefix: str = "optimizer") -> "OptimizerConfig":
        """Raise ``ValueError`` naming the key of an impossible value; returns ``self``."""
        _check(self.name in ("adam", "adamw"), f"{prefix}.name", f"must be adam or adamw, got {self.name!r}")
        _check(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        _check(self.schedule in ("constant", "step", "cosine"), f"{prefix}.schedule",
               f"must be constant, step or cosine, got {self.schedule!r}")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"{prefix}.betas",
               f"must be two values in [0, 1), got {self.betas}")
        _check(self.eps > 0, f"{prefix}.eps", f"must be > 0, got {self.eps}")
        _check(self.weight_decay >= 0, f"{prefix}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.warmup_steps >= 0, f"{prefix}.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.grad_clip is None or self.grad_clip > 0, f"{prefix}.grad_clip",
               f"must be null or > 0, got {self.grad_clip}")
        if self.schedule == "step":
            _check(self.step_epochs >= 1, f"{prefix}.step_epochs", f"must be >= 1, got {self.step_epochs}")
            _check(self.gamma > 0, f"{prefix}.gamma", f"must be > 0, got {self.gamma}")
        if self.schedule == "cosine":
            _check(self.total_steps > 0, f"{prefix}.total_steps",
                   f"must be > 0 for the cosine schedule (the run's max_steps), got {self.total_steps}")
            _check(0 <= self.min_lr_factor <= 1, f"{prefix}.min_lr_factor",
                   f"must be in [0, 1], got {self.min_lr_factor}")
        return self


@dataclass
class CleanViewConfig:
    """A second, clean rendering of every training pattern (conf/trainer: ``clean_view``), for peak payloads.

    The clean view is the same crystal's pattern without the measurement (``cluster.peak_batch.clean_view``):
    no backgrounds, impurity, noise, shifts or scan window and, with ``crystallite_size_nm``, pure sharp
    Gaussian peaks. Both views go through the model in one batch; the loss adds ``ce_weight`` x the clean
    view's cross-entropy and ``distill_weight`` x T^2 x KL(clean || measured) at ``temperature`` T, the
    clean predictions detached: the measured view learns towards what the model reads in the clean one.
    With ``teacher`` (a checkpoint of the same model and classes, e.g. a pure-pattern run), a frozen copy of
    that model reads the clean view instead: the KL pulls the measured view towards its predictions and
    ``ce_weight`` is unused (the run's model sees only the measured view).
    """

    enabled: bool = False
    crystallite_size_nm: Optional[float] = 50.0  # null: keep each pattern's drawn peak profile
    ce_weight: float = 1.0
    distill_weight: float = 1.0
    temperature: float = 2.0
    teacher: Optional[str] = None  # checkpoint whose frozen model reads the clean view; null: the run's own

    def validate(self, prefix: str = "trainer.clean_view") -> "CleanViewConfig":
        """Raise ``ValueError`` naming the key of an impossible value; returns ``self``."""
        _check(self.crystallite_size_nm is None or self.crystallite_size_nm > 0, f"{prefix}.crystallite_size_nm",
               f"must be null or > 0, got {self.crystallite_size_nm}")
        for key in ("ce_weight", "distill_weight"):
            _check(getattr(self, key) >= 0, f"{prefix}.{key}", f"must be >= 0, got {getattr(self, key)}")
        _check(self.temperature > 0, f"{prefix}.temperature", f"must be > 0, got {self.temperature}")
        _check(self.teacher is None or self.enabled, f"{prefix}.teacher",
               f"is set ({self.teacher}) but {prefix}.enabled is false")
        return self


@dataclass
class TrainerConfig:
    """Loop settings (conf/trainer/*.yaml)."""

    seed: int = 0
    max_steps: int = 300
    # a wall-clock budget (seconds from the loop's start): the run's length is planned from the measured
    # step rate and the cosine ends with it (trainer.time_budget); max_steps stays the upper bound
    time_budget_s: Optional[float] = None
    batches_per_epoch: int = 900  # the paper's "epoch": the unit of the learning-rate schedule
    batch_timeout_s: float = 300.0  # fail with a clear message after this long without a batch
    max_bad_batches: int = 20  # consecutive skipped batches (non-finite loss, bad data) before giving up
    volume_loss_weight: float = 1.0
    cell_loss_weight: float = 1.0
    ema_decay: Optional[float] = None  # exponential moving average of the weights (checkpoints hold the average)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 (also on CPUs with native bf16) | fp32
    compile: bool = False  # torch.compile (CUDA only; ignored on the CPU)
    tf32: bool = True
    torch_threads: int = 0  # 0: cluster.trainer_cpus threads on the CPU (the CLI run; fit alone leaves torch as is)
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 500
    final_eval: bool = True
    eval_timeout_s: float = 600.0  # how long the end of the run waits for outstanding evaluations
    output_dir: Optional[str] = None  # None: the Hydra run directory (or ./outputs/train/<time>)
    resume: Optional[str] = None
    # start from these weights (a checkpoint or a bundled model's folder) with a fresh optimizer, schedule
    # and counters: a longer or fine-tuning run after a finished one; the model and classes must match
    init_weights: Optional[str] = None
    # init_weights from a smaller model: residual branches it lacks (model.stage_double=true grown from a
    # checkpoint without them) start as the identity, so training goes on from exactly its function
    init_weights_grow: bool = False
    progress: bool = True
    num_workers: int = 1  # >1: Ray Train TorchTrainer data-parallel workers
    use_gpu: bool = False  # Ray Train workers each take a GPU
    worker_cpus: float = 1.0  # CPUs reserved per Ray Train worker
    ddp_backend: str = "auto"  # auto (nccl on GPU, gloo on CPU) | gloo | nccl
    clean_view: CleanViewConfig = field(default_factory=CleanViewConfig)

    def validate(self, prefix: str = "trainer") -> "TrainerConfig":
        """Raise ``ValueError`` naming the key of an impossible value; returns ``self``."""
        _check(self.max_steps >= 0, f"{prefix}.max_steps", f"must be >= 0, got {self.max_steps}")
        _check(self.time_budget_s is None or self.time_budget_s > 0, f"{prefix}.time_budget_s",
               f"must be > 0 seconds or null, got {self.time_budget_s}")
        _check(self.time_budget_s is None or self.num_workers == 1, f"{prefix}.time_budget_s",
               f"plans the steps of one process; it needs num_workers=1, got {self.num_workers}")
        for key in ("batches_per_epoch", "log_every", "num_workers"):
            _check(getattr(self, key) >= 1, f"{prefix}.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("checkpoint_every", "eval_every", "keep_checkpoints", "max_bad_batches"):  # 0: off / none
            _check(getattr(self, key) >= 0, f"{prefix}.{key}", f"must be >= 0, got {getattr(self, key)}")
        for key in ("batch_timeout_s", "eval_timeout_s", "worker_cpus"):
            _check(getattr(self, key) > 0, f"{prefix}.{key}", f"must be > 0, got {getattr(self, key)}")
        _check(0 <= self.label_smoothing < 1, f"{prefix}.label_smoothing",
               f"must be in [0, 1), got {self.label_smoothing}")
        _check(self.volume_loss_weight >= 0, f"{prefix}.volume_loss_weight",
               f"must be >= 0, got {self.volume_loss_weight}")
        _check(self.cell_loss_weight >= 0, f"{prefix}.cell_loss_weight",
               f"must be >= 0, got {self.cell_loss_weight}")
        _check(self.ema_decay is None or 0.0 < self.ema_decay < 1.0, f"{prefix}.ema_decay",
               f"must be null or in (0, 1), got {self.ema_decay}")
        _check(self.torch_threads >= 0, f"{prefix}.torch_threads", f"must be >= 0, got {self.torch_threads}")
        _check(self.precision in ("auto", "bf16", "fp32"), f"{prefix}.precision",
               f"must be auto, bf16 or fp32, got {self.precision!r}")
        _check(self.ddp_backend in ("auto", "gloo", "nccl"), f"{prefix}.ddp_backend",
               f"must be auto, gloo or nccl, got {self.ddp_backend!r}")
        _check(not self.init_weights_grow or self.init_weights, f"{prefix}.init_weights_grow",
               "needs trainer.init_weights (the checkpoint to grow from)")
        _check(not (self.resume and self.init_weights), f"{prefix}.init_weights",
               "cannot be combined with trainer.resume (resume continues a run with its own weights)")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), f"{prefix}.device",
               f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        self.clean_view.validate(f"{prefix}.clean_view")
        return self


@dataclass
class LoggerConfig:
    """Where metrics go besides the always-written JSON lines and CSV (conf/logger/*.yaml)."""

    name: str = "none"  # none | wandb
    project: str = "crystalstream"
    entity: Optional[str] = None
    mode: str = "offline"  # offline | online | disabled
    run_name: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    dir: Optional[str] = None  # default: the run's output directory
