"""The model that ships with the package: it loads, is calibrated, its card matches it, and it answers a
pattern from the command line without any checkpoint being given."""
from __future__ import annotations

import json

import numpy as np
import pytest

from inference.pretrained import bundled_checkpoints, bundled_model_card


def test_a_model_ships_with_the_package():
    folders = bundled_checkpoints()
    assert folders, "no model in inference/pretrained/"
    for folder in folders:
        assert (folder / "model.safetensors").stat().st_size < 50e6
        cal = json.loads((folder / "calibration.json").read_text())
        assert cal["temperature"] > 0 and 0.0 < cal["refusal_threshold"] < 1.0
        meta = json.loads((folder / "meta.json").read_text())
        assert len(meta["space_groups"]) == len(set(meta["space_groups"])) > 10
    card = bundled_model_card()
    assert card and "not measured" not in card.split("## Accuracy")[1].split("##")[1]


@pytest.mark.slow
def test_bundled_model_answers_a_simulated_rock_salt_pattern(tmp_path, capsys):
    """NaCl-type MgO simulated with the model's own measured-pattern physics: the bundled model lists its
    space group (Fm-3m, 225) among the top five, from the command line with no checkpoint."""
    from pymatgen.core import Lattice, Structure

    from simulator import PatternSimulator
    from trainer.checkpoint import load_meta
    from inference.readers import write_xy
    from inference.predict import main

    meta = load_meta(bundled_checkpoints()[0])
    sim = PatternSimulator(meta.simulation)
    mgo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    pure = sim.pure(mgo, np.random.default_rng(0))
    path = write_xy(tmp_path / "mgo.xy", sim.grid, 1000.0 * pure + 20.0, wavelength=sim.config.wavelength)
    assert main([str(path), "--json", "--top-k", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    top = [c["space_group"] for c in result["predictions"][0]["candidates"]]
    assert 225 in top, top
