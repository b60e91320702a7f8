"""Powder X-ray diffraction simulation: peaks, rendered patterns, imperfections, other representations."""
from simulator.config import SimulationConfig
from simulator.pattern import PatternSimulator, ProfileParameters
from simulator.peaks import CrystalArrays, Peaks, crystal_arrays, simulate_peaks

__all__ = ["SimulationConfig", "PatternSimulator", "ProfileParameters", "Peaks", "CrystalArrays",
           "crystal_arrays", "simulate_peaks"]
