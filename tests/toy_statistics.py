"""Small hand-made generation statistics for fast generator tests (no database needed)."""
from __future__ import annotations

import numpy as np

from generator.statistics import DensityKDE, LatticeKDE, SpaceGroupStatistics, Statistics
from generator.symmetry import LATTICE_PARAMETERS

# space group -> Wyckoff occupation probabilities (standard-setting names)
TOY_WYCKOFFS = {
    2: {"2i": 0.8, "1a": 0.1, "1h": 0.1},
    14: {"4e": 0.85, "2a": 0.1, "2d": 0.05},
    62: {"4c": 0.6, "8d": 0.4},
    139: {"2a": 0.2, "2b": 0.1, "4d": 0.2, "4e": 0.3, "8j": 0.2},
    166: {"3a": 0.2, "3b": 0.2, "6c": 0.4, "18h": 0.2},
    225: {"4a": 0.35, "4b": 0.35, "8c": 0.2, "24e": 0.1},
}
TOY_PRIOR = {2: 0.15, 14: 0.35, 62: 0.2, 139: 0.1, 166: 0.1, 225: 0.1}
TOY_ELEMENTS = {"O": 0.3, "Fe": 0.15, "Na": 0.15, "Si": 0.1, "Cu": 0.1, "Ba": 0.1, "Cl": 0.1}


def toy_lattice_kde(system: str, rng: np.random.Generator, n: int = 300) -> LatticeKDE:
    params = LATTICE_PARAMETERS[system]
    cols = []
    for p in params:
        if p in ("a", "b"):
            cols.append(rng.normal(1.0, 0.12, n))
        elif p == "c":
            cols.append(rng.normal(1.3 if system in ("tetragonal", "hexagonal", "trigonal") else 1.0, 0.2, n))
        elif p == "beta":
            cols.append(rng.normal(100.0, 8.0, n))
        else:
            cols.append(rng.normal(90.0, 10.0, n))
    data = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
    d = max(len(params), 1)
    return LatticeKDE(system, tuple(params), np.abs(data), n ** (-1.0 / (d + 4)))


def toy_statistics(seed: int = 0, repetitions: dict[int, float] | None = None) -> Statistics:
    """Statistics of six space groups (five crystal systems) with fake KDE data."""
    rng = np.random.default_rng(seed)
    per = {}
    for n, wy in TOY_WYCKOFFS.items():
        per[n] = SpaceGroupStatistics(
            number=n,
            count=100,
            n_unique_elements={1: 0.2, 2: 0.4, 3: 0.4},
            element_probabilities=dict(TOY_ELEMENTS),
            repetitions=dict(repetitions or {1: 0.6, 2: 0.3, 3: 0.1}),
            repetitions_per_element={"O": {2: 0.5, 4: 0.5}},
            wyckoff_occupation=dict(wy),
            wyckoff_occupation_per_element={"O": {k: 1.0 / len(wy) for k in wy}},
        )
    spgs = sorted(TOY_PRIOR)
    systems = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "cubic")
    v_atomic = rng.lognormal(np.log(300.0), 0.7, 2000)
    f = rng.normal(2.4, 0.35, 2000) + 0.3 * np.log(v_atomic / 300.0)
    density = DensityKDE(np.stack([f, v_atomic], axis=1), np.array([0.08, 25.0]))
    volume = f * v_atomic
    return Statistics(
        space_groups=spgs,
        prior=np.array([TOY_PRIOR[n] for n in spgs]),
        per_space_group=per,
        element_probabilities=dict(TOY_ELEMENTS),
        lattice_kdes={s: toy_lattice_kde(s, rng) for s in systems},
        density_kde=density,
        descriptors={
            "volume": volume,
            "density_factor": f,
            "n_asym": rng.integers(1, 12, 2000).astype(float),
            "n_unique_elements": rng.integers(1, 4, 2000).astype(float),
            "space_group": rng.choice(spgs, 2000, p=[TOY_PRIOR[n] for n in spgs]).astype(float),
        },
    )
