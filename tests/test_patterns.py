"""Reading measured patterns, refusing bad ones, wavelength conversion and regridding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.patterns import InputSpec, PatternConfig, convert_wavelength, lorentz_polarisation, prepare_pattern
from inference.readers import MeasuredPattern, PatternError, check_pattern, read_pattern, wavelength_from_text, write_xy

XRED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental" / "xred"
CU, MO = 1.5406, 0.70930
GRID = np.round(np.arange(5.0, 90.0 + 1e-9, 0.05), 5)


def _gauss_pattern(centres, x=None, width=0.08):
    x = np.arange(10.0, 80.0, 0.02) if x is None else x
    y = 5.0 + sum(1000.0 * np.exp(-0.5 * ((x - c) / width) ** 2) for c in centres)
    return x, y


def _scale_sqrt(y, mask=None):
    return np.sqrt(y / y.max())


SPEC = InputSpec(grid=GRID, axis="two_theta", wavelength=CU, preprocess=_scale_sqrt)


def test_text_formats_read_alike(tmp_path):
    x, y = _gauss_pattern([20.0, 35.5, 61.0])
    write_xy(tmp_path / "a.xy", x, y)
    write_xy(tmp_path / "a.csv", x, y, delimiter=",")
    (tmp_path / "a.xye").write_text("'header written by an instrument\n2theta intensity esd\n"
                                    + "\n".join(f"{a:.5f}\t{b:.6g}\t{np.sqrt(b):.3f}" for a, b in zip(x, y)))
    (tmp_path / "rruff.txt").write_text("##NAMES=Test\n##RRUFFID=R000000\n##X-RAY WAVELENGTH=1.541838\n"
                                        + "\n".join(f"{a:.5f}, {b:.6g}" for a, b in zip(x, y)) + "\n##END=\n")
    ref = read_pattern(tmp_path / "a.xy")
    for name in ("a.csv", "a.xye", "rruff.txt"):
        other = read_pattern(tmp_path / name)
        np.testing.assert_allclose(other.two_theta, ref.two_theta)
        np.testing.assert_allclose(other.intensity, ref.intensity, rtol=1e-5)
    assert ref.wavelength is None
    assert read_pattern(tmp_path / "rruff.txt").wavelength == pytest.approx(1.541838)


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    ("# only a comment\n", "no data lines"),
    ("10 1\n11 nan\n12 3\n", "non-finite intensity"),
    ("10 1\n12 2\n11 3\n", "not strictly increasing"),
    ("10 1\n11 2\nabc def\n", "line 3: cannot read"),
    ("10\n11\n12\n", "one column only"),
])
def test_bad_files_name_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.xy"
    path.write_text(text)
    with pytest.raises(PatternError) as info:
        read_pattern(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_file_and_decreasing_scan(tmp_path):
    with pytest.raises(PatternError, match="file not found"):
        read_pattern(tmp_path / "nope.xy")
    p = check_pattern(MeasuredPattern(np.array([30.0, 20.0, 10.0]), np.array([3.0, 2.0, 1.0]), None, Path("x")))
    assert p.two_theta.tolist() == [10.0, 20.0, 30.0] and p.intensity.tolist() == [1.0, 2.0, 3.0]


def test_wavelength_in_headers():
    assert wavelength_from_text("# wavelength: 0.7093") == pytest.approx(0.7093)
    assert wavelength_from_text('<kAlpha1 unit="Angstrom">1.5405980</kAlpha1>') == pytest.approx(1.540598)
    assert wavelength_from_text("*HW_XG_WAVE_LENGTH_ALPHA1 \"1.540593\"") == pytest.approx(1.540593)
    assert wavelength_from_text("# Sample 12.5 mg") is None


def test_convert_wavelength_keeps_d_spacing():
    tt_mo = np.array([10.0, 20.0, 30.0, 70.0])
    tt_cu = convert_wavelength(tt_mo, MO, CU)
    d_mo = MO / (2 * np.sin(np.radians(tt_mo / 2)))
    with np.errstate(invalid="ignore"):
        d_cu = CU / (2 * np.sin(np.radians(tt_cu / 2)))
    np.testing.assert_allclose(d_cu[:3], d_mo[:3], rtol=1e-12)
    assert np.isnan(tt_cu[3])  # d = 0.62 A is beyond Cu's limiting sphere (d >= 0.77 A)
    np.testing.assert_allclose(convert_wavelength(tt_cu[:3], CU, MO), tt_mo[:3], rtol=1e-12)


def test_prepared_peaks_land_where_the_model_expects_them():
    cu_peaks = np.array([25.0, 40.0, 70.0])
    mo_peaks = convert_wavelength(cu_peaks, CU, MO)
    x, y = _gauss_pattern(mo_peaks, x=np.arange(5.0, 45.0, 0.01), width=0.03)
    prepared = prepare_pattern(MeasuredPattern(x, y, MO, Path("mo.xy")), SPEC, PatternConfig())
    found = GRID[_local_maxima(prepared.values)]
    np.testing.assert_allclose(np.sort(found), cu_peaks, atol=0.051)
    assert prepared.mask.all() or prepared.coverage > 0.9
    assert prepared.values.max() == pytest.approx(1.0)


def test_lorentz_polarisation_ratio_applied():
    spec = InputSpec(grid=GRID, axis="two_theta", wavelength=CU, preprocess=lambda y, mask=None: y)
    x = np.arange(5.0, 45.0, 0.01)
    y = np.ones_like(x)
    on = prepare_pattern(MeasuredPattern(x, y, MO, Path("a")), spec, PatternConfig(baseline="none"))
    off = prepare_pattern(MeasuredPattern(x, y, MO, Path("a")), spec,
                          PatternConfig(baseline="none", lorentz_polarisation=False))
    i = np.searchsorted(GRID, 60.0)
    tt_mo = convert_wavelength(np.array([60.0]), CU, MO)[0]
    assert off.values[i] == pytest.approx(1.0)
    assert on.values[i] == pytest.approx(lorentz_polarisation(60.0) / lorentz_polarisation(tt_mo), rel=1e-3)


def test_mask_and_minimum_range():
    x, y = _gauss_pattern([31.0, 40.0], x=np.arange(30.0, 50.0, 0.02))
    prepared = prepare_pattern(MeasuredPattern(x, y, CU, Path("short.xy")), SPEC, PatternConfig(min_coverage=0.2))
    assert prepared.coverage == pytest.approx(20 / 85, abs=0.01)
    assert (prepared.values[~prepared.mask] == 0).all()
    assert prepared.mask[np.searchsorted(GRID, 35.0)] and not prepared.mask[np.searchsorted(GRID, 60.0)]
    with pytest.raises(PatternError, match="short.xy: the measured range 30..49.98 deg 2-theta covers 24%"):
        prepare_pattern(MeasuredPattern(x, y, CU, Path("short.xy")), SPEC, PatternConfig(min_coverage=0.3))
    with pytest.raises(PatternError, match="measured points fall inside"):
        prepare_pattern(MeasuredPattern(x + 60, y, CU, Path("out.xy")), SPEC, PatternConfig())


def test_inverse_d_axis_divides_by_lorentz_polarisation():
    grid = np.linspace(0.1131, 1.0625, 2001)
    spec = InputSpec(grid=grid, axis="inverse_d", wavelength=None, preprocess=lambda y, mask=None: y / y.max(),
                     lorentz_polarisation=False)
    x = np.arange(10.0, 110.0, 0.02)
    lp = lorentz_polarisation(x)
    prepared = prepare_pattern(MeasuredPattern(x, lp, CU, Path("a")), spec, PatternConfig(baseline="none"))
    covered = prepared.values[prepared.mask]
    np.testing.assert_allclose(covered, 1.0, rtol=1e-3)  # LP divided out: flat
    with pytest.raises(PatternError, match="wavelength is unknown"):
        prepare_pattern(MeasuredPattern(x, lp, None, Path("a")), spec, PatternConfig())


@pytest.mark.parametrize("baseline", ["none", "min", "snip"])
def test_baselines(baseline):
    x, y = _gauss_pattern([30.0, 50.0])
    y = y + 200.0 + 2.0 * x  # sloping background
    prepared = prepare_pattern(MeasuredPattern(x, y, CU, Path("b")), SPEC, PatternConfig(baseline=baseline))
    far = prepared.values[np.searchsorted(GRID, 40.0)] ** 2  # undo the sqrt of the test preprocessing
    if baseline == "snip":
        assert far < 0.02
    elif baseline == "min":
        assert 0.05 < far < 0.2
    else:
        assert far > 0.2


def test_instrument_format_needs_reader_or_reads(tmp_path):
    path = tmp_path / "scan.xrdml"
    x, y = _gauss_pattern([30.0])
    path.write_text(_XRDML.format(start=x[0], end=x[-1], counts=" ".join(f"{v:.0f}" for v in y)))
    try:
        import geddes  # noqa: F401
    except ImportError:
        with pytest.raises(PatternError, match="geddes"):
            read_pattern(path)
        return
    p = read_pattern(path)
    assert len(p) == len(x)
    np.testing.assert_allclose(p.two_theta[[0, -1]], x[[0, -1]], atol=1e-6)
    assert p.wavelength == pytest.approx(1.540598)


@pytest.mark.skipif(not XRED.exists(), reason="shared measured patterns not available")
def test_xred_patterns_all_read():
    import csv

    with open(XRED / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 17
    for row in rows:
        p = read_pattern(XRED / row["pattern_file"])
        assert len(p) > 500 and p.two_theta[0] >= 10
        prepared = prepare_pattern(p, SPEC, PatternConfig())
        assert prepared.coverage > 0.35


def _local_maxima(v, rel=0.3):
    i = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] > rel * v.max())) + 1
    return i


_XRDML = """<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5" status="Completed">
  <xrdMeasurement measurementType="Scan" status="Completed">
    <usedWavelength intended="K-Alpha 1">
      <kAlpha1 unit="Angstrom">1.5405980</kAlpha1>
      <kAlpha2 unit="Angstrom">1.5444260</kAlpha2>
      <ratioKAlpha2KAlpha1>0.5000</ratioKAlpha2KAlpha1>
    </usedWavelength>
    <scan appendNumber="0" mode="Continuous" scanAxis="Gonio" status="Completed">
      <dataPoints>
        <positions axis="2Theta" unit="deg">
          <startPosition>{start}</startPosition>
          <endPosition>{end}</endPosition>
        </positions>
        <commonCountingTime unit="seconds">1.0</commonCountingTime>
        <counts unit="counts">{counts}</counts>
      </dataPoints>
    </scan>
  </xrdMeasurement>
