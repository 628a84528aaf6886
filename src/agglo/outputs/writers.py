"""Writers: exports that open cleanly in QGIS: GeoPackage (default) and shapefile, written atomically.

- The driver is chosen from the extension: ``.gpkg`` (preferred) or ``.shp``.
- Every write goes to a temporary file in the target folder and is renamed into place, so a
  crash never leaves a half-written output; an existing output is replaced only with ``force``.
- Shapefiles get unique field names of at most 10 bytes (UTF-8), a sidecar CSV mapping
  short -> full names (``<name>.fields.csv``), a ``.cpg`` declaring UTF-8, a ``.prj``, and
  optionally a ``.qml`` style; 64-bit integers stay 64-bit (GDAL ``Integer64``), and text
  longer than the 254-byte dBASE limit is an error rather than silently clipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from agglo._version import __version__
from agglo.errors import AggloInputError, OutputExistsError
from agglo.outputs.provenance import library_versions, portable

__all__ = [
    "atomic_path",
    "check_writable",
    "export",
    "export_layers",
    "shapefile_field_names",
    "write_csv",
]

log = logging.getLogger(__name__)

_DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile"}
_SHP_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qml", ".fields.csv")


def check_writable(path: str | Path, *, force: bool) -> Path:
    """Raise :class:`~agglo.errors.OutputExistsError` if ``path`` exists and ``force`` is false."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(
            f"{path} already exists; pass force=True (CLI: --force) to replace it, "
            "or choose another output path."
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic.
    Nothing is left behind on error.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "a.txt").read_text()
    'hello'
    """
    path = check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # let the writer create it (GDAL refuses some existing empty files)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(df: pd.DataFrame, path: str | Path, *, force: bool = False) -> Path:
    """Write ``df`` as UTF-8 CSV (no index) atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = write_csv(pd.DataFrame({"城市": ["成都市"], "v": [1.5]}), p)
    >>> p.read_text(encoding="utf-8").splitlines()
    ['城市,v', '成都市,1.5']
    """
    with atomic_path(path, force=force) as tmp:
        df.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)


def export(
    gdf: gpd.GeoDataFrame,
    path: str | Path,
    *,
    layer: str | None = None,
    force: bool = False,
    metadata: Mapping[str, Any] | None = None,
    style_qml: str | None = None,
) -> Path:
    """Write one layer to a GeoPackage or shapefile chosen by the file extension.

    Parameters
    ----------
    gdf
        The layer; it is not modified.
    path
        ``*.gpkg`` or ``*.shp``.
    layer
        Layer name in a GeoPackage (default: the file stem).
    force
        Replace an existing output.
    metadata
        Layer metadata (e.g. units, ``data_status`` real/synthetic, config); the agglo version
        is always added. Stored as GeoPackage layer metadata, or beside a shapefile in
        ``<name>.fields.csv`` and ``<name>.metadata.json``.
    style_qml
        A QGIS style (QML XML) stored in the GeoPackage ``layer_styles`` table or written as
        ``<name>.qml`` beside a shapefile.

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> import tempfile, pathlib, shapely
    >>> g = gpd.GeoDataFrame({"name_zh": ["成都市"]}, geometry=[shapely.Point(104.07, 30.67)], crs=4326)
    >>> p = export(g, pathlib.Path(tempfile.mkdtemp()) / "cities.gpkg")
    >>> gpd.read_file(p).name_zh.tolist()
    ['成都市']
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _DRIVERS:
        raise AggloInputError(
            f"cannot export to {path.name!r}: use a .gpkg (preferred) or .shp file name."
        )
    if suffix == ".shp":
        return _export_shapefile(gdf, path, force=force, metadata=metadata, style_qml=style_qml)
    name = layer or path.stem
    return export_layers(
        {name: gdf},
        path,
        force=force,
        metadata={name: dict(metadata or {})},
        styles={name: style_qml} if style_qml else None,
    )


def export_layers(
    layers: Mapping[str, gpd.GeoDataFrame],
    path: str | Path,
    *,
    force: bool = False,
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    styles: Mapping[str, str] | None = None,
) -> Path:
    """Write several layers into one GeoPackage atomically (all or nothing).

    ``metadata`` and ``styles`` are keyed by layer name (see :func:`export`).
    """
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise AggloInputError(f"export_layers writes GeoPackages; got {path.name!r}.")
    if not layers:
        raise AggloInputError("export_layers: no layers to write.")
    metadata = metadata or {}
    with atomic_path(path, force=force) as tmp:
        for name, gdf in layers.items():
            _check_layer(gdf, name)
            pyogrio.write_dataframe(
                _prepare(gdf),
                tmp,
                layer=name,
                driver="GPKG",
                append=tmp.exists(),
                layer_metadata=_metadata_strings(metadata.get(name, {})),
            )
        if styles:
            from agglo.outputs.styles import write_layer_styles

            write_layer_styles(tmp, {k: v for k, v in styles.items() if v})
    log.info("wrote %s (%d layer(s))", path, len(layers))
    return path


