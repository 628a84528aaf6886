"""``agglo panel``: look at a yearbook table before using it."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.cli._flags import option_flags
from agglo.io.panel import PanelOptions

panel_app = typer.Typer(
    help="Yearbook panels: see how a table would be read.", no_args_is_help=True
)


@panel_app.callback()
def _panel_group() -> None:
    """Yearbook panels: see how a table would be read (a group, so `agglo panel inspect`)."""


def register(app: typer.Typer) -> None:
    """Add the ``panel`` command group to ``app``."""
    app.add_typer(panel_app, name="panel")


@panel_app.command("inspect")
@option_flags(PanelOptions)
def inspect_cmd(
    file: Path = typer.Argument(..., help="The yearbook table (CSV/XLSX)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML run configuration; its [panel] section is used."
    ),
    write_columns: Path | None = typer.Option(
        None,
        "--write-columns",
        help="Write the column mapping (column, target, closest) to this CSV: edit the targets "
        "and pass it back as [panel] columns_file (or --columns-file).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --write-columns file."),
    *,
    given: dict,
) -> None:
    """Print how FILE would be read: the header -> indicator mapping with the reason for each,
    the header rows and title lines detected, units, and the city matches. Computes nothing."""
    from agglo.cli._flags import stage_options
    from agglo.config import load_config
    from agglo.io.panel import inspect_panel
    from agglo.outputs.writers import write_csv

    opts = stage_options(PanelOptions, load_config(config).section("panel"), given)
    inspection = inspect_panel(file, opts)
    for line in inspection.lines():
        typer.echo(line)
    if write_columns is not None:
        write_csv(inspection.columns_file(), write_columns, force=force)
        typer.echo(f"wrote the column mapping to {write_columns}; edit it and pass it back as "
                   "[panel] columns_file")  # fmt: skip
