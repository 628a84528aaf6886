"""``agglo report``: not implemented yet (see its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app`` (placeholder)."""
