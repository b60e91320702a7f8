"""Crystal databases, structure-type splits, generation statistics and synthetic crystals.

Names are imported lazily so that ``python -m generator.statistics`` (and the other module
entry points) run their module once, without it being imported first through the package.
"""
from importlib import import_module

_EXPORTS = {
    "SyntheticCrystal": "generator.crystal",
    "Statistics": "generator.statistics",
    "extract_statistics": "generator.statistics",
    "SymmetryTolerance": "generator.symmetry",
    "CrystalSampler": "generator.sampler",
    "GenerationError": "generator.sampler",
    "GeneratorConfig": "generator.sampler",
    "CrystalRecord": "generator.database",
    "Database": "generator.database",
    "load_database": "generator.database",
    "Split": "generator.split",
    "random_split": "generator.split",
    "structure_type_split": "generator.split",
    "CrystalRandomiser": "generator.randomise",
    "randomise_coordinates": "generator.randomise",
    "randomise_lattice": "generator.randomise",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'generator' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
