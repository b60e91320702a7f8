"""Statistics that guide synthetic-crystal generation (Schopmans et al. 2023, SI S1).

The container below is the contract between extraction (from the statistics side of a
structure-type split) and the sampler. Everything in it is plain numbers, so it saves as
JSON + NPZ and the KDEs are rebuilt from their stored data and bandwidths.

Run ``python -m generator.statistics`` (``generator.build_statistics``) to build the statistics of a
database; ``generator.pipeline.default_statistics()`` returns those of the default database. This
module imports nothing above it: the pipeline and the command line import it, never the reverse.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generator.symmetry import CRYSTAL_SYSTEMS, LATTICE_PARAMETERS, crystal_system

FORMAT_VERSION = 1
log = logging.getLogger(__name__)
_PARAMETER_INDEX = {"a": 0, "b": 1, "c": 2, "alpha": 3, "beta": 4, "gamma": 5}


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

        with warnings.catch_warnings():  # statsmodels' pandas deprecation chatter
            warnings.simplefilter("ignore", FutureWarning)
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

    # ------------------------------------------------------------------------ portable I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``statistics.json`` (distributions, provenance) and ``statistics.npz`` (arrays) into folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        per_sg = {}
        for number, sg in self.per_space_group.items():
            per_sg[str(number)] = {
                "number": sg.number, "count": sg.count,
                "n_unique_elements": _str_keys(sg.n_unique_elements),
                "element_probabilities": sg.element_probabilities,
                "repetitions": _str_keys(sg.repetitions),
                "repetitions_per_element": {e: _str_keys(d) for e, d in sg.repetitions_per_element.items()},
                "wyckoff_occupation": sg.wyckoff_occupation,
                "wyckoff_occupation_per_element": sg.wyckoff_occupation_per_element,
            }
        doc = {
            "format_version": FORMAT_VERSION,
            "space_groups": [int(g) for g in self.space_groups],
            "per_space_group": per_sg,
            "element_probabilities": self.element_probabilities,
            "lattice_kdes": {cs: {"parameters": list(k.parameters), "factor": float(k.factor)}
                             for cs, k in self.lattice_kdes.items()},
            "density_kde": {"bandwidth": [float(b) for b in self.density_kde.bandwidth]},
            "descriptors": sorted(self.descriptors),
            "provenance": self.provenance,
        }
        arrays = {"prior": np.asarray(self.prior, np.float64), "density_data": np.asarray(self.density_kde.data, np.float64)}
        arrays.update({f"lattice_{cs}": np.asarray(k.data, np.float64) for cs, k in self.lattice_kdes.items()})
        arrays.update({f"descriptor_{name}": np.asarray(v) for name, v in self.descriptors.items()})
        tmp = path / "statistics.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path / "statistics.npz")
        (path / "statistics.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Statistics":
        """Read statistics written by :meth:`save` (``path``: the folder or its ``statistics.json``)."""
        path = Path(path)
        folder = path.parent if path.suffix == ".json" else path
        try:
            doc = json.loads((folder / "statistics.json").read_text())
            arrays = np.load(folder / "statistics.npz", allow_pickle=False)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{folder}: no saved statistics here ({exc.filename} missing)") from exc
        except (ValueError, OSError) as exc:
            raise ValueError(f"{folder}: unreadable statistics ({exc})") from exc
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: statistics format {doc.get('format_version')}, expected {FORMAT_VERSION}")
        per_sg = {}
        for key, d in doc["per_space_group"].items():
            per_sg[int(key)] = SpaceGroupStatistics(
                number=int(d["number"]), count=int(d["count"]),
                n_unique_elements=_int_keys(d["n_unique_elements"]),
                element_probabilities=dict(d["element_probabilities"]),
                repetitions=_int_keys(d["repetitions"]),
                repetitions_per_element={e: _int_keys(v) for e, v in d["repetitions_per_element"].items()},
                wyckoff_occupation=dict(d["wyckoff_occupation"]),
                wyckoff_occupation_per_element={e: dict(v) for e, v in d["wyckoff_occupation_per_element"].items()},
            )
        lattice = {cs: LatticeKDE(crystal_system=cs, parameters=tuple(m["parameters"]),
                                  data=arrays[f"lattice_{cs}"], factor=float(m["factor"]))
                   for cs, m in doc["lattice_kdes"].items()}
        return cls(
            space_groups=[int(g) for g in doc["space_groups"]],
            prior=arrays["prior"],
            per_space_group=per_sg,
            element_probabilities=dict(doc["element_probabilities"]),
            lattice_kdes=lattice,
            density_kde=DensityKDE(data=arrays["density_data"], bandwidth=np.asarray(doc["density_kde"]["bandwidth"])),
            descriptors={name: arrays[f"descriptor_{name}"] for name in doc["descriptors"]},
            provenance=doc["provenance"],
        )

    @property
    def n_classes(self) -> int:
        return len(self.space_groups)


def _str_keys(d: dict) -> dict[str, float]:
    return {str(k): float(v) for k, v in d.items()}


def _int_keys(d: dict) -> dict[int, float]:
    return {int(k): float(v) for k, v in d.items()}


def _normalise(counter: Counter) -> dict:
    total = float(sum(counter.values()))
    return {k: counter[k] / total for k in sorted(counter)} if total > 0 else {}


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "scipy", "statsmodels", "spglib", "pymatgen", "pyxtal", "ase"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def unit_volume_lattice(record) -> np.ndarray:
    """(6,) lattice parameters of a record's conventional cell with lengths divided by V^(1/3)."""
    params = np.array(record.lattice_parameters, float)
    params[:3] /= record.volume ** (1.0 / 3.0)
    return params


