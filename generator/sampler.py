"""Synthetic crystals drawn from the generation statistics (Schopmans et al. 2023, SI S1).

One crystal: space group from the prior; number of unique elements; the elements; for every
element its repetition count and one Wyckoff position per repetition (a position without
degrees of freedom takes at most one atom); uniform free coordinates; unit-volume lattice from the
crystal-system KDE; density factor from p(f | V_atomic); the lattice rescaled so the realised cell
volume is exactly f * V_atomic; spglib (one tolerance policy) must find the requested space group.

Everything per space group that does not depend on the draw is precomputed as arrays at
construction (Wyckoff orbits, discrete distributions, KDE kernels), so the hot path is a few dozen
small numpy operations plus the space-group check (:mod:`generator.group_check`: spglib, or an
exact shortcut that gives its number).
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from generator.config import SplitConfig
from generator.crystal import SyntheticCrystal
from generator.elements import mean_radii
from generator.group_check import SpaceGroupCheck
from generator.kde_sampling import DensityFactorSampler, LatticeParameterSampler, lattice_matrix
from generator.statistics import SpaceGroupStatistics, Statistics
from generator.symmetry import SymmetryTolerance, crystal_system
from generator.wyckoff import WyckoffTable, wyckoff_table


@dataclass
class GeneratorConfig:
    """Settings of :class:`CrystalSampler` (``conf/generator/*.yaml``).

    The limits of kept crystals (cell volume, atoms in the asymmetric unit) are not set here: they are
    the ``conf/split`` filter of the real crystals the statistics were extracted from, read from the
    statistics (:func:`split_filter`), so synthetic and real crystals pass the same filter. Nor is the
    seed: every caller seeds its sampler from its own seed tree (``cluster.seed`` for the stream,
    ``evaluation.seed`` for the synthetic test set, the ``seed`` of ``conf/compare.yaml``).

    Attributes:
        spacegroup_prior: "database" (statistics frequencies) or "uniform" over the classified groups.
        retries_same_n_unique: failed attempts with one number of unique elements before drawing a new one.
        max_restarts: new numbers of unique elements before giving up on a space group (error).
        per_element_wyckoffs: draw Wyckoff positions from each element's own occupation probabilities.
        per_element_repetitions: draw repetition counts from each element's own distribution.
        max_kde_redraws: redraws of an invalid lattice or a non-positive density factor before giving up.
    """

    spacegroup_prior: str = "database"
    retries_same_n_unique: int = 20
    max_restarts: int = 50
    per_element_wyckoffs: bool = False
    per_element_repetitions: bool = False
    max_kde_redraws: int = 1000


def split_filter(statistics: Statistics) -> tuple[float, int]:
    """(max_volume A^3, max_asym_atoms) of the split the statistics come from (their provenance).

    Statistics without that provenance (built by hand) get the defaults of ``conf/split``.
    """
    provenance = getattr(statistics, "provenance", None) or {}
    return (float(provenance.get("max_volume", SplitConfig.max_volume)),
            int(provenance.get("max_asym_atoms", SplitConfig.max_asym_atoms)))


class GenerationError(RuntimeError):
    """The statistics cannot produce a valid crystal of a space group (after bounded retries)."""


# Rejection reasons counted in ``CrystalSampler.rejections``.
REJECT_ELEMENTS = "too_few_elements"        # fewer elements with P > 0 than unique elements drawn
REJECT_WYCKOFF = "wyckoff_exhausted"        # every allowed Wyckoff position already taken
REJECT_ASYM = "asym_atoms"                  # >= max_asym_atoms placements
REJECT_VOLUME = "volume"                    # cell volume > max_volume
REJECT_SPGLIB = "spglib_mismatch"           # spglib found another space group
REJECT_ERROR = "error"                      # an unexpected numerical failure of one attempt


def _discrete(dist: dict, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, cumulative probabilities) of a dict value -> probability (keys may be strings after JSON)."""
    items = [(int(k), float(p)) for k, p in dist.items() if float(p) > 0]
    if not items:
        raise ValueError(f"{what}: empty distribution")
    items.sort()
    values = np.array([k for k, _ in items], np.int64)
    cdf = np.cumsum([p for _, p in items])
    return values, cdf / cdf[-1]


def _draw(values: list[int], cdf: list[float], rng: np.random.Generator) -> int:
    """A value drawn by inverse CDF; plain lists and ``bisect_right`` (= ``np.searchsorted(..., "right")``)
    because these tables have a handful of entries and numpy's per-call overhead dominated."""
    return values[min(bisect_right(cdf, rng.random()), len(cdf) - 1)]


def _as_lists(dist: tuple[np.ndarray, np.ndarray]) -> tuple[list[int], list[float]]:
    return [int(v) for v in dist[0]], [float(c) for c in dist[1]]


@dataclass
class _GroupPlan:
    """Everything precomputed for drawing crystals of one space group."""

    number: int
    table: WyckoffTable
    lattice: LatticeParameterSampler
    n_unique: tuple[list[int], list[float]]
    elements: np.ndarray                      # (e,) atomic numbers with P > 0
    element_logp: np.ndarray                  # (e,) log P, for Gumbel top-k draws without replacement
    repetitions: tuple[list[int], list[float]]
    repetitions_per_element: dict[int, tuple[list[int], list[float]]]
    wyckoff_p: list[float]                    # (k,) occupation probability per table position
    wyckoff_p_per_element: dict[int, list[float]]
    fixed_list: list[bool]                    # (k,) position without degrees of freedom (read once per placed atom)


def _symbol_to_z(symbol: str) -> int:
    from pymatgen.core.periodic_table import Element

    return int(Element(symbol).Z)


class CrystalSampler:
    """Draws :class:`SyntheticCrystal` objects from :class:`Statistics`.

    Args:
        statistics: generation statistics; crystal labels are indices into ``statistics.space_groups``.
        seed: int, ``SeedSequence`` or ``Generator``; the same seed gives the same crystals.
        spacegroup_prior: "database" or "uniform".
        symmetry: the project's spglib tolerance policy, used to check every crystal.
        max_volume, max_asym_atoms: limits of kept crystals (A^3; atoms in the asymmetric unit, exclusive);
            None: the split filter the statistics were extracted with (:func:`split_filter`).
        retries_same_n_unique, max_restarts, per_element_wyckoffs, per_element_repetitions,
        max_kde_redraws: see :class:`GeneratorConfig`.

    Attributes:
        rejections: reason -> count of discarded attempts since construction.
    """

    def __init__(
        self,
        statistics: Statistics,
        seed=0,
        spacegroup_prior: str = "database",
        symmetry: SymmetryTolerance | None = None,
        max_volume: float | None = None,
        max_asym_atoms: int | None = None,
        retries_same_n_unique: int = 20,
        max_restarts: int = 50,
        per_element_wyckoffs: bool = False,
        per_element_repetitions: bool = False,
        max_kde_redraws: int = 1000,
    ):
        self.statistics = statistics
        self.rng = np.random.default_rng(seed)
        self.symmetry = symmetry or SymmetryTolerance()
        split_volume, split_asym = split_filter(statistics)
        self.max_volume = float(split_volume if max_volume is None else max_volume)
        self.max_asym_atoms = int(split_asym if max_asym_atoms is None else max_asym_atoms)
        self.retries_same_n_unique = max(1, int(retries_same_n_unique))
        self.max_restarts = max(1, int(max_restarts))
        self.per_element_wyckoffs = bool(per_element_wyckoffs)
        self.per_element_repetitions = bool(per_element_repetitions)
        self.max_kde_redraws = max(1, int(max_kde_redraws))
        self.rejections: Counter = Counter()
        self.group_check = SpaceGroupCheck(self.symmetry)  # spglib's number, with exact shortcuts

        self.space_groups = [int(n) for n in statistics.space_groups]
        if not self.space_groups:
            raise ValueError("statistics classify no space group")
        self.label_of = {n: i for i, n in enumerate(self.space_groups)}
        if spacegroup_prior == "database":
            prior = np.asarray(statistics.prior, np.float64).ravel()
            if prior.shape != (len(self.space_groups),) or not np.all(prior >= 0) or prior.sum() <= 0:
                raise ValueError(f"statistics prior must be {len(self.space_groups)} non-negative numbers with a positive sum")
        elif spacegroup_prior == "uniform":
            prior = np.ones(len(self.space_groups))
        else:
            raise ValueError(f"spacegroup_prior must be 'database' or 'uniform', got {spacegroup_prior!r}")
        self.prior = prior / prior.sum()
        self._prior_cdf = [float(c) for c in np.cumsum(self.prior)]

        # Volume of one atom (4/3 pi r^3, A^3) by atomic number: V_atomic as in generator.elements.
        radii = mean_radii()
        self._atom_volume = 4.0 / 3.0 * np.pi * np.nan_to_num(radii, nan=0.0) ** 3
        self._has_radius = ~np.isnan(radii)
        self.density = DensityFactorSampler(statistics.density_kde)
        lattice_samplers: dict[str, LatticeParameterSampler] = {}
        self._plans: dict[int, _GroupPlan] = {}
        for n in self.space_groups:
            if n not in statistics.per_space_group:
                raise ValueError(f"statistics classify space group {n} but hold no statistics for it")
            system = crystal_system(n)
            if system not in lattice_samplers:
                if system not in statistics.lattice_kdes:
                    raise ValueError(f"statistics hold no lattice KDE for crystal system {system!r} (space group {n})")
                lattice_samplers[system] = LatticeParameterSampler(statistics.lattice_kdes[system])
            self._plans[n] = self._plan(statistics.per_space_group[n], lattice_samplers[system])

    @classmethod
    def from_config(cls, statistics: Statistics, cfg, symmetry: SymmetryTolerance | None = None, seed=0):
        """A sampler from a :class:`GeneratorConfig` (or the Hydra node of ``conf/generator``), seeded with ``seed``."""
        return cls(
            statistics,
            seed=seed,
            spacegroup_prior=cfg.spacegroup_prior,
            symmetry=symmetry,
            retries_same_n_unique=cfg.retries_same_n_unique,
            max_restarts=cfg.max_restarts,
            per_element_wyckoffs=cfg.per_element_wyckoffs,
            per_element_repetitions=cfg.per_element_repetitions,
            max_kde_redraws=cfg.max_kde_redraws,
        )

    # ------------------------------------------------------------------ precomputation

    def _plan(self, sg: SpaceGroupStatistics, lattice: LatticeParameterSampler) -> _GroupPlan:
        n = int(sg.number)
        table = wyckoff_table(n)
        what = f"space group {n}"

        elements, probs = [], []
        for symbol, p in sg.element_probabilities.items():
            if float(p) <= 0:
                continue
            z = _symbol_to_z(symbol)
            if not self._has_radius[z]:
                raise ValueError(f"{what}: element {symbol} has no tabulated radius for V_atomic")
            elements.append(z)
            probs.append(float(p))
        if not elements:
            raise ValueError(f"{what}: no element has a positive probability")

        def wyckoff_probs(dist: dict[str, float], label: str) -> np.ndarray:
            p = np.zeros(len(table.names))
            for name, q in dist.items():
                if float(q) > 0:
                    p[table.index(name)] += float(q)
            if p.sum() <= 0:
                raise ValueError(f"{label}: no Wyckoff position has a positive occupation probability")
            return p / p.sum()

        per_el_w = {_symbol_to_z(s): wyckoff_probs(d, f"{what}, element {s}")
                    for s, d in sg.wyckoff_occupation_per_element.items() if d and sum(map(float, d.values())) > 0}
        per_el_r = {_symbol_to_z(s): _discrete(d, f"{what}, repetitions of {s}")
                    for s, d in sg.repetitions_per_element.items() if d and sum(map(float, d.values())) > 0}
        repetitions = _discrete(sg.repetitions, f"{what}, repetitions")
        if repetitions[0][0] < 1:
            raise ValueError(f"{what}: repetition counts must be >= 1")
        n_unique = _discrete(sg.n_unique_elements, f"{what}, number of unique elements")
        if n_unique[0][0] < 1:
            raise ValueError(f"{what}: numbers of unique elements must be >= 1")
        return _GroupPlan(
            number=n,
            table=table,
            lattice=lattice,
            n_unique=_as_lists(n_unique),
            elements=np.asarray(elements, np.int64),
            element_logp=np.log(np.asarray(probs) / np.sum(probs)),
            repetitions=_as_lists(repetitions),
            repetitions_per_element={z: _as_lists(d) for z, d in per_el_r.items()},
            wyckoff_p=wyckoff_probs(sg.wyckoff_occupation, what).tolist(),
            wyckoff_p_per_element={z: p.tolist() for z, p in per_el_w.items()},
            fixed_list=(table.dof == 0).tolist(),
        )

    # ------------------------------------------------------------------ public API

    def sample(self, space_group: int | None = None) -> SyntheticCrystal:
        """One crystal; its space group is drawn from the prior unless given (must be classified)."""
        if space_group is None:
            space_group = self.draw_space_group()
        plan = self._plans.get(int(space_group))
        if plan is None:
            raise ValueError(f"space group {space_group} is not classified by these statistics")
        return self._sample_group(plan)

    def draw_space_group(self) -> int:
        """A space-group number drawn from the prior (database frequencies or uniform)."""
        i = min(bisect_right(self._prior_cdf, self.rng.random()), len(self.space_groups) - 1)
        return self.space_groups[i]

    def sample_many(self, n: int) -> list[SyntheticCrystal]:
        """``n`` crystals with space groups from the prior."""
        return [self.sample() for _ in range(int(n))]

    def labels(self, crystals: list[SyntheticCrystal]) -> np.ndarray:
        """(n,) int64 class labels (indices into ``statistics.space_groups``) of crystals."""
        return np.array([self.label_of[c.space_group] for c in crystals], np.int64)

    # ------------------------------------------------------------------ one crystal

    def _sample_group(self, plan: _GroupPlan) -> SyntheticCrystal:
        last_error = None
        for _ in range(self.max_restarts):
            k = _draw(*plan.n_unique, self.rng)
            for _ in range(self.retries_same_n_unique):
                try:
                    crystal, reason = self._attempt(plan, k)
                except GenerationError:
                    raise
                except Exception as exc:  # one bad draw must not end a long run; counted and retried
                    crystal, reason, last_error = None, REJECT_ERROR, exc
                if crystal is not None:
                    return crystal
                self.rejections[reason] += 1
                if reason == REJECT_ELEMENTS:
                    break  # this k can never work; draw a new number of unique elements
        raise GenerationError(
            f"no valid crystal of space group {plan.number} after {self.max_restarts} x "
            f"{self.retries_same_n_unique} attempts; rejections so far: {dict(self.rejections)}"
        ) from last_error

    def _attempt(self, plan: _GroupPlan, k: int) -> tuple[SyntheticCrystal | None, str]:
        rng = self.rng
        table = plan.table
        if k > len(plan.elements):
            return None, REJECT_ELEMENTS
        # k distinct elements, drawn one after another proportionally to P (Gumbel top-k).
        keys = plan.element_logp - np.log(-np.log(rng.random(len(plan.elements))))
        chosen = plan.elements[np.argsort(-keys)[:k]]

        # Fixed positions already holding an atom. The Wyckoff CDF is a sequential sum over a few dozen
        # positions (as np.cumsum adds), recomputed only when a fixed position is taken.
        fixed = plan.fixed_list
        taken: set[int] = set()
        sites: list[int] = []
        site_z: list[int] = []
        for z in chosen.tolist():
            reps = plan.repetitions_per_element.get(z, plan.repetitions) if self.per_element_repetitions else plan.repetitions
            p = plan.wyckoff_p_per_element.get(z, plan.wyckoff_p) if self.per_element_wyckoffs else plan.wyckoff_p
            cdf = None
            for _ in range(_draw(*reps, rng)):
                if cdf is None:
                    cdf = list(accumulate(0.0 if i in taken else q for i, q in enumerate(p))) if taken else list(accumulate(p))
                if cdf[-1] <= 0.0:
                    return None, REJECT_WYCKOFF
                w = min(bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)
                if fixed[w]:
                    taken.add(w)
                    cdf = None
                sites.append(w)
                site_z.append(z)
            if len(sites) >= self.max_asym_atoms:
                return None, REJECT_ASYM

        mult = table.multiplicities[sites]
        numbers = np.repeat(np.asarray(site_z, np.int64), mult)
        v_atomic = float(np.dot(self._atom_volume[site_z], mult))

        # Volume first: a too-large cell is rejected before any coordinates are made.
        for _ in range(self.max_kde_redraws):
            f = self.density.draw(v_atomic, rng)
            if f > 0.0:
                break
        else:
            raise GenerationError(f"density KDE gives no positive density factor at V_atomic = {v_atomic:.1f} A^3")
        volume = f * v_atomic
        if volume > self.max_volume:
            return None, REJECT_VOLUME

        for _ in range(self.max_kde_redraws):
            lattice = lattice_matrix(plan.lattice.draw(rng))
            if lattice is not None:
                break
        else:
            raise GenerationError(f"{plan.lattice.crystal_system} lattice KDE gives no valid cell")
        # Rescale to the sampled volume exactly (angles change the unit-volume cell's volume).
        lattice = lattice * np.cbrt(volume / abs(np.linalg.det(lattice)))

        xyz = rng.random((len(sites), 3))
        orbits = [table.orbit(w, xyz[i]) for i, w in enumerate(sites)]
        frac = np.concatenate(orbits)

        if self.group_check.number(table, lattice, orbits, sites, site_z, frac, numbers) != plan.number:
            return None, REJECT_SPGLIB  # spglib (project tolerance) finds another group: accidental symmetry
        return SyntheticCrystal(
            lattice=lattice,
            frac_coords=frac,
            atomic_numbers=numbers,
            space_group=plan.number,
            wyckoff_letters=[table.names[w] for w in sites],
        ), ""
