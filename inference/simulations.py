"""Named simulation configs for the inference commands: ``conf/simulation/<name>.yaml`` (or a YAML path) as
the representation of calibration patterns, or re-targeted onto a model's own 2-theta grid so a held-out or
CIF set can be simulated another way than the model was trained (``inference.evaluate --simulation``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from generator.config import conf_dir


def simulation_file(name: str) -> Path:
    """``conf/simulation/<name>.yaml``, or ``name`` itself when it has a suffix (a YAML path); a
    ``FileNotFoundError`` listing the known names when there is none."""
    path = Path(name)
    if not path.suffix:
        path = conf_dir() / "simulation" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (conf_dir() / "simulation").glob("*.yaml"))
        raise FileNotFoundError(f"simulation config {path} not found (known: {', '.join(known)})")
    return path


def simulation_on_grid(name: str, model_simulation: Optional[dict]) -> dict:
    """The 2-theta simulation config ``name`` (see :func:`simulation_file`) on the grid and wavelength of a
    model's own simulation (``model_simulation``, a checkpoint's; None: the default), so its patterns fit that
    model's input: how a model trained on one kind of pattern scores on another. ``ValueError`` when either
    is not a 2-theta pattern (1/d profiles and G(r) have no 2-theta grid to share)."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from simulator import make_representation
    from simulator.representation import representation_kind

    path = simulation_file(name)
    own = make_representation(model_simulation or None)
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if own.kind != "two_theta" or representation_kind(node) != "two_theta":
        raise ValueError(f"--simulation {name}: re-simulating on a model's grid needs 2-theta patterns on both "
                         f"sides (the model reads {own.kind!r}, {path.name} makes "
                         f"{representation_kind(node)!r})")
    node = {k: v for k, v in node.items() if k != "kind"}
    node["grid"], node["wavelength"] = asdict(own.config.grid), own.config.wavelength
    try:
        make_representation(node)
    except Exception as err:
        raise ValueError(f"{path}: invalid simulation config: {err}") from err
    return node


def simulation_config(name: Optional[str], meta) -> tuple[Any, str]:
    """The representation (2-theta pattern, 1/d profile or G(r), :mod:`simulator.representation`) of the
    calibration patterns and its label: the checkpoint's own (``name`` None) or ``conf/simulation/<name>.yaml``."""
    from omegaconf import OmegaConf

    from simulator import make_representation

    if not name or name == "checkpoint":
        return meta.input_representation(), "checkpoint"
    path = simulation_file(name)
    try:
        return make_representation(OmegaConf.load(path)), str(name)
    except Exception as err:
        raise ValueError(f"{path}: invalid simulation config: {err}") from err
