"""Learning from a clean second view of every training pattern (``trainer.clean_view``).

Measured-looking patterns hide much of what a pure pattern shows (merged broad peaks, noise, backgrounds,
part scans), and a model trained on them alone learns slowly. The generator knows each pattern's clean
form for free: the peak payload holds the peak list and every draw, so the trainer renders the same
batch twice, as drawn and without the measurement (:func:`cluster.peak_batch.clean_view`). The clean
view's cross-entropy teaches what pure patterns teach quickly; the distillation term pulls the measured
view's predictions towards the clean view's (privileged information: the teacher is the same network
looking at the clean view, its predictions detached), or with ``teacher`` a frozen model trained
elsewhere (a pure-pattern run) reading the clean view. Prediction reads one measured pattern as always.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cluster.peak_batch import PeakBatch, clean_view
from trainer.config import CleanViewConfig


def clean_inputs(batch: PeakBatch, cfg: CleanViewConfig, device: torch.device) -> torch.Tensor:
    """(B, N) float32 model inputs of ``batch``'s clean view, rendered on ``device``."""
    from cluster.torch_render import render_batch

    if not isinstance(batch, PeakBatch):
        raise TypeError("trainer.clean_view needs peak payloads (cluster.payload=peaks)")
    return render_batch(clean_view(batch, cfg.crystallite_size_nm), device)


def load_teacher(cfg: CleanViewConfig, model_cfg, space_groups: list[int], input_length: int,
                 device: torch.device) -> torch.nn.Module:
    """The frozen model of checkpoint ``cfg.teacher`` (built like the run's model, in eval mode); ``ValueError``
    naming ``trainer.clean_view.teacher`` when it is missing or its classes, input length or layers differ
    from the run's."""
    from trainer.checkpoint import load_initial_weights
    from trainer.models import build_model

    teacher = build_model(model_cfg, len(space_groups), input_length)
    load_initial_weights(teacher, cfg.teacher, space_groups, input_length, model_cfg, key="trainer.clean_view.teacher")
    return teacher.to(device).eval().requires_grad_(False)


def split_outputs(out: dict[str, torch.Tensor], b: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The model's outputs for a batch of 2B (B measured, then B clean): the measured view's outputs
    (every entry's first B rows) and the clean view's (B, C) logits."""
    return {k: v[:b] for k, v in out.items()}, out["logits"][b:]


def clean_view_loss(measured_logits: torch.Tensor, clean_logits: torch.Tensor, y: torch.Tensor,
                    cfg: CleanViewConfig, label_smoothing: float = 0.0,
                    learn_clean: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``ce_weight`` x CE(clean) + ``distill_weight`` x T^2 x KL(softmax(clean / T) || softmax(measured / T)),
    the clean logits detached in the KL; ``(loss, {"clean_ce", "distill"})`` (both detached).
    ``learn_clean=False`` (a frozen teacher reads the clean view) leaves the CE out of the loss: it is only
    reported."""
    clean = clean_logits.float()
    ce = F.cross_entropy(clean, y, label_smoothing=label_smoothing)
    t = float(cfg.temperature)
    teacher = F.log_softmax(clean.detach() / t, dim=1)
    student = F.log_softmax(measured_logits.float() / t, dim=1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t
    loss = cfg.distill_weight * kl + (cfg.ce_weight * ce if learn_clean else 0.0)
    return loss, {"clean_ce": ce.detach(), "distill": kl.detach()}
