"""One rule decides what is synthetic: every stage and command asks :func:`is_synthetic_file`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["is_synthetic_file"]


def is_synthetic_file(path: str | Path) -> bool:
    """True if a file says it is synthetic: in its name, or in its metadata.

    The metadata read is a GeoPackage's layer metadata ``data_status = synthetic`` or a
    NetCDF file's global ``synthetic`` flag / ``title`` containing "synthetic". A file that
    cannot be read is not called synthetic here (its reader reports the problem).

    Examples
    --------
    >>> is_synthetic_file("data/roads/demo_roads_synthetic.gpkg")
    True
    >>> is_synthetic_file("china-latest.osm.pbf")
    False
    """
    path = Path(path)
    if "synthetic" in path.name.lower():
        return True
    suffix = path.suffix.lower()
    if not path.is_file():
        return False
    if suffix == ".gpkg":
        import pyogrio

        try:
            meta = pyogrio.read_info(path).get("layer_metadata") or {}
        except Exception:  # unreadable metadata: the reader reports real problems later
            return False
        return str(meta.get("data_status", "")).lower() == "synthetic"
    if suffix in (".nc", ".nc4", ".netcdf", ".cdf"):
        import netCDF4

        try:
            with netCDF4.Dataset(path) as ds:
                title = str(getattr(ds, "title", "")).lower()
                return "synthetic" in title or bool(getattr(ds, "synthetic", 0))
        except Exception:
            return False
    return False