def _space_group_statistics(number: int, records: list) -> SpaceGroupStatistics:
    n_unique, elements, reps, reps_el = Counter(), Counter(), Counter(), defaultdict(Counter)
    wyck, wyck_el = Counter(), defaultdict(Counter)
    for rec in records:
        per_element = Counter(rec.asym_elements)
        n_unique[len(per_element)] += 1
        for el, r in per_element.items():
            elements[el] += 1  # each element once per crystal
            reps[r] += 1
            reps_el[el][r] += 1
        for el, w in zip(rec.asym_elements, rec.asym_wyckoffs):
            wyck[w] += 1
            wyck_el[el][w] += 1
    return SpaceGroupStatistics(
        number=number, count=len(records), n_unique_elements=_normalise(n_unique),
        element_probabilities=_normalise(elements), repetitions=_normalise(reps),
        repetitions_per_element={el: _normalise(c) for el, c in sorted(reps_el.items())},
        wyckoff_occupation=_normalise(wyck),
        wyckoff_occupation_per_element={el: _normalise(c) for el, c in sorted(wyck_el.items())},
    )


def _lattice_kdes(records: list, needed: dict[str, list[int]] | None = None,
                  counts: dict[int, int] | None = None) -> dict[str, LatticeKDE]:
    """One lattice KDE per crystal system present in ``records``.

    A system with too few (or too alike) crystals for scipy's KDE gets none. When ``needed``
    (crystal system -> its classified space groups) holds such a system, a ``ValueError`` says
    which system, how many crystals it has, how many it needs and what to change (``counts``:
    space group -> its statistics crystals, for the threshold that would leave those groups out).
    """
    needed, counts = needed or {}, counts or {}
    rows: dict[str, list] = defaultdict(list)
    for rec in records:
        rows[rec.crystal_system].append(unit_volume_lattice(rec))
    kdes = {}
    for cs in CRYSTAL_SYSTEMS:
        if not rows.get(cs):
            continue
        names = LATTICE_PARAMETERS[cs]
        data = np.asarray(rows[cs])[:, [_PARAMETER_INDEX[p] for p in names]]
        d = len(names)
        kde = LatticeKDE(crystal_system=cs, parameters=tuple(names), data=np.ascontiguousarray(data),
                         factor=float(len(data) ** (-1.0 / (d + 4))) if d else 0.0)
        if d:
            # Too few crystals of a system, or crystals too alike, give a singular covariance: such a
            # system gets no KDE (scipy: ValueError when there are no more crystals than parameters,
            # LinAlgError when their lattices span fewer dimensions), which a classified space group
            # of the system cannot do without.
            try:
                kde.kde()
            except (ValueError, np.linalg.LinAlgError) as exc:
                too_few = len(data) <= d
                if cs in needed:
                    raise ValueError(_no_lattice_kde_message(cs, names, len(data), too_few, needed[cs], counts,
                                                             str(exc))) from None
                log.info("no lattice KDE for %s: its %d statistics crystals are too %s (no classified space "
                         "group needs one)", cs, len(data), "few" if too_few else "alike")
                continue
        kdes[cs] = kde
    return kdes


