"""G(r): physical checks, and agreement with diffpy.srreal where it is installed."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from simulator.pdf import PairDistribution


def copper():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])


def test_grid_and_normalisation():
    pdf = PairDistribution()
    assert len(pdf.grid) == 209 and pdf.grid[0] == pytest.approx(1.5)
    g = pdf(copper())
    assert g.dtype == np.float32 and g.min() == pytest.approx(0) and g.max() == pytest.approx(1)


def test_peaks_at_neighbour_distances_and_density_slope():
    pdf = PairDistribution({"r_min": 0.5, "r_max": 6.0, "r_step": 0.01, "q_max": 40.0, "q_min": 0.0,
                            "q_damp": 0.0, "q_broad": 0.0, "normalise": False})
    g = pdf.raw(copper())
    r = pdf.grid
    a = 3.615
    # fcc shells at a/sqrt2, a, a*sqrt(3/2), a*sqrt2
    for shell in (a / np.sqrt(2), a, a * np.sqrt(1.5)):
        window = np.abs(r - shell) < 0.3
        assert abs(r[window][np.argmax(g[window])] - shell) < 0.02
    # below the first neighbour G(r) = -4 pi rho0 r
    rho0 = 4 / a ** 3
    low = (r > 1.0) & (r < 1.8)
    np.testing.assert_allclose(g[low], -4 * np.pi * rho0 * r[low], atol=0.15)
    # 12 nearest neighbours: integral of r (G + 4 pi rho0 r) over the first shell
    first = (r > 2.2) & (r < 2.9)
    coordination = np.sum(r[first] * (g[first] + 4 * np.pi * rho0 * r[first])) * 0.01
    assert coordination == pytest.approx(12, rel=0.05)


def test_against_diffpy_srreal():
    srreal = pytest.importorskip("diffpy.srreal.pdfcalculator", reason="diffpy.srreal is not installed")
    from diffpy.structure import Atom, Lattice as DLattice, Structure as DStructure

    s = copper()
    d = DStructure([Atom("Cu", xyz=site.frac_coords, Uisoequiv=0.008) for site in s],
                   lattice=DLattice(*s.lattice.abc, *s.lattice.angles))
    calc = srreal.PDFCalculator(rmin=1.5, rmax=30.0, rstep=0.1366, qmin=0.5, qmax=23.0, qdamp=0.04, qbroad=0.01)
    r, g_ref = calc(d)
    ours = PairDistribution({"normalise": False})
    n = min(len(r), len(ours.grid))
    g = ours.raw(s)[:n]
    assert np.corrcoef(g, g_ref[:n])[0, 1] > 0.99
