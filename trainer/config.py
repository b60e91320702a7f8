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
    Fields of the other backbones are ignored.
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
    # Second head regressing the z-scored log cell volume (multi-task).
    volume_head: bool = False
    volume_hidden: list[int] = field(default_factory=lambda: [256, 64])
    volume_source: str = "flatten"  # "flatten" (backbone features) or "hidden" (last hidden layer)


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


@dataclass
class TrainerConfig:
    """Loop settings (conf/trainer/*.yaml)."""

    seed: int = 0
    max_steps: int = 300
    batches_per_epoch: int = 900  # the paper's "epoch": the unit of the learning-rate schedule
    batch_timeout_s: float = 300.0  # fail with a clear message after this long without a batch
    max_bad_batches: int = 20  # consecutive skipped batches (non-finite loss, bad data) before giving up
    volume_loss_weight: float = 1.0
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False  # torch.compile (CUDA only; ignored on the CPU)
    tf32: bool = True
    torch_threads: int = 0  # 0: leave torch's default
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    eval_every: int = 100
    final_eval: bool = True
    eval_timeout_s: float = 600.0  # how long the end of the run waits for outstanding evaluations
    output_dir: Optional[str] = None  # None: the Hydra run directory (or ./outputs/train/<time>)
    resume: Optional[str] = None
    progress: bool = True
    num_workers: int = 1  # >1: Ray Train TorchTrainer data-parallel workers
    use_gpu: bool = False  # Ray Train workers each take a GPU
    worker_cpus: float = 1.0  # CPUs reserved per Ray Train worker
    ddp_backend: str = "auto"  # auto (nccl on GPU, gloo on CPU) | gloo | nccl


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
