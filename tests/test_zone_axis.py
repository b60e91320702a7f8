"""Zone-axis images: geometry, systematic absences, shaping, producer and stream wiring."""
from __future__ import annotations

import numpy as np
import pytest

from simulator.zone_axis import ZoneAxisConfig, ZoneAxisSimulator, shaping_pairs, zolz_indices

pymatgen = pytest.importorskip("pymatgen.core")


def _structure(a, species, coords, lattice=None):
    from pymatgen.core import Lattice, Structure

    return Structure(lattice if lattice is not None else Lattice.cubic(a), species, coords)


def test_cubic_crystal_gives_three_equal_images():
    # rock salt NaCl (Fm-3m): the cyclic frames map [100] -> [010] -> [001] onto each other
    nacl = _structure(5.64, ["Na"] * 4 + ["Cl"] * 4,
                      [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    img = ZoneAxisSimulator()(nacl)
    assert img.shape == (3, 128, 128) and img.dtype == np.float32
    assert img.min() >= 0.0 and 0.9 < img.max() <= 1.0   # the direct beam sits between pixels (even size)
    np.testing.assert_allclose(img[0], img[1], atol=1e-6)
    np.testing.assert_allclose(img[0], img[2], atol=1e-6)
    # kinematic patterns are centrosymmetric: a 180 degree rotation about the centre leaves them unchanged
    np.testing.assert_allclose(img[2], img[2][::-1, ::-1], atol=1e-5)
    # and a square lattice with m-3m symmetry is unchanged by a 90 degree rotation too
    np.testing.assert_allclose(img[2], np.rot90(img[2]), atol=1e-5)


def test_tetragonal_crystal_images_differ_along_c():
    from pymatgen.core import Lattice

    t = _structure(None, ["Ti", "O"], [[0, 0, 0], [.3, .3, 0]], Lattice.tetragonal(4.6, 2.96))
    img = ZoneAxisSimulator({"shaping": False})(t)
    # the mirror x = y maps 0kl onto k0l: [100] and [010] agree up to a symmetry of the square image
    # ([100] has b* across and c up, [010] has c* across and a up)
    dihedral = [np.rot90(m, r) for m in (img[1], img[1].T) for r in range(4)]
    assert min(np.abs(img[0] - d).max() for d in dihedral) < 1e-5
    assert min(np.abs(img[2] - d).max() for d in dihedral) > 0.1   # c differs from a


def test_bcc_iron_shows_the_i_centring_absences():
    fe = _structure(2.8665, ["Fe", "Fe"], [[0, 0, 0], [.5, .5, .5]])
    sim = ZoneAxisSimulator({"g_max": 1.5})
    spots = sim.spots(fe, 2)
    assert len(spots.hkl) > 10 and (spots.hkl[:, 2] == 0).all()       # h k 0 only along [001]
    assert (spots.hkl.sum(axis=1) % 2 == 0).all()                      # h + k + l odd: absent
    all_hkl, _ = zolz_indices(fe.lattice.matrix, 2, 1.5)
    assert (all_hkl.sum(axis=1) % 2 == 1).sum() > 10                   # ... though they were enumerated
    # in the image: dark at the 100 position, bright at 110
    img = sim(fe, shaping=False)[2]
    step = sim.pixels_per_inv_angstrom / 2.8665
    cx, cy = sim.center
    assert img[int(round(cy)), int(round(cx + step))] < 1e-3          # (1 0 0)
    assert img[int(round(cy - step)), int(round(cx + step))] > 0.3     # (1 1 0)


def test_xray_and_electron_factors_differ_but_keep_the_absences():
    fe = _structure(2.8665, ["Fe", "Fe"], [[0, 0, 0], [.5, .5, .5]])
    e = ZoneAxisSimulator({"radiation": "electron"}).spots(fe, 2)
    x = ZoneAxisSimulator({"radiation": "xray"}).spots(fe, 2)
    assert np.array_equal(e.hkl, x.hkl)
    assert not np.allclose(e.intensity, x.intensity)  # electron factors fall off faster with s


def test_shaping_joins_only_near_neighbours():
    # a 3 x 2 rectangular grid of spacing 1 x 2: nearest distance 1, so the limit is 1.7
    xy = np.array([[x, y] for x in (0.0, 1.0, 2.0) for y in (0.0, 2.0)])
    pairs = {tuple(p) for p in shaping_pairs(xy, 1.7).tolist()}
    d = {(a, b): np.hypot(*(xy[a] - xy[b])) for a in range(6) for b in range(a + 1, 6)}
    assert pairs == {k for k, v in d.items() if v < 1.7}
    assert all(abs(d[p] - 1.0) < 1e-12 for p in pairs)   # the 2-apart and diagonal pairs stay unjoined
    wider = {tuple(p) for p in shaping_pairs(xy, 2.1).tolist()}  # adds the pairs 2 apart, not the diagonals
    assert wider == {k for k, v in d.items() if v < 2.1} and len(wider) == 4 + 3 + 2


def test_shaped_image_adds_lines_between_spots_only():
    fe = _structure(2.8665, ["Fe", "Fe"], [[0, 0, 0], [.5, .5, .5]])
    sim = ZoneAxisSimulator({"direct_beam": False})
    raw, shaped = sim(fe, shaping=False)[2], sim(fe, shaping=True)[2]
    assert (shaped >= raw - 1e-7).all() and shaped.sum() > raw.sum()
    # nearest spot distance sqrt(2)/a (110 to 200), so 110 and 1-10 (2/a apart, < 1.7 sqrt(2)/a) are joined and
    # the line crosses the empty 100 position; 110 and -1-10 (2 sqrt(2)/a apart) are not, so the centre stays dark
    step = sim.pixels_per_inv_angstrom / 2.8665
    cx, cy = sim.center
    mid = shaped[int(round(cy)), int(round(cx + step))]          # between (1 1 0) and (1 -1 0)
    assert mid > 0.2 and raw[int(round(cy)), int(round(cx + step))] < 1e-3
    assert shaped[int(round(cy)), int(round(cx))] < 1e-3


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="radiation"):
        ZoneAxisConfig.from_any({"radiation": "neutron"})
    with pytest.raises(ValueError, match="max_spots"):
        ZoneAxisSimulator({"max_spots": 5, "g_max": 2.0}).spots(
            _structure(10.0, ["C"], [[0, 0, 0]]), 2)


def test_producer_batches_and_stream_switch():
    from cluster.sources import make_source
    from generator.pipeline import default_statistics

    stats = default_statistics()
    cfg = {"image_size": [32, 32], "g_max": 0.6}
    src = make_source({"source": "local", "batch_size": 3, "dtype": "uint8", "seed": 5}, stats,
                      simulation_cfg={"kind": "zone_axis", **cfg})
    batch = src.get()
    assert batch.patterns.shape == (3, 3, 32, 32) and batch.patterns.dtype == np.uint8
    assert batch.patterns.max() == 255 and len(batch.labels) == 3
    assert src.producer.stats()["bytes_per_sample"] == 3 * 32 * 32
    again = make_source({"source": "local", "batch_size": 3, "dtype": "uint8", "seed": 5}, stats,
                        simulation_cfg=ZoneAxisConfig(**cfg)).get()
    np.testing.assert_array_equal(batch.patterns, again.patterns)   # seeded
    np.testing.assert_array_equal(batch.labels, again.labels)


def test_trainer_batch_check_accepts_images_for_image_models():
    from cluster.batch import Batch
    from trainer.loop import check_batch

    b = Batch(np.zeros((2, 3, 16, 16), np.float16), np.array([0, 1]), np.array([1, 2], np.int16),
              np.zeros(2, np.float32))
    assert check_batch(b, 5, 8501, image_channels=3) is None
    assert "expected (B, 8501)" in check_batch(b, 5, 8501)
    flat = Batch(np.zeros((2, 8501), np.float16), b.labels, b.space_groups, b.log_volume)
    assert "H, W" in check_batch(flat, 5, 8501, image_channels=3)
