"""Crystal databases, structure-type splits, generation statistics and synthetic crystals."""
from generator.crystal import SyntheticCrystal
from generator.statistics import Statistics
from generator.symmetry import SymmetryTolerance

__all__ = ["SyntheticCrystal", "Statistics", "SymmetryTolerance"]

from generator.sampler import CrystalSampler, GenerationError, GeneratorConfig

__all__ += ["CrystalSampler", "GenerationError", "GeneratorConfig"]
