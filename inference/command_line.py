"""What the ``inference`` commands share on the command line: the ``--config`` file read before the
main parser (its defaults come from it) and the checkpoints turned into a :class:`Predictor`."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from inference.config import InferenceConfig, load_config
from inference.predictor import Predictor


def split_config_argument(argv: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """Pull ``--config PATH`` out of argv before the main parser (its defaults depend on it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    return known.config, rest


def config_and_arguments(argv: Sequence[str] | None) -> tuple[InferenceConfig, list[str]]:
    """The config named by ``--config`` in ``argv`` (default: ``sys.argv[1:]``), else the default
    one, and the remaining arguments for the main parser."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, rest = split_config_argument(argv)
    return load_config(config_path), rest


def add_checkpoint_argument(parser: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """``--checkpoint/-c``: one or more paths, and repeating the flag adds to them
    (``-c A -c B`` is the ensemble ``-c A B``; a plain ``nargs="+"`` would keep only the last). Unset,
    it stays None, so the caller's default (the config's checkpoints, the bundled model) is never
    extended by accident."""
    parser.add_argument("--checkpoint", "-c", nargs="+", action="extend", default=None,
                        required=required, help=help)


def resolve_checkpoints(given: Sequence[str] | None) -> list[str]:
    """The checkpoints given, else the bundled models (:class:`inference.pretrained.NoBundledModel` when none)."""
    from inference import pretrained

    return pretrained.checkpoints_or_bundled(list(given or []))


def load_predictor(given: Sequence[str] | None, cfg: InferenceConfig,
                   refusal_threshold: Optional[float] = None) -> tuple[list[str], Predictor]:
    """The checkpoints given, else the config's ``checkpoints``, else the bundled models
    (:func:`resolve_checkpoints`), and the predictor of their ensemble; raises FileNotFoundError or
    ValueError when a checkpoint is missing or unusable."""
    checkpoints = resolve_checkpoints(given or cfg.checkpoints)
    return checkpoints, Predictor.from_checkpoints(checkpoints, cfg, refusal_threshold=refusal_threshold)
