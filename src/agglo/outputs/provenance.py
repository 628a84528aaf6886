"""What every output records about how it was made: library versions, portable paths."""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["LIBRARIES", "library_versions", "portable"]

#: the libraries whose methods shape the numbers (esda, libpysal, exactextract first)
LIBRARIES = (
    "esda",
    "libpysal",
    "exactextract",
    "giddy",
    "mapclassify",
    "geopandas",
    "shapely",
    "pyogrio",
    "pyproj",
    "numpy",
    "pandas",
    "scipy",
)

# an absolute POSIX path of 2+ parts, or a Windows drive path; stops at quotes, brackets,
# commas and whitespace so it can be found inside JSON and prose
_ABSOLUTE = re.compile(
    r"(?<![\w.:/>])(?:[A-Za-z]:\\|/)(?:[^\s\"'(),;\[\]{}<>]+[/\\])+([^\s\"'(),;\[\]{}<>/\\]*)"
)


@cache
def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (``"not installed"`` for a missing extra).

    Examples
    --------
    >>> v = library_versions()
    >>> list(v)[:3]
    ['esda', 'libpysal', 'exactextract']
    """
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def portable(text: str) -> str:
    """``text`` without the paths of the machine it was made on.

    The bundled data folder becomes ``<agglo data>/…``; any other absolute path is reduced to
    its last part (the file or folder name), so metadata says *what* was read, not where.

    Examples
    --------
    >>> portable("panel /home/ana/work/yearbook.xlsx (real); rasters C:\\\\acag\\\\2020.nc")
    'panel yearbook.xlsx (real); rasters 2020.nc'
    >>> portable("https://download.geofabrik.de/asia/china-latest.osm.pbf")
    'https://download.geofabrik.de/asia/china-latest.osm.pbf'
    """
    from agglo.reference.paths import data_dir

    root = str(Path(data_dir()).resolve())
    text = text.replace(root + "/", "<agglo data>/").replace(root, "<agglo data>")
    return _ABSOLUTE.sub(lambda m: m.group(1) or m.group(0).rstrip("/\\").rsplit("/", 1)[-1], text)
