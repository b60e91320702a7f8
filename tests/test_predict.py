"""Predictions for measured pattern files with a tiny checkpoint trained inside the tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tiny_checkpoint import SIMULATION, shared_tiny_checkpoint, structures
from inference.readers import write_xy
from inference.predict import Predictor, load_config, load_member, main, space_group_symbol

pytestmark = pytest.mark.slow

XRED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental" / "xred"
MO = 0.70930


@pytest.fixture(scope="module")
def checkpoint():
    return shared_tiny_checkpoint()


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoints([checkpoint], load_config())


def _measured(structure, wavelength=1.5406, lo=10.0, hi=80.0, step=0.02, seed=0):
    """A 'measured' pattern: simulated at ``wavelength`` on its own scan, in counts on a flat background."""
    from simulator import PatternSimulator

    sim = PatternSimulator({**SIMULATION, "wavelength": wavelength,
                            "grid": {"two_theta_min": lo, "two_theta_max": hi, "step": step}})
    return sim.grid, 50.0 + 5000.0 * sim.pure(structure, np.random.default_rng(seed))


def test_same_pattern_as_xy_and_csv_gives_identical_predictions(predictor, tmp_path):
    x, y = _measured(structures()[225])
    a = write_xy(tmp_path / "nacl.xy", x, y)
    b = write_xy(tmp_path / "nacl.csv", x, y, delimiter=",")
    pa, pb = predictor.predict_files([a, b])
    assert pa.ok and pb.ok
    np.testing.assert_array_equal(pa.probabilities, pb.probabilities)
    assert [c.space_group for c in pa.candidates] == [c.space_group for c in pb.candidates]
    assert pa.candidates[0].space_group == 225
    assert pa.candidates[0].symbol == "Fm-3m" and pa.candidates[0].crystal_system == "cubic"
    assert pa.volume is not None and pa.volume > 0


def test_mo_pattern_lands_where_the_cu_model_expects_its_peaks(checkpoint, predictor, tmp_path):
    from simulator import simulate_peaks

    nacl = structures()[225]
    x, y = _measured(nacl, wavelength=MO, lo=4.0, hi=40.0, step=0.01)
    path = write_xy(tmp_path / "nacl_mo.xy", x, y, wavelength=MO)
    member = load_member(checkpoint)
    from inference.patterns import prepare_pattern
    from inference.readers import read_pattern

    prepared = prepare_pattern(read_pattern(path), member.spec, predictor.cfg.pattern)
    assert prepared.wavelength == pytest.approx(MO)
    v = prepared.values
    grid = member.spec.grid
    strong = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] > 0.3)) + 1
    expected = simulate_peaks(nacl, wavelength=1.5406, two_theta_range=(10.0, 80.0))
    expected = expected.two_theta[expected.intensity > 0.03]
    assert len(strong) >= 3
    for peak in grid[strong]:  # every strong input peak sits on a Cu K-alpha peak of NaCl
        assert np.abs(expected - peak).min() <= 0.15
    (result,) = predictor.predict_files([path])
    assert result.wavelength_source == "file"
    assert result.candidates[0].space_group == 225
    # without the wavelength the peaks would be read as Cu K-alpha and land elsewhere
    (wrong,) = predictor.predict_files([write_xy(tmp_path / "nacl_mo_unlabelled.xy", x, y)])
    assert wrong.wavelength_source == "model"
    assert wrong.probabilities[predictor.space_groups.index(225)] < result.probabilities[predictor.space_groups.index(225)]


def test_bad_files_get_clear_errors_and_the_others_answers(predictor, tmp_path, capsys):
    x, y = _measured(structures()[136])
    good = write_xy(tmp_path / "good.xy", x, y)
    bad = {
        "empty.xy": ("", "empty file"),
        "nan.xy": ("10 1\n10.1 nan\n" + "".join(f"{10.2 + 0.1 * i:.1f} 3\n" for i in range(100)), "non-finite"),
        "backwards.xy": ("10 1\n10.2 2\n10.1 3\n" + "".join(f"{11 + 0.1 * i:.1f} 3\n" for i in range(100)),
                         "not strictly increasing"),
        "short.xy": ("".join(f"{40 + 0.02 * i:.2f} {1 + i % 7}\n" for i in range(300)), "covers"),
        "garbage.csv": ("2theta,counts\n10,1\n11,2\nthis is not data\n", "line 4"),
    }
    paths = [good]
    for name, (text, _) in bad.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    paths.append(tmp_path / "missing.xy")
    results = predictor.predict_files(paths)
    assert results[0].ok and results[0].candidates[0].space_group == 136
    for r, (name, (_, problem)) in zip(results[1:], bad.items()):
        assert not r.ok and r.source.endswith(name) and problem in r.error, (name, r.error)
        assert r.candidates == []
    assert "file not found" in results[-1].error

    code = main([str(p) for p in paths] + ["--checkpoint", str(predictor.members[0].name), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    payload = json.loads(out)
    assert [p["error"] is None for p in payload["predictions"]] == [True] + [False] * (len(paths) - 1)
    assert payload["predictions"][0]["candidates"][0]["space_group"] == 136
    for name in bad:
        assert f"{tmp_path / name}:" in err


def test_ensemble_of_identical_checkpoints_equals_one(checkpoint, tmp_path):
    x, y = _measured(structures()[186])
    paths = [write_xy(tmp_path / "zns.xy", x, y), write_xy(tmp_path / "nacl.xy", *_measured(structures()[225]))]
    cfg = load_config()
    one = Predictor.from_checkpoints([checkpoint], cfg).predict_files(paths)
    three = Predictor.from_checkpoints([checkpoint, checkpoint, checkpoint], cfg).predict_files(paths)
    for a, b in zip(one, three):
        np.testing.assert_allclose(b.probabilities, a.probabilities, rtol=0, atol=1e-12)
        assert b.n_members == 3 and b.agreement == 3 and a.agreement == 1
        assert b.volume == pytest.approx(a.volume) and b.volume_spread == pytest.approx(0.0, abs=1e-9)
        assert [c.space_group for c in a.candidates] == [c.space_group for c in b.candidates]


def test_repeated_checkpoint_flags_form_one_ensemble(checkpoint, tmp_path, capsys):
    path = write_xy(tmp_path / "nacl.xy", *_measured(structures()[225]))
    assert main([str(path), "-c", str(checkpoint), "--checkpoint", str(checkpoint), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["checkpoints"] == [str(checkpoint)] * 2
    assert payload["predictions"][0]["n_members"] == 2


def test_refusal_threshold_and_top_k(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = np.arange(10.0, 80.0, 0.02)
    path = write_xy(tmp_path / "noise.xy", x, 100 + rng.poisson(20, x.size).astype(float))
    base = Predictor.from_checkpoints([checkpoint], load_config(overrides={"top_k": 2}))
    (r,) = base.predict_files([path])
    p = r.top_probability
    assert len(r.candidates) == 2 and r.candidates[0].probability >= r.candidates[1].probability
    for threshold, expect in ((0.0, False), (p, False), (min(1.0, p + 1e-6), p < 1.0)):
        base.cfg.refusal_threshold = threshold
        (r,) = base.predict_files([path])
        assert r.refused is expect, threshold
    code = main([str(path), "--checkpoint", str(checkpoint), "--threshold", "1.0", "--top-k", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert ("REFUSED" in out) is (p < 1.0)
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 3 and all(any(s in row for s in ("cubic", "tetragonal", "hexagonal")) for row in rows)
    # the crystal-system line: the summed probabilities of the space groups of each system
    systems = {s.crystal_system: s.probability for s in r.crystal_systems}
    assert sum(systems.values()) == pytest.approx(1.0)
    assert systems[r.candidates[0].crystal_system] >= r.candidates[0].probability
    top = r.crystal_systems[0]
    assert f"crystal system: {top.crystal_system} {top.probability:.3f}" in out


def test_symbols():
    assert space_group_symbol(225) == "Fm-3m"
    assert space_group_symbol(14) == "P2_1/c"
    assert space_group_symbol(167) == "R-3c"


@pytest.mark.skipif(not XRED.exists(), reason="shared measured patterns not available")
def test_every_xred_pattern_gets_an_answer(predictor):
    files = sorted(XRED.glob("*/*.csv"))
    files = [f for f in files if f.name != "manifest.csv"]
    assert len(files) == 17
    results = predictor.predict_files(files)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert all(len(r.candidates) == 4 for r in results)  # the tiny model knows four space groups


def _bundle(checkpoint, root, name="tiny", calibration=None):
    """A bundled-model folder holding what the loader reads (weights + meta, calibration optional)."""
    import shutil

    folder = root / name
    folder.mkdir(parents=True)
    for f in ("model.safetensors", "meta.json"):
        shutil.copyfile(checkpoint / f, folder / f)
    if calibration is not None:
        (folder / "calibration.json").write_text(json.dumps(calibration))
    return folder


def test_bundled_calibrated_model_is_used_without_checkpoint(checkpoint, tmp_path, monkeypatch, capsys):
    import inference.pretrained as pretrained
    from inference.ensemble import softmax

    root = tmp_path / "pretrained"
    folder = _bundle(checkpoint, root, calibration={"temperature": 3.0, "refusal_threshold": 0.99})
    monkeypatch.setattr(pretrained, "package_root", lambda: root)
    path = write_xy(tmp_path / "nacl.xy", *_measured(structures()[225]))

    assert main([str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["checkpoints"] == [str(folder)] and payload["temperatures"] == [3.0]
    assert payload["refusal_threshold"] == 0.99 and payload["refusal_threshold_source"] == "calibration"
    (p,) = payload["predictions"]
    assert p["candidates"][0]["space_group"] == 225 and p["refused"] is (p["top_probability"] < 0.99)
    assert p["crystal_systems"][0]["crystal_system"] == "cubic"
    assert sum(s["probability"] for s in p["crystal_systems"]) == pytest.approx(1.0)

    # the calibrated probabilities are softmax(logits / T) of the same network
    raw = Predictor.from_checkpoints([checkpoint], load_config())
    (r,) = raw.predict_files([path])
    logits = np.log(r.probabilities)
    assert p["top_probability"] == pytest.approx(softmax(logits / 3.0).max(), rel=1e-6)
    assert p["top_probability"] < r.top_probability

    assert payload["top_label_maps"] == [None]

    # with a top answer's map stored, it follows the temperature (inference.top_label)
    from inference.top_label import apply_top_label_map, system_index

    top_label = {"a": 1.0, "b": 1.0, "c": -1.0}
    (folder / "calibration.json").write_text(json.dumps({"temperature": 3.0, "refusal_threshold": 0.99,
                                                          "top_label": top_label}))
    assert main([str(path), "--json"]) == 0
    mapped = json.loads(capsys.readouterr().out)
    assert mapped["top_label_maps"] == [top_label]
    expected = apply_top_label_map(softmax(logits / 3.0)[None, :], top_label, system_index(raw.space_groups))[0]
    assert mapped["predictions"][0]["top_probability"] == pytest.approx(expected.max(), rel=1e-6)
    assert mapped["predictions"][0]["top_probability"] != pytest.approx(p["top_probability"], rel=1e-3)
    assert mapped["predictions"][0]["candidates"][0]["space_group"] == 225
    assert mapped["crystal_system_threshold"] is None and mapped["predictions"][0]["crystal_system_refused"] is None

    # a crystal-system threshold judges the summed probability of the most probable system
    cubic = p["crystal_systems"][0]["probability"]
    for system_threshold, judged in ((cubic - 0.01, False), (min(cubic + 0.01, 1.0), True)):
        (folder / "calibration.json").write_text(json.dumps({"temperature": 3.0, "refusal_threshold": 0.99,
                                                              "crystal_system_threshold": system_threshold}))
        assert main([str(path), "--json"]) == 0
        judged_payload = json.loads(capsys.readouterr().out)
        assert judged_payload["crystal_system_threshold"] == pytest.approx(system_threshold)
        assert judged_payload["predictions"][0]["crystal_system_refused"] is judged
        assert main([str(path)]) == 0
        table = capsys.readouterr().out
        assert ("cubic" in table and (": a guess too" in table) is judged and (": answered" in table) is not judged)
    (folder / "calibration.json").write_text(json.dumps({"temperature": 3.0, "refusal_threshold": 0.99,
                                                          "crystal_system_threshold": 1.5}))
    assert main([str(path)]) == 2
    assert "crystal_system_threshold must be in [0, 1]" in capsys.readouterr().err
    (folder / "calibration.json").write_text(json.dumps({"temperature": 3.0, "refusal_threshold": 0.99}))

    # a threshold given on the command line wins over the calibrated one
    assert main([str(path), "--json", "--threshold", "0.1"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["refusal_threshold"] == 0.1 and payload["refusal_threshold_source"] == "option"
    assert payload["predictions"][0]["refused"] is False

    # two bundled models form an ensemble
    _bundle(checkpoint, root, name="tiny_b")
    assert main([str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["checkpoints"]) == 2 and payload["temperatures"] == [3.0, 1.0]
    assert payload["predictions"][0]["n_members"] == 2
    assert payload["refusal_threshold_source"] == "config"  # only one member is calibrated


def test_huge_values_and_decimal_commas_do_not_stop_the_other_files(predictor, tmp_path, capsys):
    x, y = _measured(structures()[225])
    good = write_xy(tmp_path / "good.xy", x, y)
    commas = tmp_path / "commas.txt"
    commas.write_text(good.read_text().replace(".", ",").replace(" ", ";"))
    huge = tmp_path / "huge.xy"
    huge.write_text(good.read_text().replace(f"{y[100]:.6g}\n", "1.7e308\n", 1).replace(f"{y[200]:.6g}\n", "-1.7e308\n", 1))
    ambiguous = tmp_path / "ambiguous.xy"
    ambiguous.write_text("".join(f"{a:.2f} 1,{int(b):03d}.5\n" for a, b in zip(x, y % 1000)))
    paths = [huge, good, commas, ambiguous]
    code = main([str(p) for p in paths] + ["--checkpoint", str(predictor.members[0].name), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    payload = json.loads(out)["predictions"]
    assert [p["error"] is None for p in payload] == [False, True, True, False]
    assert "sane range" in payload[0]["error"] and f"{huge}:" in err
    assert "decimal commas" in payload[3]["error"] and f"{ambiguous}:" in err
    assert payload[1]["candidates"] == payload[2]["candidates"]  # decimal commas read as the same numbers
    assert payload[1]["candidates"][0]["space_group"] == 225


def test_plot_names_are_distinct_for_files_of_one_name():
    from inference.predict import plot_names

    assert plot_names(["a/data.csv", "b/data.csv", "c/scan.xy"]) == ["a_data.png", "b_data.png", "scan.png"]
    assert plot_names(["a/x.xy", "a/x.csv", "y.xy"]) == ["a_x_1.png", "a_x_2.png", "y.png"]


def test_plots_show_what_the_model_read(checkpoint, predictor, tmp_path, capsys):
    """--plot writes one PNG per answered file; the plotted input is exactly the model's input."""
    from matplotlib.image import imread

    from inference.patterns import prepare_pattern
    from inference.readers import read_pattern

    x, y = _measured(structures()[225], lo=20.0, hi=70.0)
    files = []
    for sample in ("s1", "s2"):                                           # two samples, one file name
        (tmp_path / sample).mkdir()
        files.append(write_xy(tmp_path / sample / "data.csv", x, y, delimiter=","))
    bad = tmp_path / "empty.xy"
    bad.write_text("")
    (r, _) = predictor.predict_files(files)
    expected = prepare_pattern(read_pattern(files[0]), predictor.members[0].spec, predictor.cfg.pattern)
    np.testing.assert_array_equal(r.model_input.values, expected.values)
    assert not r.model_input.mask.all() and r.model_input.mask.any()     # a part scan: the shading has work
    code = main([*map(str, files), str(bad), "--checkpoint", str(checkpoint), "--plot", str(tmp_path / "png")])
    out = capsys.readouterr().out
    assert code == 1                                                      # the empty file is reported
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["s1_data.png", "s2_data.png"]
    assert all(f"plot: {p}" in out for p in pngs)
    image = imread(pngs[0])
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 200
    assert "model_input" not in json.dumps(r.to_dict())
    # a plot folder that cannot be made: the answers still print, the error names the option
    assert main([str(files[0]), str(bad), "--checkpoint", str(checkpoint), "--plot", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "probability" in captured.out and "--plot" in captured.err
    assert f"error: {bad}" in captured.err                              # the bad file is still reported
