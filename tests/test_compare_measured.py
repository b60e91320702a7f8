"""Pattern statistics on synthetic patterns with known answers, and the measured-vs-simulated command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from inference.pattern_statistics import (Sticks, background_statistics, fit_peak, kalpha2_position, noise_sd,
                                        pattern_statistics, position_statistics)

XRED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental" / "xred"
X = np.arange(10.0, 90.0, 0.02)
STICKS = Sticks(two_theta=np.array([22.0, 31.0, 38.5, 45.0, 52.0, 61.0, 67.5, 74.0, 82.0]),
                intensity=np.array([0.6, 1.0, 0.35, 0.8, 0.25, 0.5, 0.3, 0.45, 0.2]), wavelength=1.5406)


def gaussian(x, center, fwhm, height):
    return height * np.exp(-4.0 * math.log(2.0) * ((x - center) / fwhm) ** 2)


def synthetic(shift=0.0, fwhm=0.12, kalpha2=0.0, d_scale=1.0, background=50.0, sd=0.0, seed=0):
    """Background + Gaussian peaks at the sticks (d-spacings times d_scale, shifted) + Gaussian noise."""
    s = np.sin(np.radians(STICKS.two_theta / 2)) / d_scale
    centres = np.degrees(2 * np.arcsin(s)) + shift
    y = np.full_like(X, background) + 0.2 * (X - 10.0)
    for c, a in zip(centres, STICKS.intensity):
        y += gaussian(X, c, fwhm, 1000.0 * a)
        if kalpha2:
            y += gaussian(X, float(kalpha2_position(c)), fwhm, 1000.0 * a * kalpha2)
    return y + np.random.default_rng(seed).normal(0.0, sd, X.shape) if sd else y


@pytest.mark.parametrize("fwhm", [0.08, 0.2, 0.5])
def test_fit_peak_recovers_gaussian_fwhm(fwhm):
    y = gaussian(X, 40.0, fwhm, 100.0) + 3.0
    fit = fit_peak(X, y, 40.02, fwhm * 1.3)
    assert fit is not None
    assert fit["fwhm"] == pytest.approx(fwhm, rel=0.03)
    assert fit["two_theta"] == pytest.approx(40.0, abs=0.005)


def test_widths_of_a_doublet_pattern_are_the_kalpha1_widths():
    stats = pattern_statistics(X, synthetic(fwhm=0.15, kalpha2=0.5, sd=2.0), STICKS, counts=True, kalpha2_ratio=0.5)
    assert stats["n_fitted_peaks"] >= 5
    for key in ("fwhm_low", "fwhm_mid", "fwhm_high"):
        assert stats[key] == pytest.approx(0.15, rel=0.05), key
    # Scherrer: 0.15 deg at 2-theta ~ 30..80 deg -> roughly 55..70 nm
    assert 45.0 < stats["scherrer_size_nm"] < 80.0


@pytest.mark.parametrize("shift", [-0.23, 0.0, 0.087, 0.4])
def test_zero_offset_recovered(shift):
    stats = position_statistics(X, synthetic(shift=shift, background=0.0), STICKS, fwhm=0.12, kalpha2_ratio=0.0)
    assert stats["zero_offset"] == pytest.approx(shift, abs=0.004)
    assert not stats["zero_offset_at_limit"]


def test_zero_offset_with_kalpha2_and_noise_through_all_statistics():
    stats = pattern_statistics(X, synthetic(shift=0.15, kalpha2=0.5, sd=5.0), STICKS, counts=True, kalpha2_ratio=0.5)
    assert stats["zero_offset"] == pytest.approx(0.15, abs=0.01)
    assert stats["intensity_pearson"] > 0.98 and stats["strong_reference_peaks_found"] == 1.0


def test_d_scale_recovered():
    stats = position_statistics(X, synthetic(d_scale=1.004, background=0.0), STICKS, fwhm=0.12, kalpha2_ratio=0.0)
    assert stats["d_scale"] == pytest.approx(1.004, abs=5e-4)
    assert abs(stats["zero_offset_with_d_scale"]) < 0.03


@pytest.mark.parametrize("sd", [1.0, 8.0])
def test_gaussian_noise_sd_recovered(sd):
    y = synthetic(sd=sd, seed=3)
    assert noise_sd(X, y - synthetic()) == pytest.approx(sd, rel=0.05)  # pure noise
    stats = pattern_statistics(X, y, STICKS, counts=True, kalpha2_ratio=0.0)
    assert stats["noise_sd"] * (y.max() - y.min()) == pytest.approx(sd, rel=0.1)  # peak-free regions only
    assert stats["peak_free_fraction"] > 0.5


def test_poisson_noise_is_recognised():
    rng = np.random.default_rng(1)
    y = rng.poisson(synthetic(background=20.0) + 8.0 * (X - 10.0)).astype(float)
    stats = pattern_statistics(X, y, STICKS, counts=True, kalpha2_ratio=0.0)
    assert stats["noise_over_sqrt_counts"] == pytest.approx(1.0, abs=0.1)
    assert stats["noise_exponent"] == pytest.approx(0.5, abs=0.15)
    additive = pattern_statistics(X, synthetic(background=20.0, sd=10.0) + 8.0 * (X - 10.0), STICKS, counts=True)
    assert abs(additive["noise_exponent"]) < 0.2


def test_background_level_and_slope():
    y = np.linspace(0.0, 1.0, X.size) * 100.0 + 100.0  # rises from 100 to 200
    y = y + gaussian(X, 50.0, 0.2, 800.0)
    stats = background_statistics(X, y, np.linspace(100.0, 200.0, X.size))
    span = y.max() - y.min()
    assert stats["background_start"] == pytest.approx(2.5 / span, abs=0.01)
    assert stats["background_end"] == pytest.approx(97.5 / span, abs=0.01)
    assert stats["background_slope"] == pytest.approx(50.0 / span, rel=1e-3)
    assert abs(stats["background_curvature"]) < 1e-6


def test_wrong_relative_intensities_lower_the_correlation():
    good = pattern_statistics(X, synthetic(), STICKS, counts=True, kalpha2_ratio=0.0)
    wrong = Sticks(STICKS.two_theta, STICKS.intensity[::-1].copy(), STICKS.wavelength)
    bad = pattern_statistics(X, synthetic(), wrong, counts=True, kalpha2_ratio=0.0)
    assert good["intensity_pearson"] > 0.99
    assert bad["intensity_pearson"] < 0.5


def test_simulation_names_and_paths(tmp_path):
    from generator.config import CONF_DIR
    from inference.compare_measured import load_manifest_rows, resolve_simulation

    name, cfg = resolve_simulation("imperfections")
    assert name == "imperfections" and cfg.profile.kalpha2
    name, _ = resolve_simulation(str(CONF_DIR / "simulation" / "default.yaml"))
    assert name == "default"
    with pytest.raises(FileNotFoundError, match="available: .*default"):
        resolve_simulation("no_such_config")
    bad = tmp_path / "manifest.csv"
    bad.write_text("name,pattern_file\nx,x.csv\n")
    with pytest.raises(ValueError, match="cif_file"):
        load_manifest_rows(bad)


@pytest.mark.slow
@pytest.mark.skipif(not (XRED / "manifest.csv").exists(), reason="shared measured patterns not available")
def test_command_on_two_xred_patterns(tmp_path):
    from generator.config import CONF_DIR
    from inference.compare_measured import main

    out = tmp_path / "cmp"
    rc = main(["--manifest", str(XRED / "manifest.csv"), "--simulation", "default", "--simulation",
               str(CONF_DIR / "simulation" / "imperfections.yaml"), "--draws", "2", "--out", str(out), "--limit", "2"])
    assert rc == 0
    result = json.loads((out / "statistics.json").read_text())
    assert result["simulations"] == ["default", "imperfections"]
    assert list(result["patterns"]) == ["Al2O3", "C"]
    al2o3 = result["patterns"]["Al2O3"]
    assert al2o3["measured_range"][0] == pytest.approx(10.0, abs=0.01)
    assert abs(al2o3["measured"]["zero_offset"]) < 0.1  # the corundum pattern sits on its CIF's peaks
    assert 0.03 < al2o3["measured"]["fwhm_median"] < 0.5
    assert len(al2o3["simulated"]["imperfections"]["draws"]) == 2
    assert al2o3["simulated"]["default"]["median"]["noise_sd"] == 0.0  # pure patterns have no noise
    assert result["summary"]["measured"]["zero_offset"]["n"] == 2
    for name in ("default", "imperfections"):
        assert (out / f"compare_{name}.png").stat().st_size > 10_000
