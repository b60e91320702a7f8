"""Held-out crystals to calibrate on: real structures of the structure types a model never saw.

A temperature fitted on fresh synthetic crystals matches the model's confidence to its accuracy on
the distribution it was trained on; on real crystals of unseen structure types (what a new sample
is most like) the same model is right less often at the same confidence. Fitting on the held-out
side of the split brings the probabilities to that accuracy instead. The crystals scored by
``python -m inference.evaluate --heldout --limit L --seed S`` are kept out, so the fit and the
evaluation never share a crystal and the evaluation's calibration error stays an honest check.

:func:`heldout_calibration_ids` chooses the crystals, :func:`heldout_logits` simulates them with the
model's simulation and returns the logits and class indices :func:`inference.calibration.calibrate_logits`
takes; :func:`synthetic_logits` does the same for fresh synthetic crystals (``source: synthetic``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class LabelledLogits:
    """A model's logits on calibration patterns and what the patterns are.

    Attributes:
        logits: (B, C) float64 raw logits over the model's classes.
        labels: (B,) class indices into the model's classes; -1 for a space group outside them.
        space_groups: (B,) the true space-group numbers (outside the classes too).
        ids: the database ids of held-out crystals (empty for synthetic ones).
    """

    logits: np.ndarray
    labels: np.ndarray
    space_groups: np.ndarray
    ids: list[str] = field(default_factory=list)


def heldout_calibration_ids(test_ids: Sequence[str], n: int, seed: int, exclude_limit: Optional[int],
                            exclude_seed: int) -> list[str]:
    """``n`` held-out ids drawn with ``seed`` from ``test_ids`` minus the evaluation draw
    ``heldout_ids(test_ids, exclude_limit, exclude_seed)`` (none excluded when ``exclude_limit`` is
    0 or None). Sorted; a clear error when fewer than ``n`` remain."""
    from evaluation.testsets import heldout_ids

    ids = sorted(map(str, test_ids))
    excluded = set(heldout_ids(ids, int(exclude_limit), int(exclude_seed))) if exclude_limit else set()
    pool = [i for i in ids if i not in excluded]
    if n > len(pool):
        raise ValueError(f"calibration.n = {n} held-out crystals asked for, but only {len(pool)} of {len(ids)} remain "
                         f"outside the evaluation draw (calibration.heldout_exclude_limit = {exclude_limit})")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x43414C]))   # its own stream: "CAL"
    return sorted(rng.choice(pool, size=int(n), replace=False).tolist())


def model_logits(model, x: np.ndarray) -> np.ndarray:
    """(B, C) float64 logits of ``model`` on (B, N) inputs, without gradients, on the model's device."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(x, np.float32), device=device))
    return out["logits"].float().cpu().numpy().astype(np.float64)


def heldout_logits(model, space_groups: list[int], run_config: Optional[dict], simulation, n: int, seed: int = 0,
                   exclude_limit: Optional[int] = 2000, exclude_seed: int = 0,
                   batch_size: int = 128) -> LabelledLogits:
    """Logits (m, C) of ``model`` on ``n`` held-out crystals of the checkpoint's split (``run_config``;
    None: the default database and split), simulated with ``simulation`` (a representation or its
    config), with their class indices (m,) into ``space_groups`` (spglib labels; -1 outside the
    classes), space groups and ids; m <= n: crystals that fail to simulate are left out (and logged)."""
    from evaluation.simulate import simulate_crystals
    from generator.pipeline import prepare_crystals
    from simulator import make_representation

    prepared = prepare_crystals(run_config or None)
    ids = heldout_calibration_ids(prepared.split.test_ids, n, seed, exclude_limit, exclude_seed)
    sim = make_representation(simulation)
    pattern_seed, impurity_seed = np.random.SeedSequence([int(seed), 0x43414C, 1]).spawn(2)
    rng, impurity_rng = np.random.default_rng(pattern_seed), np.random.default_rng(impurity_seed)
    index = {int(s): i for i, s in enumerate(space_groups)}
    logits, groups, kept = [], [], []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        records = [prepared.database[i] for i in chunk]
        x, ok = simulate_crystals([r.to_crystal() for r in records], sim, rng, "float32", impurity_rng=impurity_rng)
        if ok.any():
            logits.append(model_logits(model, x[ok]))
            groups += [int(r.space_group) for r, good in zip(records, ok) if good]
            kept += [i for i, good in zip(chunk, ok) if good]
        if (~ok).any():
            log.warning("calibration: %d held-out crystals failed to simulate and are left out", int((~ok).sum()))
        log.info("calibration patterns: %d of %d held-out crystals", start + len(chunk), len(ids))
    if not logits:
        raise ValueError("no held-out calibration crystal could be simulated")
    return LabelledLogits(np.concatenate(logits), np.asarray([index.get(g, -1) for g in groups], np.int64),
                          np.asarray(groups, np.int64), kept)

def load_statistics(which: str, run_config: dict):
    """Generation statistics: the default database and split, or the checkpoint's run config."""
    from generator.pipeline import default_config, prepare_crystals, prepare_data

    if which == "run" and run_config:
        return prepare_crystals(run_config).statistics
    return prepare_data(default_config()).statistics


def generator_config(name: str):
    from generator import GeneratorConfig
    from generator.config import as_config, group_option

    node = group_option("generator", name)   # its defaults list applied (uniform.yaml builds on default)
    try:
        return as_config(GeneratorConfig, node)
    except Exception as err:
        raise ValueError(f"conf/generator/{name}.yaml: invalid generator config: {err}") from err


def synthetic_logits(model, space_groups: list[int], statistics, simulation, n: int, seed: int = 0,
                     generator_cfg=None, batch_size: int = 128) -> LabelledLogits:
    """(n, C) float64 logits of ``model`` on ``n`` fresh synthetic patterns with their (n,) class
    indices into ``space_groups`` (-1 for space groups the model does not classify) and space groups."""
    from generator import CrystalSampler
    from simulator import make_representation

    crystal_seed, pattern_seed = np.random.SeedSequence(int(seed)).spawn(2)
    sampler = (CrystalSampler.from_config(statistics, generator_cfg, seed=crystal_seed) if generator_cfg is not None
               else CrystalSampler(statistics, seed=crystal_seed))
    sim = make_representation(simulation)   # a 2-theta, 1/d or G(r) representation, or its config
    rng = np.random.default_rng(pattern_seed)
    index = {int(s): i for i, s in enumerate(space_groups)}
    logits, groups = [], []
    done = 0
    while done < n:
        crystals = sampler.sample_many(min(batch_size, n - done))
        logits.append(model_logits(model, sim.patterns(crystals, rng)))
        groups += [int(c.space_group) for c in crystals]
        done += len(crystals)
        log.info("calibration patterns: %d of %d", done, n)
    return LabelledLogits(np.concatenate(logits), np.asarray([index.get(g, -1) for g in groups], np.int64),
                          np.asarray(groups, np.int64))
