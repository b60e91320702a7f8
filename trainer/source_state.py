"""A batch source's resumable state, stored in a checkpoint's ``training_state.pt`` (plain containers /
tensors, so it loads with ``torch.load(weights_only=True)``)."""
from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import torch


def source_state(source: Any) -> Optional[dict]:
    """A resumable snapshot of a batch source (plain containers / tensors), if it has one."""
    if hasattr(source, "state_dict"):
        return source.state_dict()
    from cluster import sources

    if isinstance(source, sources.ArraySource):
        return {"kind": "array", "rng": json.dumps(source.rng.bit_generator.state),
                "order": torch.from_numpy(np.asarray(source._order, np.int64)), "epochs": int(source.epochs)}
    return None


def load_source_state(source: Any, state: Optional[dict]) -> bool:
    """Restore :func:`source_state`; False if the source cannot be restored."""
    if not state:
        return False
    if hasattr(source, "load_state_dict"):
        source.load_state_dict(state)
        return True
    if state.get("kind") == "array" and hasattr(source, "rng") and hasattr(source, "_order"):
        source.rng.bit_generator.state = json.loads(state["rng"])
        source._order = state["order"].numpy().astype(np.int64)
        source.epochs = int(state["epochs"])
        return True
    return False
