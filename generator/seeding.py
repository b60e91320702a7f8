"""Named branches of the one seed tree of a run (``SeedSequence(root).spawn`` children).

Every random stream of the project hangs off a path in this tree, so that generation, evaluation
and the real-structure source never share draws.
"""
from __future__ import annotations

import numpy as np

# Top-level branches of the seed tree (SeedSequence(root).spawn children).
GENERATION = 0     # (GENERATION, actor slot, incarnation)
EVALUATION = 1     # (EVALUATION, test set index)
REAL_SOURCE = 2    # (REAL_SOURCE, ...)



def seed_for(root: int, *path: int) -> np.random.SeedSequence:
    """The node ``path`` of the spawn tree of ``SeedSequence(root)``.

    ``seed_for(r, a, b)`` equals ``SeedSequence(r).spawn(a + 1)[a].spawn(b + 1)[b]``; distinct
    paths give independent streams.
    """
    return np.random.SeedSequence(int(root), spawn_key=tuple(int(p) for p in path))
