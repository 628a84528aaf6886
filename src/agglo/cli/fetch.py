"""``agglo data fetch``: not implemented yet (see the metro-areas issue)."""

from __future__ import annotations

import typer


def register(data_app: typer.Typer) -> None:
    """Add ``fetch`` commands to the ``agglo data`` group (placeholder)."""
