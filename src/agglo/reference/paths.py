"""Where the bundled data lives (installed package or source checkout)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "data_path"]


def data_dir() -> Path:
    """The bundled data directory.

    ``$AGGLO_DATA_DIR`` wins; then ``agglo/_data`` inside an installed wheel; then ``data/`` of
    a source checkout (editable install, as ``make`` does).
    """
    env = os.environ.get("AGGLO_DATA_DIR")
    if env:
        return Path(env)
    packaged = Path(__file__).resolve().parents[1] / "_data"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "data"


def data_path(*parts: str) -> Path:
    """Path to a bundled file, e.g. ``data_path("boundaries", "yangtze.gpkg")``."""
    return data_dir().joinpath(*parts)
