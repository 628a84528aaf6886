"""Shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the demo-data generators live outside the package (scripts/demo/); tests import them
sys.path.insert(0, str(REPO / "scripts" / "demo"))
SHARED_DATA = REPO.parent / "shared" / "data"


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
