"""``python -m trainer [overrides]``: train a space-group classifier on the synthetic stream.

Examples::

    python -m trainer                                   # small CPU run (minutes)
    python -m trainer +experiment=resnet101             # the paper's ResNet-101
    python -m trainer +experiment=resnet50 trainer.num_workers=2 trainer.use_gpu=true
    python -m trainer trainer.resume=outputs/train/<run>/checkpoints
    python -m trainer logger=wandb                      # W&B, offline unless logger.mode=online
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from trainer.run import run

    logging.getLogger("trainer").setLevel(logging.INFO)
    run(cfg)


if __name__ == "__main__":
    main()
