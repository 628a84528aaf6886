"""Library logging: a NullHandler; the CLI decides levels and handlers."""

import logging

logger = logging.getLogger("agglo")
logger.addHandler(logging.NullHandler())
