"""``python -m agglo.cli``: the ``agglo`` command (same as the console script)."""

import sys

from agglo.cli import main

if __name__ == "__main__":
    sys.exit(main())
