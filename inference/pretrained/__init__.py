"""Models shipped inside the package.

Each bundled model is a folder ``inference/pretrained/<name>/`` holding what the checkpoint loader
reads plus its documentation::

    model.safetensors   weights only (no optimizer state)
    meta.json           CheckpointMeta: classes, model and simulation config, run config
    calibration.json    temperature, top-answer map and refusal threshold (optional, see inference.calibration)
    MODEL_CARD.md       recipe, training, accuracy and calibration figures
    card_inputs.json    what the card was rendered from (``inference.package --refresh`` renders it again)

``python -m inference.package RUN --name NAME`` writes such a folder. ``inference.predict`` and
``inference.evaluate`` use every bundled model (several form an ensemble) when no ``--checkpoint``
is given. The files travel in the wheel as package data (``pyproject.toml``).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

WEIGHTS = "model.safetensors"
META = "meta.json"
CARD = "MODEL_CARD.md"
NO_MODEL = ("no checkpoint given and no model is bundled (inference/pretrained/ holds none); give --checkpoint RUN, "
            "or package a trained run with python -m inference.package RUN --name NAME")


class NoBundledModel(FileNotFoundError):
    """Raised when a command needs a model, none was given and none is bundled."""

    def __init__(self, message: str = NO_MODEL):
        super().__init__(message)


def package_root() -> Path:
    """The folder the bundled models live in (``inference/pretrained`` of the installed package)."""
    root = resources.files(__name__)
    if not isinstance(root, Path):  # e.g. a zip import: the loader needs real files
        return Path(str(root))
    return root


def bundled_checkpoints(root: Optional[Path] = None) -> list[Path]:
    """The bundled model folders (each holds ``model.safetensors`` + ``meta.json``), sorted by name;
    empty when none is bundled."""
    root = Path(root) if root is not None else package_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")) and (p / WEIGHTS).is_file()
                  and (p / META).is_file())


def bundled_model_card(name: Optional[str] = None, root: Optional[Path] = None) -> Optional[str]:
    """The ``MODEL_CARD.md`` text of the bundled model ``name`` (default: the first), or None."""
    models = bundled_checkpoints(root)
    if name is not None:
        models = [p for p in models if p.name == name]
    for p in models:
        card = p / CARD
        if card.is_file():
            return card.read_text()
    return None


def checkpoints_or_bundled(given: list[str] | tuple[str, ...] | None) -> list[str]:
    """``given`` when not empty, else the bundled models; raises :class:`NoBundledModel` when neither."""
    if given:
        return [str(g) for g in given]
    bundled = bundled_checkpoints()
    if not bundled:
        raise NoBundledModel()
    return [str(p) for p in bundled]