def shapefile_field_names(columns: list[str]) -> dict[str, str]:
    """Map full column names to unique dBASE names of at most 10 bytes (UTF-8).

    A year suffix (``_2010``) is kept and the stem shortened, so yearly columns stay told apart
    (``coreness_2010`` -> ``coren_2010``, not ``coreness_2`` / ``coreness_1``).

    Examples
    --------
    >>> shapefile_field_names(["density_km_per_km2", "density_km_per_100km2", "adcode", "城市群名称"])
    {'density_km_per_km2': 'density_km', 'density_km_per_100km2': 'density__1', 'adcode': 'adcode', '城市群名称': '城市群'}
    >>> shapefile_field_names(["core_2010", "coreness_2010", "coreness_2015", "coreness_rank_2015"])
    {'core_2010': 'core_2010', 'coreness_2010': 'coren_2010', 'coreness_2015': 'coren_2015', 'coreness_rank_2015': 'core1_2015'}
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for col in columns:
        year = re.fullmatch(r"(.+?)(_(?:19|20)\d\d)", col)
        stem, tail = (year.group(1), year.group(2)) if year else (col, "")
        if len(col.encode("utf-8")) <= 10:
            stem, tail = col, ""
        short, n = _truncate_bytes(stem, 10 - len(tail)) + tail, 0
        while short.lower() in used:
            n += 1
            mark = str(n) if tail else f"_{n}"
            short = _truncate_bytes(stem, 10 - len(tail) - len(mark)) + mark + tail
        used.add(short.lower())
        out[col] = short
    return out


def _truncate_bytes(text: str, limit: int) -> str:
    raw = text.encode("utf-8")[:limit]
    return raw.decode("utf-8", errors="ignore")


def _export_shapefile(
    gdf: gpd.GeoDataFrame,
    path: Path,
    *,
    force: bool,
    metadata: Mapping[str, Any] | None,
    style_qml: str | None,
) -> Path:
    _check_layer(gdf, path.stem)
    existing = [path.with_name(path.stem + s) for s in _SHP_SIDECARS]
    if any(p.exists() for p in existing) and not force:
        raise OutputExistsError(
            f"{path} (or a sidecar) already exists; pass force=True (CLI: --force) to replace it."
        )
    data = _prepare(gdf)
    attrs = [c for c in data.columns if c != data.geometry.name]
    mapping = shapefile_field_names(attrs)
    too_long = [
        c
        for c in attrs
        if data[c].dtype == object
        and max((len(str(v).encode("utf-8")) for v in data[c].dropna()), default=0) > 254
    ]
    if too_long:
        raise AggloInputError(
            f"cannot write {path.name}: text in column(s) {too_long} is longer than the 254-byte "
            "shapefile limit and would be clipped; export to GeoPackage (.gpkg) instead."
        )
    data = data.rename(columns=mapping)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        pyogrio.write_dataframe(data, tmp, driver="ESRI Shapefile", encoding="UTF-8")
        tmp.with_suffix(".cpg").write_text("UTF-8", encoding="ascii")
        meta = {**_metadata_strings(metadata or {})}
        units = (metadata or {}).get("units", {}) if isinstance(metadata, Mapping) else {}
        pd.DataFrame(
            {
                "short_name": list(mapping.values()),
                "full_name": list(mapping.keys()),
                "unit": [units.get(c, "") if isinstance(units, Mapping) else "" for c in mapping],
            }
        ).to_csv(tmpdir / f"{path.stem}.fields.csv", index=False, encoding="utf-8")
        (tmpdir / f"{path.stem}.metadata.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        if style_qml:
            tmp.with_suffix(".qml").write_text(_rename_qml_fields(style_qml, mapping), "utf-8")
        for f in tmpdir.iterdir():
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    log.info("wrote %s", path)
    return path


def _rename_qml_fields(qml: str, mapping: Mapping[str, str]) -> str:
    """Point a style's field references at the shortened shapefile names."""
    for full, short in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if full != short:
            qml = qml.replace(f'attr="{full}"', f'attr="{short}"').replace(
                f'field="{full}"', f'field="{short}"'
            )
    return qml


def _check_layer(gdf: gpd.GeoDataFrame, name: str) -> None:
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise AggloInputError(f"layer {name!r} is a {type(gdf).__name__}, not a GeoDataFrame.")
    if gdf.crs is None:
        raise AggloInputError(f"layer {name!r} has no CRS; set one before exporting.")


def _prepare(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A copy with a plain RangeIndex and types GDAL writes faithfully (bool -> int8)."""
    out = gdf.reset_index(drop=True).copy()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        if pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].astype("int8")
        elif isinstance(out[col].dtype, pd.StringDtype) or out[col].dtype == "str":
            out[col] = out[col].astype(object)
    return out


def _metadata_strings(meta: Mapping[str, Any]) -> dict[str, str]:
    """String metadata with the agglo and library versions, and no machine paths."""
    out = {"agglo_version": __version__, "library_versions": json.dumps(library_versions())}
    for k, v in meta.items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        out[str(k)] = portable(text)
    return out
