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
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from agglo._version import __version__
from agglo.errors import AggloInputError, OutputExistsError
from agglo.outputs.provenance import library_versions, portable

__all__ = [
    "MANIFEST",
    "atomic_path",
    "check_writable",
    "clean_stale_temps",
    "export",
    "export_layers",
    "read_manifest",
    "row_data_status",
    "run_folder",
    "shapefile_field_names",
    "split_years",
    "with_data_status",
    "write_csv",
    "write_run",
]

log = logging.getLogger(__name__)

_DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile"}
_SHP_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qml", ".fields.csv", ".metadata.json")
#: the manifest of a run folder, written last: files, checksums, config, versions, times, status
MANIFEST = "run.json"
# temporary siblings: ".<name>.agglo-<kind>-<pid>-<random>"; kinds: tmp (being written),
# oldshp (a shapefile set moved aside while its replacement moves in), oldrun (a run folder)
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.agglo-(?P<kind>tmp|oldshp|oldrun)-(?P<pid>\d+)-")
_DONE = ".done"
_MOVED = ".moved"


def _temp_prefix(name: str, kind: str = "tmp") -> str:
    return f".{name}.agglo-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (PermissionError), or not checkable
        return True
    return True


def clean_stale_temps(folder: str | Path) -> list[str]:
    """Remove what interrupted agglo writes left in ``folder``, restoring replaced outputs.

    Temporary files and folders of processes that are gone are deleted. A shapefile set or run
    folder that was moved aside while its replacement moved in is put back when the
    replacement did not finish (so the previous complete output is what remains), and deleted
    when it did. Called by every writer before it writes into ``folder``.

    Returns
    -------
    list of str
        What was done, one line per item (also logged).
    """
    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for entry in sorted(folder.iterdir()):
        m = _TEMP_RE.match(entry.name)
        if m is None or _alive(int(m["pid"])):
            continue
        kind, name = m["kind"], m["name"]
        finished = (entry / _DONE).exists()
        if kind == "oldshp" and not finished:
            if (entry / _MOVED).exists():  # new files may have moved in: they are incomplete
                for sidecar in _SHP_SIDECARS:
                    (folder / f"{name}{sidecar}").unlink(missing_ok=True)
            for f in entry.iterdir():
                if f.name not in (_DONE, _MOVED):
                    os.replace(f, folder / f.name)
            done.append(f"restored the previous {name}.shp (its replacement was interrupted)")
        elif kind == "oldrun" and not (folder / name).exists():
            os.replace(entry, folder / name)
            done.append(f"restored the previous run folder {name} (the swap was interrupted)")
            continue
        else:
            done.append(f"removed the stale temporary {entry.name}")
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    for line in done:
        log.warning("%s: %s", folder, line)
    return done


