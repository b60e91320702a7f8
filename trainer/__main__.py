"""``python -m trainer [overrides]``: train a space-group classifier on the synthetic stream.

Examples::

    python -m trainer                                   # small CPU run (minutes)
    python -m trainer +experiment=resnet101             # the paper's ResNet-101
    python -m trainer +experiment=resnet50 trainer.num_workers=2 trainer.use_gpu=true
    python -m trainer trainer.resume=outputs/train/<run>   # continue <run>, in <run>
    python -m trainer logger=wandb                      # W&B, offline unless logger.mode=online

A resumed run writes into the checkpoint's run folder (``<run>/checkpoints/step_N`` -> ``<run>``)
unless ``trainer.output_dir`` is given; the rows its metric files hold for steps after the
checkpoint are dropped first. Hydra's own files of the resumed invocation go to
``<run>/.hydra/resume_<time>/`` there.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from typing import Optional

import hydra
from omegaconf import DictConfig

from generator.config import conf_dir

_PLAIN = re.compile(r"^[A-Za-z0-9_./~-]+$")


def _value(argv: list[str], key: str) -> Optional[str]:
    """The last command-line override ``key=value`` (also ``+key=`` / ``++key=``), or None."""
    found = None
    for arg in argv:
        name, sep, value = arg.lstrip("+").partition("=")
        if sep and name == key:
            found = value.strip("'\"")
    return found


def resume_overrides(argv: list[str]) -> list[str]:
    """Hydra overrides that put Hydra's own run files of a resumed run into the checkpoint's run
    folder (where :func:`trainer.run.run` writes), so a resume leaves no second, empty run folder.

    Nothing when not resuming from the command line, with an explicit ``trainer.output_dir`` or
    ``hydra.run.dir``, for a multirun, or when the checkpoint is not in a run folder.
    """
    resume = _value(argv, "trainer.resume")
    if not resume or resume in ("null", "None") or any(a in ("-m", "--multirun") for a in argv):
        return []
    if _value(argv, "trainer.output_dir") not in (None, "", "null", "None") or _value(argv, "hydra.run.dir"):
        return []
    from trainer.checkpoint import run_folder

    try:
        folder = run_folder(resume)
    except FileNotFoundError:
        return []  # the run itself reports the missing checkpoint
    if folder is None:
        return []
    path = str(folder)
    if not _PLAIN.match(path):
        path = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    overrides = [f"hydra.run.dir={path}"]
    if _value(argv, "hydra.output_subdir") is None:
        overrides.append(f"hydra.output_subdir=.hydra/resume_{stamp}")
    return overrides


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    from trainer.run import run

    logging.getLogger("trainer").setLevel(logging.INFO)
    run(cfg)


if __name__ == "__main__":
    sys.argv.extend(resume_overrides(sys.argv[1:]))
    main()
