"""``python -m agglo``: the ``agglo`` command (same as the console script)."""

from agglo.cli import console

if __name__ == "__main__":
    console()
