"""Pipeline stage ``roads``: not implemented yet (see the issue for this stage)."""

from __future__ import annotations

import logging

from agglo.pipeline import RunContext

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    """Placeholder: logs that the stage is not available yet."""
    log.info("stage roads is not implemented yet; skipped")
