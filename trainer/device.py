"""Where and in which precision the loop computes: the torch device and the autocast dtype of a run."""
from __future__ import annotations

import logging
from typing import Optional

import torch

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA requested but not available; training on the CPU")
        return torch.device("cpu")
    return device


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively in oneDNN (AVX512-BF16 or AMX); without it bf16 is emulated
    and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype (None: full fp32). ``auto``: bf16 on CUDA devices that support it, fp32 on the CPU;
    ``bf16``: also on a CPU with native bf16 instructions (about twice the training steps per second of
    the compact CNNs there, ``benchmarks/bench_models.py --precision bf16``)."""
    if name == "fp32":
        return None
    if name not in ("auto", "bf16"):
        raise ValueError(f"unknown precision {name!r} (auto | bf16 | fp32)")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if name == "bf16" and device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    if name == "bf16":
        log.warning("bf16 autocast needs a CUDA device with bf16 support or a CPU with native bf16 "
                    "instructions (AVX512-BF16, AMX); training in fp32")
    return None
