"""Powder X-ray diffraction simulation: peaks, rendered patterns, imperfections, other representations."""
from simulator.config import SimulationConfig
from simulator.pattern import PatternSimulator, ProfileParameters
from simulator.peaks import CrystalArrays, Peaks, crystal_arrays, simulate_peaks
from simulator.representation import Representation, from_description, make_representation

__all__ = ["SimulationConfig", "PatternSimulator", "ProfileParameters", "Peaks", "CrystalArrays",
           "crystal_arrays", "simulate_peaks", "Representation", "make_representation", "from_description"]
