"""Fault injection on the inputs of ``python -m inference.predict``: one invocation over a corpus of
malformed pattern files mixed with good ones; every bad file gets an error naming it and its
problem, every good one an answer, and no file stops the others."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fault_corpus import write_fault_corpus, xred_patterns
from inference.predict import main
from tiny_checkpoint import SIMULATION, shared_tiny_checkpoint, structures

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("one_torch_thread")]


def simulated_pattern(space_group: int = 225, seed: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    """A 'measured' pattern of a crystal the tiny model knows: its own 10..80 deg scan, counts on a background."""
    from simulator import PatternSimulator

    sim = PatternSimulator({**SIMULATION, "grid": {"two_theta_min": 10.0, "two_theta_max": 80.0, "step": 0.02}})
    return f"simulated_{space_group}", sim.grid, 50.0 + 5000.0 * sim.pure(structures()[space_group],
                                                                          np.random.default_rng(seed))


def test_one_predict_run_over_a_corpus_of_malformed_and_good_files(tmp_path, capsys):
    measured = xred_patterns(limit=3)  # [] when the shared measured patterns are absent
    corpus = write_fault_corpus(tmp_path / "corpus", [simulated_pattern()] + measured)
    bad = [c for c in corpus if not c.good]
    good = [c for c in corpus if c.good]
    assert len(bad) >= 30 and len(good) >= 10 + len(measured)

    code = main([str(c.path) for c in corpus] + ["--checkpoint", str(shared_tiny_checkpoint()), "--json"])
    out, err = capsys.readouterr()
    assert code == 1  # some files failed
    predictions = json.loads(out)["predictions"]
    assert [p["source"] for p in predictions] == [str(c.path) for c in corpus]  # one entry per file, in order
    by_name = {c.path.name: p for c, p in zip(corpus, predictions)}
    for c, p in zip(corpus, predictions):
        if c.good:
            assert p["error"] is None and len(p["candidates"]) == 4, (c.path.name, p["error"])
        else:
            assert p["error"] and c.problem in p["error"] and p["candidates"] == [], (c.path.name, p["error"])
            assert f"error: {c.path}: {p['error']}" in err  # stderr names the file and the problem
    # the variants of one pattern (separators, encodings, line endings, order, names) read as the same numbers
    reference = by_name["good_simulated_225.xy"]
    assert reference["candidates"][0]["space_group"] == 225
    for name in ("good_comma.csv", "good_tab_esd.xye", "good_crlf.txt", "good_bom.xy", "good_utf16.xy",
                 "good_descending.xy", "good_decimal_comma.txt", "good_mixed_separators.dat",
                 "good_latin1_header.xy", "good_some_negative.xy", "good_wrong_extension.png"):
        got = [(c["space_group"], round(c["probability"], 4)) for c in by_name[name]["candidates"]]
        assert got == [(c["space_group"], round(c["probability"], 4)) for c in reference["candidates"]], name
