"""Small textbook crystals written as CIF folders for database, split and statistics tests."""
from __future__ import annotations

from pathlib import Path

# Rock-salt, caesium-chloride, zinc-blende, rutile and fluorite crystals: (name, space group,
# cubic or (a, c) lattice, species, fractional coordinates of the asymmetric unit).
SMALL_CRYSTALS = [
    ("NaCl", 225, 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("KCl", 225, 6.29, ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("MgO", 225, 4.21, ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("LiF", 225, 4.03, ["F", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("CsCl", 221, 4.12, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("CsBr", 221, 4.29, ["Cs", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("ZnS", 216, 5.41, ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    ("GaAs", 216, 5.65, ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    ("CaF2", 225, 5.46, ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    ("TiO2", 136, (4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]),
    ("SnO2", 136, (4.74, 3.19), ["Sn", "O"], [[0, 0, 0], [0.307, 0.307, 0]]),
]



def small_structure(name, sg, lat, species, coords):
    from pymatgen.core import Lattice, Structure

    lattice = Lattice.cubic(lat) if isinstance(lat, float) else Lattice.tetragonal(*lat)
    return Structure.from_spacegroup(sg, lattice, species, coords)


def write_small_cifs(folder: Path, bad: bool = False) -> Path:
    """Write the SMALL_CRYSTALS as CIFs (plus, with ``bad``, a garbage, an empty and a partially occupied file)."""
    from pymatgen.io.cif import CifWriter

    folder.mkdir(parents=True, exist_ok=True)
    for entry in SMALL_CRYSTALS:
        CifWriter(small_structure(*entry), symprec=0.01).write_file(folder / f"{entry[0]}.cif")
    if bad:
        (folder / "garbage.cif").write_text("this is not a CIF file\n_cell_length_a banana\nloop_\n")
        (folder / "empty.cif").write_text("")
        partial = small_structure("NaKCl2", 225, 6.0, [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        CifWriter(partial).write_file(folder / "partial.cif")
    return folder
