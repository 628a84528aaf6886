"""``agglo hsr``: not implemented yet (see its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``hsr`` command to ``app`` (placeholder)."""
