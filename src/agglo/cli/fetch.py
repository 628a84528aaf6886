"""``agglo data fetch``: download real inputs (OSM road extracts) with caching and checksums."""

from __future__ import annotations

from pathlib import Path

import typer

fetch_app = typer.Typer(help="Download real inputs (cached, checksummed).", no_args_is_help=True)


def register(data_app: typer.Typer) -> None:
    """Add the ``fetch`` group to the ``agglo data`` group."""
    data_app.add_typer(fetch_app, name="fetch")


@fetch_app.command("osm")
def osm_cmd(
    region: str = typer.Option(
        "china", "--region", help="Geofabrik region: china, taiwan, or a path like asia/japan."
    ),
    url: str | None = typer.Option(None, "--url", help="Download this URL instead (a mirror)."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected SHA-256 of the file."),
    md5: str | None = typer.Option(None, "--md5", help="Expected MD5 of the file."),
    server_md5: bool = typer.Option(
        True, "--server-md5/--no-server-md5", help="Verify against <url>.md5 (Geofabrik)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: cache)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    force: bool = typer.Option(False, "--force", help="Download even if cached."),
    retries: int = typer.Option(3, "--retries", min=0, help="Tries again after a failed download."),
) -> None:
    """Download an OSM extract (.osm.pbf) for `agglo metro --roads` / `agglo run`.

    Default: https://download.geofabrik.de/asia/china-latest.osm.pbf (~1.4 GB).
    """
    from agglo.io.fetch import fetch, geofabrik_url

    target = url or geofabrik_url(region)
    path = fetch(
        target,
        out,
        sha256=sha256,
        md5=md5,
        checksum_from_server=server_md5 and md5 is None and sha256 is None,
        cache_dir=cache_dir,
        force=force,
        progress=True,
        retries=retries,
    )
    typer.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
