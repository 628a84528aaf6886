"""Shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the demo-data generators live outside the package (scripts/demo/); tests import them
sys.path.insert(0, str(REPO / "scripts" / "demo"))
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_agglo_cache(tmp_path_factory):
    """No test writes a cache (font subsets, compiled kernels, coverage plans) into the user's
    folders: ``AGGLO_CACHE_DIR`` points into the session's temporary folder (subprocesses and
    notebook kernels inherit it). Tests of the cache location set their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGGLO_CACHE_DIR", str(tmp_path_factory.mktemp("agglo-cache")))
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real data for tests); skip when absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real test data lives outside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cities():
    """The bundled real city boundaries (read once per session)."""
    from agglo.reference.boundaries import load_cities

    return load_cities()


@pytest.fixture(scope="session")
def counties():
    from agglo.reference.boundaries import load_counties

    return load_counties()