def _no_lattice_kde_message(cs: str, names, n: int, too_few: bool, groups: list[int], counts: dict[int, int],
                            scipy_message: str) -> str:
    """Why crystal system ``cs`` has no lattice KDE although space groups ``groups`` of it are classified."""
    d = len(names)
    scipy_says = scipy_message.strip().splitlines()[0][:80] if scipy_message.strip() else "singular covariance"
    why = (f"too few for its lattice KDE over ({', '.join(names)})" if too_few else
           f"too alike for its lattice KDE over ({', '.join(names)}): their unit-volume lattices span fewer "
           f"than {d} dimensions")
    return (f"crystal system {cs!r} has {n} statistics crystal(s), {why} (needs at least {d + 1} crystals with "
            f"differing lattices), but space group(s) {groups} of it are classified and the sampler needs its "
            f"lattice KDE. Add {cs} structures (CIFs) to the database, or set statistics.min_crystals_per_class "
            f"above {max(counts.get(g, 0) for g in groups)} so that these groups are not classified "
            f"(scipy: {scipy_says})")


def _density_kde(records: list) -> DensityKDE:
    from statsmodels.nonparametric.kernel_density import KDEMultivariateConditional

    data = np.array([(r.density_factor, r.atomic_volume) for r in records if np.isfinite(r.density_factor)], float)
    if len(data) < 3:
        raise ValueError(f"only {len(data)} statistics crystals with a known density factor; need at least 3 "
                         f"for the density KDE: add structures to the database")
    with warnings.catch_warnings():  # statsmodels' pandas deprecation chatter
        warnings.simplefilter("ignore", FutureWarning)
        kde = KDEMultivariateConditional(endog=[data[:, 0]], exog=[data[:, 1]], dep_type="c", indep_type="c",
                                         bw="normal_reference")
    return DensityKDE(data=data, bandwidth=np.asarray(kde.bw, float))


def extract_statistics(database, split, min_crystals_per_class: int = 50) -> "Statistics":
    """Statistics of the statistics side of ``split`` (Schopmans et al. 2023, SI S1).

    Per-space-group distributions are kept for the classified groups only (those with at least
    ``min_crystals_per_class`` statistics crystals); element probabilities, lattice KDEs, the
    density KDE and the descriptors use every statistics crystal.

    Raises:
        ValueError: when the split belongs to another database, or no space group reaches the threshold.
    """
    if split.source_hash != database.source_hash:
        raise ValueError("the split was made from another database (source hashes differ)")
    records = [database[i] for i in split.statistics_ids]
    if not records:
        raise ValueError("the statistics side of the split is empty")
    by_group: dict[int, list] = defaultdict(list)
    for rec in records:
        by_group[rec.space_group].append(rec)
    groups = sorted(g for g, recs in by_group.items() if len(recs) >= min_crystals_per_class)
    if not groups:
        largest = max(len(v) for v in by_group.values())
        raise ValueError(f"no space group has >= {min_crystals_per_class} statistics crystals (largest: {largest}, "
                         f"of {len(records)} statistics crystals); lower statistics.min_crystals_per_class "
                         f"(to at most {largest}) or add structures to the database")
    counts = np.array([len(by_group[g]) for g in groups], float)
    needed: dict[str, list[int]] = defaultdict(list)  # crystal system -> its classified groups
    for g in groups:
        needed[crystal_system(g)].append(g)
    elements = Counter(el for rec in records for el in set(rec.asym_elements))
    descriptors = {
        "volume": np.array([r.volume for r in records], np.float64),
        "density_factor": np.array([r.density_factor for r in records], np.float64),
        "n_asym": np.array([r.n_asym for r in records], np.int64),
        "n_unique_elements": np.array([len(set(r.asym_elements)) for r in records], np.int64),
        "space_group": np.array([r.space_group for r in records], np.int64),
    }
    tol = database.tolerance
    provenance = {
        "database": database.name, "source": database.source, "source_hash": database.source_hash,
        "split_hash": split.hash, "split_kind": split.kind, "seed": split.seed,
        "statistics_fraction": split.statistics_fraction, "max_volume": split.max_volume,
        "max_asym_atoms": split.max_asym_atoms, "min_crystals_per_class": int(min_crystals_per_class),
        "symmetry_tolerance": {"symprec": tol.symprec, "angle_tolerance": tol.angle_tolerance},
        "n_statistics": split.n_statistics, "n_test": split.n_test,
        "n_classified_crystals": int(counts.sum()), "libraries": _library_versions(),
    }
    return Statistics(
        space_groups=groups,
        prior=counts / counts.sum(),
        per_space_group={g: _space_group_statistics(g, by_group[g]) for g in groups},
        element_probabilities=_normalise(elements),
        lattice_kdes=_lattice_kdes(records, needed, {g: len(by_group[g]) for g in groups}),
        density_kde=_density_kde(records),
        descriptors=descriptors,
        provenance=provenance,
    )


if __name__ == "__main__":  # runs as ``__main__``: the package module itself never imports the command line
    from generator.build_statistics import main

    main()
