"""``agglo autocorr``: not implemented yet (see its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``autocorr`` command to ``app`` (placeholder)."""