</xrdMeasurements>
"""


def test_partial_scan_prepared_like_a_windowed_training_pattern(tmp_path):
    """A scan covering 20-60 deg reaches the model exactly as a simulated pattern with that scan window."""
    from simulator import PatternSimulator
    from simulator.measurement import window_mask

    sim = PatternSimulator({"grid": {"two_theta_min": 5.0, "two_theta_max": 90.0, "step": 0.02}})
    spec = InputSpec(grid=sim.grid, axis="two_theta", wavelength=sim.config.wavelength, preprocess=sim.preprocess)
    x = np.arange(20.0, 60.0 + 1e-9, 0.02)
    y = 50.0 + 1000.0 * np.exp(-0.5 * ((x - 31.7) / 0.1) ** 2)
    path = write_xy(tmp_path / "partial.xy", x, y, wavelength=sim.config.wavelength)
    prepared = prepare_pattern(read_pattern(path), spec, PatternConfig(baseline="min"))
    mask = window_mask(sim.grid, 20.0, 60.0)
    np.testing.assert_array_equal(prepared.mask, mask)
    on_grid = np.zeros(sim.grid.shape)
    on_grid[mask] = np.interp(sim.grid[mask], x, y - y.min())
    # the file holds 6 significant digits; the square root magnifies their rounding in the tails
    np.testing.assert_allclose(prepared.values, sim.preprocess(on_grid, mask), atol=2e-3)
    assert prepared.values[~mask].max() == 0.0 and prepared.values.max() == pytest.approx(1.0)


# ------------------------------------------------------------- huge values and decimal commas


def test_huge_values_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "huge.xy"
    path.write_text("10 1\n10.1 1.7e308\n10.2 -1.7e308\n" + "".join(f"{10.3 + 0.1 * i:.1f} 3\n" for i in range(80)))
    with pytest.raises(PatternError, match="sane range") as info:
        read_pattern(path)
    assert str(path) in str(info.value)


def test_large_but_sane_intensities_scale_without_overflow():
    x = np.arange(10.0, 80.0, 0.02)
    y = 1e14 * (1.0 + np.exp(-0.5 * ((x - 40.0) / 0.1) ** 2))
    spec = InputSpec(grid=GRID, wavelength=CU, preprocess=lambda v, mask=None: v / v.max())
    prepared = prepare_pattern(check_pattern(MeasuredPattern(x, y, CU, Path("big.xy"))), spec, PatternConfig())
    assert np.isfinite(prepared.values).all() and prepared.values.max() == pytest.approx(1.0)


def test_overflow_in_scaling_is_a_pattern_error():
    x = np.arange(10.0, 80.0, 0.02)
    y = 1e12 * (1.0 + np.exp(-0.5 * ((x - 40.0) / 0.1) ** 2))
    spec = InputSpec(grid=GRID, wavelength=CU, preprocess=lambda v, mask=None: v ** 30)  # beyond float32
    with pytest.raises(PatternError, match="overflow in scaling") as info:
        prepare_pattern(check_pattern(MeasuredPattern(x, y, CU, Path("scaled.xy"))), spec, PatternConfig())
    assert "scaled.xy" in str(info.value)


@pytest.mark.parametrize("separator", [" ", ";", "\t", "  ;  "])
def test_decimal_commas_are_read_right(tmp_path, separator):
    dots = tmp_path / "dots.xy"
    dots.write_text("# wavelength: 1.5406\n" + "".join(f"{10 + 0.25 * i:.2f} {100 + 0.5 * i:.1f}\n" for i in range(80)))
    commas = tmp_path / "commas.txt"
    commas.write_text("# wavelength: 1,5406\n2Theta;Intensity\n" + "".join(
        f"{10 + 0.25 * i:.2f}{separator}{100 + 0.5 * i:.1f}\n".replace(".", ",") for i in range(80)))
    a, b = read_pattern(dots), read_pattern(commas)
    np.testing.assert_array_equal(a.two_theta, b.two_theta)
    np.testing.assert_array_equal(a.intensity, b.intensity)
    assert b.two_theta[1] == pytest.approx(10.25) and b.intensity[1] == pytest.approx(100.5)


@pytest.mark.parametrize("text, problem", [
    ("5,00 123,4\n5.5,124\n" + "".join(f"{6 + 0.5 * i:.1f},{130 + i}\n" for i in range(60)), "mixes decimal commas"),
    ("".join(f"{10 + 0.5 * i:.1f} {1000 + i},5\n" for i in range(60)), "decimal commas from column commas"),
    ("".join(f"{10 + 0.5 * i:.1f} 1,{200 + i}.5\n" for i in range(60)), "decimal commas from column commas"),
])
def test_ambiguous_decimal_commas_are_refused(tmp_path, text, problem):
    path = tmp_path / "ambiguous.xy"
    path.write_text(text)
    with pytest.raises(PatternError, match=problem) as info:
        read_pattern(path)
    assert str(path) in str(info.value)


def test_comma_separated_columns_still_read(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("2theta,counts\n" + "".join(f"{10 + 0.5 * i:.1f}, {100 + i}\n" for i in range(60)))
    p = read_pattern(path)
    assert p.two_theta[1] == pytest.approx(10.5) and p.intensity[1] == pytest.approx(101.0)
