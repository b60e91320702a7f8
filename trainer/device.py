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
