"""``agglo pm25``: not implemented yet (see its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``pm25`` command to ``app`` (placeholder)."""
