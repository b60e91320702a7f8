"""Statistics that guide synthetic-crystal generation (REFERENCE 1.1).

The container below is the contract between extraction (from the statistics side of a
structure-type split) and the sampler. Everything in it is plain numbers, so it saves as
JSON + NPZ and the KDEs are rebuilt from their stored data and bandwidths.

Run ``python -m generator.statistics`` to build the statistics of a database.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LatticeKDE:
    """Unit-volume lattice parameters of one crystal system, as a scipy ``gaussian_kde``.

    Attributes:
        crystal_system: e.g. "monoclinic".
        parameters: names of the columns of ``data``, e.g. ("a", "b", "c", "beta"); lengths
            divided by V^(1/3) (dimensionless), angles in degrees. Empty for cubic.
        data: (n, d) float64 samples the KDE was fitted on.
        factor: scipy's covariance factor (Scott's rule: n ** (-1 / (d + 4))).
    """

    crystal_system: str
    parameters: tuple[str, ...]
    data: np.ndarray
    factor: float

    def kde(self):
        """The scipy ``gaussian_kde`` (None for cubic, which has no free parameter)."""
        if not self.parameters:
            return None
        from scipy.stats import gaussian_kde

        return gaussian_kde(self.data.T, bw_method=self.factor)


@dataclass
class DensityKDE:
    """Density factor f = V_cell / V_atomic conditioned on V_atomic (statsmodels ``KDEMultivariateConditional``).

    Attributes:
        data: (n, 2) float64 columns (f, V_atomic in cubic Angstrom).
        bandwidth: (2,) float64 Gaussian-kernel bandwidths (for f, for V_atomic), normal reference.
    """

    data: np.ndarray
    bandwidth: np.ndarray

    def kde(self):
        """The statsmodels conditional KDE p(f | V_atomic)."""
        from statsmodels.nonparametric.kernel_density import KDEMultivariateConditional

        return KDEMultivariateConditional(
            endog=[self.data[:, 0]], exog=[self.data[:, 1]], dep_type="c", indep_type="c", bw=list(self.bandwidth)
        )


@dataclass
class SpaceGroupStatistics:
    """What the statistics side says about one space group.

    Probabilities are dicts that sum to 1. Wyckoff names are multiplicity + letter ("4e") in
    the standard setting; elements are symbols ("O").

    Attributes:
        number: International space-group number.
        count: statistics crystals in this space group.
        n_unique_elements: P(k unique elements in a crystal).
        element_probabilities: P(element), each element counted once per crystal.
        repetitions: P(r Wyckoff placements carry one unique element), pooled over elements.
        repetitions_per_element: element -> P(r), for per-element sampling.
        wyckoff_occupation: P(Wyckoff name) of one placement, pooled over elements.
        wyckoff_occupation_per_element: element -> P(Wyckoff name).
    """

    number: int
    count: int
    n_unique_elements: dict[int, float]
    element_probabilities: dict[str, float]
    repetitions: dict[int, float]
    repetitions_per_element: dict[str, dict[int, float]]
    wyckoff_occupation: dict[str, float]
    wyckoff_occupation_per_element: dict[str, dict[str, float]]


@dataclass
class Statistics:
    """Generation statistics of one database and split.

    Attributes:
        space_groups: classified space-group numbers, ascending; the model's class order.
        prior: (len(space_groups),) float64 database frequency of each classified space group.
        per_space_group: number -> :class:`SpaceGroupStatistics` (classified groups only).
        element_probabilities: P(element) over all statistics crystals (each counted once per crystal).
        lattice_kdes: crystal system -> :class:`LatticeKDE`.
        density_kde: :class:`DensityKDE`.
        descriptors: statistics-side real crystals' descriptors for fidelity checks, each an (n,)
            array: "volume" (A^3), "density_factor", "n_asym", "n_unique_elements", "space_group".
        provenance: source hash, split hash, seed, symmetry tolerance, library versions.
    """

    space_groups: list[int]
    prior: np.ndarray
    per_space_group: dict[int, SpaceGroupStatistics]
    element_probabilities: dict[str, float]
    lattice_kdes: dict[str, LatticeKDE]
    density_kde: DensityKDE
    descriptors: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
