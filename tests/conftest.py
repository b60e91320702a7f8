"""Shared fixtures: small crystal databases made on the fly (never the full default build)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from small_crystals import write_small_cifs


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own exit status once every report is written, skipping the interpreter's
    finalisation: threads of native libraries (Ray's workers, torch's and numba's pools) still alive
    then have, rarely, crashed the process after all tests passed, which would turn a green run red.
    CRYSTALSTREAM_TEST_NORMAL_EXIT=1 keeps the normal exit (to look for such a crash)."""
    if _EXIT_STATUS and not os.environ.get("CRYSTALSTREAM_TEST_NORMAL_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (OpenMP spinning on a busy machine makes tiny convolutions ~100x
    slower), restored afterwards; modules that train take it with ``pytest.mark.usefixtures``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance of 2 CPUs for the tests of one module (yields the ``ray`` module)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def bad_cif_folder(tmp_path_factory) -> Path:
    """The good CIFs plus garbage, empty and partially occupied files."""
    return write_small_cifs(tmp_path_factory.mktemp("bad_cifs"), bad=True)


@pytest.fixture(scope="session")
def bad_cif_db(bad_cif_folder, cache_dir):
    """The bad CIF folder parsed serially."""
    from generator.database import load_database

    return load_database(name="cif", path=str(bad_cif_folder), workers=1, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def oqmd_small(cache_dir):
    """The first 300 entries of the bundled OQMD database, parsed serially."""
    from generator.database import load_database

    try:
        return load_database(name="oqmd", limit=300, workers=1, cache_dir=cache_dir)
    except FileNotFoundError as exc:
        pytest.skip(f"default database unavailable: {exc}")