def check_writable(path: str | Path, *, force: bool) -> Path:
    """Raise :class:`~agglo.errors.OutputExistsError` if ``path`` exists and ``force`` is false."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give a file name for this output.")
    if path.exists() and not force:
        raise OutputExistsError(
            f"{path} already exists; pass force=True (CLI: --force) to replace it, "
            "or choose another output path."
        )
    _check_parent_writable(path, fix="choose another path")
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
    clean_stale_temps(path.parent)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_temp_prefix(path.name), suffix=path.suffix, dir=path.parent
    )
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
    clean_stale_temps(path.parent)
    tmpdir = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.stem), dir=path.parent))
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
        _swap_shapefile_set(tmpdir, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    log.info("wrote %s", path)
    return path


def _swap_shapefile_set(new: Path, path: Path) -> None:
    """Replace the sidecars of ``path`` by the files in ``new`` as a unit.

    The old set is moved aside first; if the process dies before the new set is complete,
    :func:`clean_stale_temps` puts the old set back, so a reader never meets a new ``.dbf``
    beside an old ``.shx``.
    """
    old = [
        path.with_name(path.stem + s)
        for s in _SHP_SIDECARS
        if path.with_name(path.stem + s).exists()
    ]
    backup = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.stem, "oldshp"), dir=path.parent))
    try:
        for f in old:
            os.replace(f, backup / f.name)
        (backup / _MOVED).touch()
        for f in sorted(new.iterdir()):
            os.replace(f, path.parent / f.name)
        (backup / _DONE).touch()
    except BaseException:  # put the old set back before reporting the error
        if (backup / _MOVED).exists():
            for sidecar in _SHP_SIDECARS:
                path.with_name(path.stem + sidecar).unlink(missing_ok=True)
        for f in backup.iterdir():
            if f.name not in (_DONE, _MOVED):
                os.replace(f, path.parent / f.name)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)


# -- run folders -------------------------------------------------------------------------------
#: layers that also get a shapefile copy (counties are large; GeoPackage only)
SHAPEFILE_LAYERS = ("cities", "agglomerations", "core_periphery", "metro_areas", "isochrones")
#: long layers (one row per city and year) written as one layer per year, ``lisa_2020`` ..., so
#: the years do not stack on top of each other in QGIS; the CSV table keeps every year
PER_YEAR_LAYERS = ("lisa",)


def split_years(
    layers: Mapping[str, gpd.GeoDataFrame],
    metadata: Mapping[str, Any],
    styles: Mapping[str, str],
    names: Iterable[str] = PER_YEAR_LAYERS,
) -> tuple[dict, dict, dict]:
    """Layers, metadata and styles with each multi-year layer of ``names`` split by ``year``.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame({"year": [2010, 2020]}, geometry=[shapely.Point(0, 0)] * 2)
    >>> lay, meta, sty = split_years({"lisa": g}, {"lisa": {}}, {"lisa": "<qgis/>"})
    >>> sorted(lay), meta["lisa_2020"]["year"], sty["lisa_2010"]
    (['lisa_2010', 'lisa_2020'], 2020, '<qgis/>')
    """
    layers, metadata, styles = dict(layers), dict(metadata), dict(styles)
    for name in names:
        gdf = layers.get(name)
        if gdf is None or "year" not in gdf or gdf["year"].nunique() < 2:
            continue
        del layers[name]
        meta, style = metadata.pop(name, {}), styles.pop(name, None)
        for year, part in gdf.groupby("year", sort=True):
            key = f"{name}_{int(year)}"
            layers[key] = part.reset_index(drop=True)
            metadata[key] = {**meta, "year": int(year)}
            if style is not None:
                styles[key] = style
    return layers, metadata, styles


@dataclass(frozen=True)
class RunFiles:
    """What :func:`write_run` wrote."""

    geopackage: Path | None
    layers: tuple[str, ...]
    shapefiles: tuple[Path, ...]
    tables: tuple[Path, ...]

    def summary_lines(self) -> list[str]:
        """One line: layers and tables written."""
        return [
            f"Wrote {len(self.layers)} layer(s) to {self.geopackage} and "
            f"{len(self.tables)} table(s)"
        ]


def write_run(
    out_dir: str | Path,
    layers: Mapping[str, gpd.GeoDataFrame],
    tables: Mapping[str, pd.DataFrame],
    *,
    data_status: str = "real",
    metadata: Mapping[str, Any] | None = None,
    layer_metadata: Mapping[str, Mapping[str, Any]] | None = None,
    styles: Mapping[str, str] | None = None,
    shapefile_layers: Iterable[str] = SHAPEFILE_LAYERS,
    per_year_layers: Iterable[str] = PER_YEAR_LAYERS,
    force: bool = False,
) -> RunFiles:
    """Write a run's layers and tables: ``agglo.gpkg``, ``shp/<layer>.shp``, ``tables/<name>.csv``.

    Every layer and table gets a ``data_status`` column. A row with a ``provenance`` label
    gets its own status (:func:`row_data_status`): ``synthetic`` when every value behind it
    is synthetic, ``partly synthetic`` when some are, otherwise the statuses of its labels
    (``real``, ``real+interpolated``, ...; other ``*_provenance`` columns of the row count
    too). Tables and layers without per-row provenance get
    the run's ``data_status``; a table's own ``data_status`` column is kept. Every
    layer's metadata holds ``data_status``, the agglo version, ``metadata`` and its own
    ``layer_metadata``; the GeoPackage stores the QGIS ``styles`` (``layer_styles`` table) and
    each shapefile gets its ``.qml``. Layers of ``per_year_layers`` are written one per year
    (:func:`split_years`); the layers of ``shapefile_layers`` also as shapefiles.

    Parameters
    ----------
    out_dir
        Run folder (created if absent).
    layers, tables
        Name -> GeoDataFrame / DataFrame.
    data_status
        ``"real"`` or ``"synthetic"`` (any synthetic input makes the run synthetic).
    metadata
        Stored with every layer (config, provenance, synthetic inputs).
    layer_metadata, styles
        Per layer: metadata (description, units) and QML style.
    force
        Replace existing files.

    Examples
    --------
    >>> import tempfile, pathlib, shapely
    >>> g = gpd.GeoDataFrame({"adcode": ["1"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    >>> files = write_run(pathlib.Path(tempfile.mkdtemp()), {"cities": g}, {"t": pd.DataFrame({"x": [1]})})
    >>> files.layers, [p.name for p in files.shapefiles], [p.name for p in files.tables]
    (('cities',), ['cities.shp'], ['t.csv'])
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = {"data_status": data_status, "agglo_version": __version__, **(metadata or {})}
    layer_metadata = layer_metadata or {}
    named = {name: with_data_status(gdf, data_status) for name, gdf in layers.items()}
    meta = {name: {**common, **layer_metadata.get(name, {})} for name in named}
    named, meta, qml = split_years(named, meta, styles or {}, tuple(per_year_layers))
    gpkg = None
    if named:
        gpkg = out / "agglo.gpkg"
        export_layers(named, gpkg, force=force, metadata=meta, styles=qml)
    shapefiles = tuple(
        export(
            named[name],
            out / "shp" / f"{name}.shp",
            force=force,
            metadata=meta[name],
            style_qml=qml.get(name),
        )
        for name in shapefile_layers
        if name in named
    )
    written = tuple(
        write_csv(  # a table's own data_status (e.g. per indicator) is kept
            table if "data_status" in table else with_data_status(table, data_status),
            out / "tables" / f"{name}.csv",
            force=force,
        )
        for name, table in tables.items()
    )
    return RunFiles(gpkg, tuple(named), shapefiles, written)


def row_data_status(provenance: pd.Series) -> pd.Series:
    """``data_status`` of each row from its ``provenance`` labels (``"; "``-joined).

    ``synthetic`` (every label synthetic), ``partly synthetic`` (some), else the labels'
    statuses joined (``real``, ``real+interpolated``, ``computed``, ...; see
    :func:`agglo.io.panel.joined_status`).

    Examples
    --------
    >>> labels = pd.Series(["real:census-2020", "real:census-2020; synthetic", "synthetic",
    ...                     "interpolated:census-2010-2020; real:railways"])
    >>> row_data_status(labels).tolist()
    ['real', 'partly synthetic', 'synthetic', 'real+interpolated']
    """
    from agglo.io.panel import joined_status

    def one(text: str) -> str:
        status = joined_status([x for x in str(text).split("; ") if x])
        if status == "synthetic":
            return status
        return "partly synthetic" if "synthetic" in status.split("+") else status

    by_text = {t: one(t) for t in provenance.astype(str).unique()}
    return provenance.astype(str).map(by_text)


def with_data_status(table: pd.DataFrame, run_status: str) -> pd.DataFrame:
    """``table`` with ``data_status``: per row from ``provenance`` if it has one, else the run's.

    Used for every table and layer ``agglo run`` and the stage commands write.

    Other ``*_provenance`` columns of the row (e.g. the cities layer's ``score_provenance``
    of the scores joined to the polygons) count too.
    """
    if "provenance" in table and len(table):
        extra = [c for c in table.columns if str(c).endswith("_provenance")]
        labels = table["provenance"].astype(str)
        for col in extra:
            more = table[col].where(table[col].notna(), "").astype(str)
            labels = labels.where(more == "", labels + "; " + more)
        return table.assign(data_status=row_data_status(labels).to_numpy())
    return table.assign(data_status=run_status)


@contextlib.contextmanager
def run_folder(
    out: str | Path,
    *,
    force: bool = False,
    config: Mapping[str, Any] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> Iterator[Path]:
    """Write a whole run folder as a unit: yield a sibling folder, then swap it into ``out``.

    The staging folder starts with a ``run.json`` whose status is ``"running"``; on success the
    manifest is rewritten last (every file with its size and SHA-256, the config, library
    versions, start and end time, status ``"complete"``) and the folders are swapped with two
    renames. On an error the staging folder is removed and ``out`` is untouched; after a kill,
    the next run removes the leftovers (:func:`clean_stale_temps`).

    Parameters
    ----------
    out
        The run folder. If it exists it must be an agglo run folder (``run.json`` or
        ``agglo.gpkg`` inside) or empty; replacing a non-empty one needs ``force``.
    force
        Replace an existing run folder (as a whole).
    config
        JSON-serialisable configuration recorded in the manifest.
    annotations
        More JSON-serialisable entries of the final manifest (e.g. ``data_status`` and
        ``synthetic_inputs``), read when the ``with`` block ends: the caller may fill a dict
        it passed while the run is written.

    Raises
    ------
    OutputExistsError
        ``out`` is a file, is not empty without ``force``, or holds files agglo did not write.
    AggloInputError
        The parent folder is not writable.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with run_folder(out) as tmp:
    ...     _ = (tmp / "a.csv").write_text("x")
    >>> m = read_manifest(out)
    >>> m["status"], [f["path"] for f in m["files"]]
    ('complete', ['a.csv'])
    """
    out = Path(out)
    check_run_folder(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(out.name), dir=out.parent))
    manifest: dict[str, Any] = {
        "status": "running",
        "start": _now(),
        "end": None,
        "agglo_version": __version__,
        "versions": library_versions(),
        "config": dict(config or {}),
        "files": [],
    }
    try:
        _write_json(staging / MANIFEST, manifest)
        yield staging
        manifest.update(dict(annotations or {}))
        manifest.update(status="complete", end=_now(), files=_checksums(staging))
        _write_json(staging / MANIFEST, manifest)
        _swap_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote run folder %s (%d files)", out, len(manifest["files"]))


def check_run_folder(out: str | Path, *, force: bool) -> Path:
    """Raise unless ``out`` can receive (or be replaced by) a run folder; see :func:`run_folder`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file, not a folder; choose a folder name.")
    entries = (
        sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    )
    if entries and not force:
        raise OutputExistsError(
            f"output folder {out} is not empty; pass --force to replace it or choose another --out."
        )
    if entries and MANIFEST not in entries and "agglo.gpkg" not in entries:
        raise OutputExistsError(
            f"output folder {out} holds files agglo did not write ({', '.join(entries[:5])}); "
            "--force replaces the whole folder, so choose an empty or new --out."
        )
    _check_parent_writable(out, fix="choose another --out")
    return out


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The ``run.json`` manifest of a run folder (``{}`` if there is none)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _swap_folder(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(out.name, "oldrun"), dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    os.replace(staging, out)  # a kill between the two renames: clean_stale_temps restores old
    shutil.rmtree(old, ignore_errors=True)


def _checksums(folder: Path) -> list[dict[str, Any]]:
    files = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        rel = f.relative_to(folder).as_posix()
        files.append({"path": rel, "bytes": f.stat().st_size, "sha256": digest.hexdigest()})
    return files


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


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


def _check_parent_writable(path: Path, *, fix: str) -> None:
    """Refuse ``path`` when its nearest existing ancestor is a file or not writable."""
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise AggloInputError(f"cannot write {path}: {probe} is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise AggloInputError(f"cannot write into {probe} (permission denied); {fix}.")
