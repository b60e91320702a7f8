"""Crystal databases, structure-type splits, generation statistics and synthetic crystals."""
from generator.crystal import SyntheticCrystal
from generator.statistics import Statistics
from generator.symmetry import SymmetryTolerance

__all__ = ["SyntheticCrystal", "Statistics", "SymmetryTolerance"]

from generator.sampler import CrystalSampler, GenerationError, GeneratorConfig

__all__ += ["CrystalSampler", "GenerationError", "GeneratorConfig"]

from generator.database import CrystalRecord, Database, load_database
from generator.split import Split, random_split, structure_type_split
from generator.statistics import extract_statistics

__all__ += ["CrystalRecord", "Database", "load_database", "Split", "random_split", "structure_type_split",
            "extract_statistics"]

from generator.randomise import CrystalRandomiser, randomise_coordinates, randomise_lattice

__all__ += ["CrystalRandomiser", "randomise_coordinates", "randomise_lattice"]
