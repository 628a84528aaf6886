"""PM2.5 rasters to polygon means (DESIGN.md "Spatial measures").

The expensive part of zonal statistics is finding, for every polygon, which grid cells it
covers and by how much. :func:`zonal_pm25` does that once per polygon set and grid (exact
coverage fractions from ``exactextract``), stores it as a sparse polygons x cells matrix of
weights, and then each year is one gather of the used cells (read in chunk-row bands at the
file's dtype, at positions computed once per file layout) and one sparse matrix-vector product
(mask sums only when a year has missing cells). Years run in turn, or split across forked
processes, on local Dask threads, or on a ``dask.distributed`` cluster (``scheduler=``).

Scheduler (``scheduler=None``, chosen per raster group by data size and cores): forked
processes when >= 2 cores are usable, there are >= 2 years and each process gets >= 8 M
stored cells to read (:data:`_CELLS_PER_PROCESS`; China's counties at 0.01° read ~14 M a
year), one per core at most; otherwise the years in turn on <= 2 cores (Dask threads there
doubled kernel time and added 1 GB: NetCDF reads hold a lock) and Dask threads with more.
Departure from DESIGN.md's "years in turn / Dask threads on > 2 cores": reading a year is
mostly zlib decompression under HDF5's lock, which threads cannot share but processes can;
the forked children inherit the coverage plan (nothing pickled but each year's sums) and run
the same per-year code, so the table is identical bit for bit (:func:`_run_processes`). Not
from a daemonic process (the pipeline's side-by-side stages) nor while other threads run: the
years then run in turn. Measured (2026-12-03, 2 cores, load 1.1-1.3, ``bench_zonal.py``): 26
years 11.0 -> 7.7 s wall, 12.1 -> 12.5 CPU-s, peak 727 -> 911 MB with the child; the gain
needs an idle second core (with both busy the two processes take as long as one).

Weights (``weights=``):

- ``"area"`` (default): coverage fraction x true cell area on the WGS84 ellipsoid (cells of a
  lat/lon grid shrink with the cosine of latitude);
- ``"coverage"``: coverage fraction only (exactextract's ``mean``);
- ``"centroid"``: 1 for every cell whose centre is inside the polygon (rasterstats' default).
  A polygon containing no cell centre falls back to its covering cells weighted by coverage.

Exactness: coverage fractions are exact (exactextract, planar in lon/lat); with ``"area"`` the
covered part of a cell gets the cell's mean area density, so only cells cut by a polygon edge
across a parallel carry an error of order (cell height x tan φ) of their own weight (< 1e-4 at
0.01°). Polygons whose edges follow cell rows (and any longitudes) are exact to rounding.

Around the coverage step: the polygons' validity check (``clean_geometries``) runs in a
thread from the start (GEOS releases the GIL), in chunks, paused while the two halves of a
split coverage keep both cores busy (:class:`_ValidityCheck`). The result and warnings are held until the
check is done, and invalid polygons are repaired and computed again, so the outcome is that
of check-then-compute. With ``coverage_cache=`` the polygons are digested once (structure
and coordinates; SHA-1 in a thread while this one imports the readers),
the plan and, per file layout, the read positions come from disk (mapped, not copied), and
the very same polygons found valid before are not
checked again (see :class:`CoverageCache`).

Population weighting (``population=``) takes a raster of persons per cell on any lon/lat grid:
a finer grid is summed into the PM2.5 cells by cell centre, a coarser one is spread by area.
The weights are coverage fraction x persons of the cell.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import math
import mmap
import operator
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from agglo._cores import usable_cores
from agglo._forked import ForkedCall, ForkedError, fork_available, fork_obstacle
from agglo._validate import check_crs, check_overlap, clean_geometries
from agglo.errors import AggloDataWarning, AggloInputError, CRSError, require
from agglo.io.rasters import (
    CellIndex,
    Grid,
    Layer,
    Window,
    discover_layers,
    screen_pm25_values,
    whole_reads,
)
from agglo.options import Options, choice_problem, option
from agglo.results import StageResult

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = [
    "OUTPUT_COLUMNS",
    "WEIGHTS",
    "CoverageCache",
    "PM25Options",
    "PM25Result",
    "PM25Warning",
    "cell_area_km2",
    "city_pm25",
    "coverage_plan",
    "raster_years",
    "zonal_pm25",
]

log = logging.getLogger(__name__)

#: allowed values of ``weights``
WEIGHTS = ("area", "coverage", "centroid")
#: columns of :func:`zonal_pm25` after the id column
OUTPUT_COLUMNS = ("year", "pm25_mean", "pm25_popw", "valid_fraction", "n_cells")


@dataclass(frozen=True)
class PM25Options(Options):
    """Options of the ``pm25`` stage (``[pm25]`` section, ``agglo pm25`` flags).

    Examples
    --------
    >>> PM25Options(weights="coverage").weights
    'coverage'
    """

    section = "pm25"
    weights: str = option(
        "area",
        help="Cell weights: area (coverage x true cell area), coverage, or centroid.",
        choices=WEIGHTS,
    )
    population: str | None = option(
        None, help="Population-count raster (file or folder) for pm25_popw."
    )
    variable: str | None = option(None, help="NetCDF variable (default PM25, else the first).")
    raster_crs: str | None = option(
        None, help="CRS of rasters whose files have none, e.g. EPSG:4326."
    )
    scheduler: str | None = option(
        None,
        help="How the years run: synchronous, processes (forked, Linux), threads or a "
        "dask.distributed scheduler address (default: chosen by data size and cores).",
    )
    coverage_cache: str | None = option(
        None,
        help="Folder of an on-disk coverage cache (reused when polygons and grid are the "
        "same); default off.",
    )


def _csr(*args: Any, **kwargs: Any) -> sp.csr_matrix:
    """scipy.sparse.csr_matrix, imported on first use (its import costs ~0.12-0.2 s: a cached
    run imports it beside the polygons' digest, :func:`_digest_beside_imports`; a split
    coverage while the forked half finishes, :func:`_build_plan`)."""
    import scipy.sparse

    return scipy.sparse.csr_matrix(*args, **kwargs)


# WGS84 ellipsoid
_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_E = math.sqrt(_E2)
_B2 = _A * _A * (1 - _E2)


class PM25Warning(UserWarning):
    """Polygons without valid PM2.5 cells (their means are NaN)."""


# -- cell areas ------------------------------------------------------------------------------
def _zone(lat_deg: np.ndarray) -> np.ndarray:
    """Ellipsoidal zone function: area from the equator to ``lat`` = dlon_rad * b²/2 * q(lat)."""
    s = np.sin(np.radians(lat_deg))
    return s / (1 - _E2 * s * s) + np.log((1 + _E * s) / (1 - _E * s)) / (2 * _E)


def cell_area_km2(lat_edges: np.ndarray, dlon_deg: float) -> np.ndarray:
    """Exact area on the WGS84 ellipsoid of lat/lon cells between consecutive latitude edges.

    Parameters
    ----------
    lat_edges
        Latitude edges in degrees (any order), length n+1.
    dlon_deg
        Cell width in degrees of longitude.

    Returns
    -------
    numpy.ndarray
        n areas in km² (positive), one per band of cells.

    Examples
    --------
    >>> # the whole ellipsoid: 510,065,621.7 km² (WGS84)
    >>> round(float(cell_area_km2(np.array([-90.0, 90.0]), 360.0)[0]), 1)
    510065621.7
    >>> # a 0.01° cell shrinks (about with cos(latitude)): equator vs 60°N
    >>> a = cell_area_km2(np.array([0.0, 0.01, 60.0, 60.01]), 0.01)
    >>> round(float(a[0]), 4), round(float(a[2] / a[0]), 3)
    (1.2309, 0.505)
    """
    edges = np.asarray(lat_edges, dtype=np.float64)
    q = _zone(np.clip(edges, -90.0, 90.0))
    return np.abs(np.diff(q)) * math.radians(dlon_deg) * _B2 / 2 / 1e6


# -- coverage plan ---------------------------------------------------------------------------
@dataclass
class CoveragePlan:
    """Polygons x cells weights on one grid, computed once and reused for every year.

    Attributes
    ----------
    window
        The part of the grid's lattice that covers the polygons.
    cells
        Flat indices (in ``window``, int32) of the cells used by any polygon, sorted; only
        cells inside the grid (those outside, always missing, count only in ``total``;
        plans stored by earlier versions may hold them, and read as missing).
    weights
        CSR matrix, polygons x ``cells``: the weights of ``weights`` mode.
    mode
        The ``weights`` mode.
    row_area
        ``"area"`` mode: the area (km²) of a cell in each window row, by which coverage
        fractions were multiplied; None otherwise.
    """

    window: Window
    cells: np.ndarray
    weights: sp.csr_matrix
    mode: str
    row_area: np.ndarray | None = None
    _indices: dict = field(default_factory=dict, repr=False, compare=False)
    #: (CoverageCache, key) the plan was read from or stored in: read positions go there too
    _cache: Any = field(default=None, repr=False, compare=False)

    @property
    def n_polygons(self) -> int:
        return self.weights.shape[0]

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Window row and column of each used cell."""
        rows, cols = np.divmod(self.cells, self.window.shape[1])  # one pass for both
        return rows, cols

    @functools.cached_property
    def base(self) -> sp.csr_matrix:
        """Same pattern as ``weights``: coverage fractions (or centroid indicators), used for
        population weighting (in ``"area"`` mode the weights divided by the cell areas,
        computed on first use and not kept in the plan's memory otherwise)."""
        if self.row_area is None:
            return self.weights
        w = self.weights
        area = self.row_area[self.cells // self.window.shape[1]]
        return _csr((w.data / area[w.indices], w.indices, w.indptr), shape=w.shape)

    @functools.cached_property
    def binary(self) -> sp.csr_matrix:
        """1 where a polygon has weight on a cell (counts cells with data), float32: counts
        are exact integers below 2**24 cells per polygon."""
        w = self.weights
        ones = np.ones(w.nnz, dtype=np.float32)
        return _csr((ones, w.indices, w.indptr), shape=w.shape)

    def valid_sums(
        self, index: CellIndex, scratch: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Weight and number of cells of each polygon inside the grid of ``index`` (the
        ``den`` and ``n`` of a year whose cells inside the grid are all valid), once each.

        ``scratch``: a float64 array of one value per cell that may be overwritten (saves
        allocating one)."""
        key = ("valid_sums", index.layout)
        if key not in self._indices:
            w = self.weights
            # the scratch values are written in place: no new array of one value per cell
            # (its page faults cost more than the mat-vec)
            x = np.empty(w.shape[1]) if scratch is None else scratch
            if index.inside is None:
                x.fill(1.0)
                den = w @ x
                n = np.diff(w.indptr).astype(np.float64)
            else:
                np.copyto(x, index.inside)
                den = w @ x
                # cells per polygon inside the grid: exact integer counts (as binary @ mask)
                # from a running count over the pattern, without a matrix of ones
                run = np.zeros(w.nnz + 1, dtype=np.int32 if w.nnz < 2**31 else np.int64)
                np.cumsum(index.inside[w.indices], out=run[1:])
                n = (run[w.indptr[1:]] - run[w.indptr[:-1]]).astype(np.float64)
            self._indices[key] = (den, n)
        return self._indices[key]

    @functools.cached_property
    def total(self) -> np.ndarray:
        """Each polygon's total weight."""
        return np.asarray(self.weights.sum(axis=1)).ravel()

    def cell_index(self, layer: Layer) -> CellIndex:
        """Where the used cells are in ``layer``'s stored blocks (built once per layout)."""
        key = layer.layout
        if key in self._indices:
            return self._indices[key]
        stored = None
        if self._cache is not None:
            cache, entry = self._cache
            stored = cache.load_index(entry, key, self.cells.size)
        if stored is not None:
            index, self._indices[("valid_sums", key)] = stored
        else:
            rows, cols = self.rows_cols()
            rows += self.window.r0  # in place: grid rows and columns
            cols += self.window.c0
            index = layer.cell_index(rows, cols, overwrite=True)
            del rows, cols
            if self._cache is not None:
                cache.save_index(entry, index, self.valid_sums(index))
        self._indices[key] = index
        return index

    def __getstate__(self) -> dict:
        # ship the weights and totals only (workers build their own indices; base derives
        # from weights; total is kept: it includes cells outside the grid, not in weights)
        state = dict(self.__dict__)
        for derived in ("base", "binary"):
            state.pop(derived, None)
        state["_indices"] = {}
        state["_cache"] = None
        return state


class CoverageCache:
    """On-disk store of coverage plans, keyed by the polygons, the grid and the weights mode.

    The caller creates and owns it (there is no hidden module-level cache): pass the same
    object, or one on the same folder, to :func:`coverage_plan` / :func:`zonal_pm25` and a
    second run on the same polygons and grid reads the sparse weights from disk instead of
    computing coverage again. The key is a SHA-1 of the polygons' digest (their structure and
    coordinates in order, :meth:`polygons_digest`; earlier versions hashed the grid into the
    digest's own stream, so their entries are not found and are computed again), the grid's
    identity (:meth:`Grid.key`: origin, cell size, shape, CRS) and the weights mode, so any
    change to a vertex, the order, the grid or the mode is a different entry.

    Besides the plan (``coverage-<key>.plan``) the folder holds, per file layout, where the
    plan's cells sit in the stored blocks and the mask sums of the cells inside the grid
    (``coverage-<key>-<layout>.index``, see :meth:`Layer.cell_index`), and an empty
    ``validated-<digest>`` marker for polygon sets that :func:`zonal_pm25` found valid (a
    second run on the very same polygons skips the validity check; invalid ones get no
    marker, so they are reported every run). Entries are raw arrays with a JSON header and a
    CRC-32 per array (no zip), format :attr:`FORMAT`, written atomically (a temporary file
    renamed into place). An entry of another format (the unversioned ``.npz`` of earlier
    releases, or another version) is computed again and replaced, with a log line. Delete the
    folder to clear it.

    Parameters
    ----------
    folder
        Directory of the entries (created when needed).

    Examples
    --------
    >>> import tempfile, geopandas as gpd, shapely
    >>> cache = CoverageCache(tempfile.mkdtemp())
    >>> g = Grid(west=100, north=30, dx=1, dy=1, nx=4, ny=3)
    >>> polys = gpd.GeoSeries([shapely.box(100.5, 28, 101, 30)], crs=4326)
    >>> a = coverage_plan(polys, g, weights="coverage", cache=cache)
    >>> b = coverage_plan(polys, g, weights="coverage", cache=cache)  # read from disk
    >>> b.base.toarray().round(2).tolist(), len(list(cache.folder.glob("*.plan")))
    ([[0.5, 0.5]], 1)
    """

    #: version of the entries' layout; entries of another version are recomputed
    FORMAT: ClassVar[int] = 2
    _MAGIC: ClassVar[bytes] = b"AGGLOCOV"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def polygons_digest(geoms: np.ndarray) -> Any:
        """SHA-1 state over the polygons' structure and coordinates.

        Hashes, per geometry, its type and number of parts, per part its number of rings,
        per ring its number of vertices, then every coordinate (float64; z when any has one).
        That determines the geometries as WKB would, without serialising them (WKB is built
        only when exactextract needs it, on a cache miss). China's 4 M county vertices: ~0.1 s
        (0.05 s of it SHA-1, which :func:`zonal_pm25` runs in a thread beside its imports).
        """
        digest = hashlib.sha1(b"agglo-polygons-v2")
        for a in _digest_arrays(geoms):
            digest.update(memoryview(a).cast("B"))  # no copy
        return digest

    @staticmethod
    def key(geoms: np.ndarray, grid: Grid, weights: str, *, digest: Any = None) -> str:
        """Key of ``geoms`` on ``grid`` in ``weights`` mode (``digest``: the precomputed
        :meth:`polygons_digest` of ``geoms``, which is then not hashed again)."""
        if digest is None:
            digest = CoverageCache.polygons_digest(geoms)
        text = f"agglo-coverage-key-v3 {_hex(digest)} {(grid.key(), weights)!r}"
        return hashlib.sha1(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / f"coverage-{key}.plan"

    def _index_path(self, key: str, layout: tuple) -> Path:
        return (
            self.folder
            / f"coverage-{key}-{hashlib.sha1(repr(layout).encode()).hexdigest()[:16]}.index"
        )

    # -- validity markers ---------------------------------------------------------------------
    def _marker(self, digest: Any) -> Path:
        # the check's outcome also depends on GEOS and on this format's rules
        tag = hashlib.sha1(
            f"{_hex(digest)} {shapely.geos_version_string} {self.FORMAT}".encode()
        ).hexdigest()
        return self.folder / f"validated-{tag}"

    def is_validated(self, digest: Any) -> bool:
        """Whether polygons of this :meth:`polygons_digest` were all found valid before."""
        return self._marker(digest).exists()

    def mark_validated(self, digest: Any) -> None:
        """Record that polygons of this :meth:`polygons_digest` are all valid."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._marker(digest).touch()

    # -- raw array files ----------------------------------------------------------------------
    def _write(self, path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        table, offset = [], 0
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        for name, a in arrays.items():
            crc = zlib.crc32(memoryview(a).cast("B")) if a.nbytes else 0
            table.append([name, a.dtype.str, list(a.shape), offset, a.nbytes, crc])
            offset += -(-a.nbytes // 64) * 64
        head = json.dumps({"format": self.FORMAT, "meta": meta, "arrays": table}).encode()
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(self._MAGIC + struct.pack("<Q", len(head)) + head)
            base = -(-f.tell() // 64) * 64
            for (_, _, _, off, _, _), a in zip(table, arrays.values(), strict=True):
                f.seek(base + off)
                f.write(memoryview(a).cast("B"))
        os.replace(tmp, path)

    def _read(self, path: Path) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(meta, arrays) of an entry, None when it has another format (logged); raises
        ValueError/OSError when it is damaged."""
        with open(path, "rb") as f:
            magic = f.read(len(self._MAGIC))
            if magic != self._MAGIC:
                raise ValueError("not a coverage cache entry")
            (n,) = struct.unpack("<Q", f.read(8))
            head = json.loads(f.read(n))
            if head.get("format") != self.FORMAT:
                log.info(
                    "coverage cache entry %s has format %s, not %s: computing it again",
                    path,
                    head.get("format"),
                    self.FORMAT,
                )
                return None
            base = -(-(len(self._MAGIC) + 8 + n) // 64) * 64
            size = os.fstat(f.fileno()).st_size
            # POSIX: the arrays are private (copy-on-write) mappings of the file, not copies
            # read into new memory (entries are replaced by renaming, never rewritten in place)
            mapped = (
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
                if os.name == "posix" and size > base
                else None
            )
            arrays = {}
            for name, dtype, shape, off, nbytes, crc in head["arrays"]:
                dt = np.dtype(dtype)
                if nbytes != math.prod(shape) * dt.itemsize or base + off + nbytes > size:
                    raise ValueError(f"array {name} is truncated or damaged")
                if mapped is not None and nbytes:
                    a = np.frombuffer(mapped, dt, math.prod(shape), base + off).reshape(shape)
                    buf = memoryview(a).cast("B")
                else:
                    a = np.empty(shape, dtype=dt)
                    f.seek(base + off)
                    buf = memoryview(a).cast("B") if nbytes else memoryview(b"")
                    if nbytes and f.readinto(buf) != nbytes:
                        raise ValueError(f"array {name} is truncated or damaged")
                if nbytes and zlib.crc32(buf) != crc:
                    raise ValueError(f"array {name} is truncated or damaged")
                arrays[name] = a
        return head["meta"], arrays

    def _load_entry(self, path: Path, build: Callable[[dict, dict], Any], redo: str) -> Any:
        """``build(meta, arrays)`` of the entry at ``path``; None when it is of another format
        (or ``build`` refuses it), or unreadable (warned: ``redo`` says what happens instead)."""
        try:
            got = self._read(path)
            return None if got is None else build(*got)
        except (OSError, ValueError, KeyError, TypeError, EOFError, struct.error) as exc:
            warnings.warn(
                f"coverage cache entry {path} is unreadable ({exc}); {redo}.",
                PM25Warning,
                stacklevel=4,  # the caller of load / load_index's caller, as before
            )
            return None

    # -- plans --------------------------------------------------------------------------------
    def load(self, key: str, grid: Grid) -> CoveragePlan | None:
        """The stored plan of ``key`` on ``grid``, or None when absent, of another format or
        unreadable (warned)."""
        path = self._path(key)
        if not path.exists():
            old = self.folder / f"coverage-{key}.npz"
            if old.exists():
                log.info(
                    "coverage cache entry %s has the old format (no version): computing "
                    "coverage again and replacing it",
                    old,
                )
            return None

        def plan_of(meta: dict, z: dict) -> CoveragePlan:
            n, k = meta["shape"]
            weights = _csr((z["weights"], z["indices"], z["indptr"]), shape=(n, k))
            r0, r1, c0, c1 = meta["window"]
            mode = str(meta["mode"])
            plan = CoveragePlan(
                window=Window(grid, r0, r1, c0, c1),
                cells=z["cells"],
                weights=weights,
                mode=mode,
                row_area=z["row_area"] if mode == "area" else None,
            )
            plan.__dict__["total"] = z["total"]
            return plan

        plan = self._load_entry(path, plan_of, "computing coverage again and replacing it")
        if plan is None:
            return None
        plan._cache = (self, key)
        log.info("coverage plan read from the cache %s", path)
        return plan

    def save(self, key: str, plan: CoveragePlan) -> None:
        """Store ``plan`` under ``key`` (atomically: a temporary file renamed into place)."""
        w = plan.window
        arrays = {
            "indices": plan.weights.indices,
            "indptr": plan.weights.indptr,
            "weights": plan.weights.data,
            "cells": plan.cells,
            "total": plan.total,
        }
        if plan.row_area is not None:
            arrays["row_area"] = plan.row_area
        meta = {
            "shape": [int(v) for v in plan.weights.shape],
            "window": [w.r0, w.r1, w.c0, w.c1],
            "mode": plan.mode,
        }
        self._write(self._path(key), meta, arrays)
        with contextlib.suppress(OSError):  # an old-format entry of this key is replaced
            (self.folder / f"coverage-{key}.npz").unlink(missing_ok=True)
        plan._cache = (self, key)

    # -- read positions -----------------------------------------------------------------------
    def load_index(self, key: str, layout: tuple, n_cells: int) -> tuple[CellIndex, tuple] | None:
        """The stored cell index (of a plan of ``n_cells`` cells) and the weight and cell
        count of each polygon inside the grid (:meth:`CoveragePlan.valid_sums`) on
        ``layout``, or None."""
        path = self._index_path(key, layout)
        if not path.exists():
            return None

        def index_of(meta: dict, z: dict) -> tuple[CellIndex, tuple] | None:
            if meta["layout"] != repr(layout):
                return None
            index = CellIndex.from_arrays(z, layout)
            sums = (z["valid_den"], z["valid_n"])
            if index.n != n_cells or sums[0].shape != sums[1].shape:
                raise ValueError("its cells are not the plan's")
            return index, sums

        return self._load_entry(path, index_of, "computing it again")

    def save_index(self, key: str, index: CellIndex, sums: tuple) -> None:
        arrays = {**index.to_arrays(), "valid_den": sums[0], "valid_n": sums[1]}
        self._write(self._index_path(key, index.layout), {"layout": repr(index.layout)}, arrays)


def _hex(digest: Any) -> str:
    """A :meth:`CoverageCache.polygons_digest` (or its hex) as hex."""
    return digest if isinstance(digest, str) else digest.hexdigest()


def _digest_arrays(geoms: np.ndarray) -> list[np.ndarray]:
    """The arrays :meth:`CoverageCache.polygons_digest` hashes, in order."""
    types = shapely.get_type_id(geoms).astype(np.int64)  # -1: missing
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    has_z = bool(shapely.has_z(geoms[types >= 0]).any()) if (types >= 0).any() else False
    rings_per_part, coords_per_ring = _ring_structure(parts)
    return [
        np.array([len(geoms), int(has_z)], np.int64),
        types,
        np.bincount(part_of, minlength=len(geoms)).astype(np.int64),
        rings_per_part,
        coords_per_ring,
        np.ascontiguousarray(shapely.get_coordinates(geoms, include_z=has_z)),
    ]


def _ring_structure(parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rings of each of ``parts`` and vertices of each ring, in order (int64): the same as
    ``np.bincount(ring_of, minlength=len(parts))`` and ``shapely.get_num_coordinates(rings)``
    of ``rings, ring_of = shapely.get_rings(parts, return_index=True)``, without copying
    the rings of the parts that are non-empty polygons without holes (one ring holding all
    their vertices; shapely's rings are copies of GEOS's, ~0.08 s for China's counties)."""
    simple = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    simple &= shapely.get_num_interior_rings(parts) == 0
    other = np.flatnonzero(~simple)
    rings, ring_of = shapely.get_rings(parts[other], return_index=True)
    per_part = np.ones(len(parts), dtype=np.int64)
    per_part[other] = np.bincount(ring_of, minlength=other.size)
    first = np.cumsum(per_part) - per_part  # each part's first ring
    coords = np.empty(int(per_part.sum()), dtype=np.int64)
    of_simple = np.zeros(coords.size, dtype=bool)
    of_simple[first[simple]] = True
    coords[of_simple] = shapely.get_num_coordinates(parts[simple])
    coords[~of_simple] = shapely.get_num_coordinates(rings)
    return per_part, coords


def _digest_beside_imports(geoms: np.ndarray) -> Any:
    """:meth:`CoverageCache.polygons_digest` of ``geoms``, hashed in a thread (SHA-1 releases
    the GIL) while this one imports what a cached run needs next (:func:`_import_readers`).

    The thread touches nothing but the hash and the arrays, and is joined before returning
    (a fork later on sees no other thread)."""
    arrays = _digest_arrays(geoms)
    digest = hashlib.sha1(b"agglo-polygons-v2")

    def hash_all() -> None:
        for a in arrays:
            digest.update(memoryview(a).cast("B"))

    thread = threading.Thread(target=hash_all, name="agglo-digest", daemon=True)
    thread.start()
    try:
        _import_readers()
    finally:
        thread.join()
    return digest


def coverage_plan(
    polygons: gpd.GeoSeries,
    grid: Grid,
    *,
    weights: str = "area",
    progress: bool = False,
    cache: CoverageCache | None = None,
) -> CoveragePlan:
    """Coverage of every polygon on ``grid`` as a sparse weights matrix.

    Parameters
    ----------
    polygons
        Polygons in the grid's CRS (longitudes already on the grid's convention).
    grid
        The raster grid.
    weights
        One of :data:`WEIGHTS`.
    progress
        Show exactextract's progress bar.
    cache
        A :class:`CoverageCache`: the plan is read from it when stored, else computed and
        stored. None (default): always computed.

    Returns
    -------
    CoveragePlan

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = Grid(west=100, north=30, dx=1, dy=1, nx=4, ny=3)
    >>> plan = coverage_plan(gpd.GeoSeries([shapely.box(100.5, 28, 101, 30)], crs=4326), g,
    ...                      weights="coverage")
    >>> plan.base.toarray().round(2).tolist()  # two half-covered cells
    [[0.5, 0.5]]
    """
    if problem := choice_problem("weights", weights, WEIGHTS):
        raise AggloInputError(problem)
    geoms = np.asarray(polygons.values, dtype=object)
    return _coverage_plan(geoms, grid, weights=weights, progress=progress, cache=cache)


def _coverage_plan(
    geoms: np.ndarray,
    grid: Grid,
    *,
    weights: str,
    progress: bool,
    cache: CoverageCache | None,
    wkb: np.ndarray | None = None,
    digest: Any = None,
    side_work: Any = None,
) -> CoveragePlan:
    """:func:`coverage_plan` given the polygons' WKB and its digest when known (computed
    once per run: they key the cache and feed exactextract); ``side_work``: see
    :func:`_build_plan`."""
    if cache is not None:
        if digest is None:
            digest = CoverageCache.polygons_digest(geoms)
        key = CoverageCache.key(geoms, grid, weights, digest=digest)
        if (plan := cache.load(key, grid)) is not None:
            return plan
    plan = _build_plan(
        geoms, grid, weights=weights, progress=progress, wkb=wkb, side_work=side_work
    )
    if cache is not None:
        cache.save(key, plan)
    return plan


def _wkb_source(geoms: np.ndarray, srs_wkt: str, wkb: np.ndarray | None = None) -> Any:
    """An exactextract feature source handing over WKB directly.

    exactextract's GeoPandas source serialises every geometry to GeoJSON text through Python
    (seconds for the 4 M vertices of China's counties); WKB from shapely is a single call.
    """
    from exactextract._exactextract import Feature
    from exactextract.feature import FeatureSource

    class _WKBFeature(Feature):
        def __init__(self, wkb: bytes, fid: int) -> None:
            Feature.__init__(self)
            self._wkb = wkb
            self._fid = fid

        def geometry(self) -> bytes:
            return self._wkb

        def set_geometry_format(self) -> str:
            return "wkb"

        def get(self, name: str) -> int:
            return self._fid

        def fields(self) -> list[str]:
            return []

    class _WKBSource(FeatureSource):
        def __init__(self) -> None:
            super().__init__()
            self._wkbs = shapely.to_wkb(geoms) if wkb is None else wkb

        def count(self) -> int:
            return len(self._wkbs)

        def __iter__(self) -> Any:
            for i, w in enumerate(self._wkbs):
                yield _WKBFeature(bytes(w), i)

        def srs_wkt(self) -> str:
            return srs_wkt

    return _WKBSource()


def _build_plan(
    geoms: np.ndarray,
    grid: Grid,
    *,
    weights: str,
    progress: bool,
    wkb: np.ndarray | None = None,
    side_work: Any = None,
) -> CoveragePlan:
    """The plan of ``geoms`` on ``grid`` from exactextract's coverage, in this process or
    split across two (:func:`_split_point`). ``side_work`` (zonal_pm25's validity check
    thread, :class:`_ValidityCheck`) is paused while the split's halves keep both cores
    busy, and runs beside exactextract otherwise."""
    from exactextract.raster import NumPyRasterSource

    n = len(geoms)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if present.any():
        bounds = shapely.total_bounds(geoms[present])
    else:
        bounds = (grid.west, grid.south, grid.west + grid.dx, grid.south + grid.dy)
    window = grid.window(tuple(bounds), margin=1)
    nrow, ncol = window.shape
    xmin, ymin, xmax, ymax = window.bounds
    crs_wkt = CRS.from_user_input(grid.crs).to_wkt()
    # a virtual raster: exactextract only needs the grid to compute cell ids and coverage
    src = NumPyRasterSource(
        np.broadcast_to(np.zeros(1, dtype=np.float32), (nrow, ncol)),
        xmin,
        ymin,
        xmax,
        ymax,
        srs_wkt=crs_wkt,
    )
    idx = np.flatnonzero(present)
    counts = np.zeros(n, dtype=np.int64)
    ci_parts, cv_parts = [np.zeros(0, np.int32)], [np.zeros(0)]
    row_area = None
    if weights == "area":
        if not grid.is_geographic:
            row_area = np.full(nrow, _projected_cell_area(grid))
        else:
            row_area = cell_area_km2(window.row_edges(), grid.dx)
    # "area": coverage fractions x the area of the cell's row, applied by _exact_pairs to
    # each half where it is computed
    scale = None if row_area is None else (row_area, ncol)
    if idx.size:
        sub = None if wkb is None else wkb[idx]
        parts = _split_point(geoms[idx], grid)
        if parts is None:
            bound = min(_pairs_bound(geoms[idx], grid), _PAIRS_BUFFER_MAX)
            own = _PairBuffers(bound, shared=False) if bound > 0 else None
            out = None if own is None else own.part(0, own.size)
            c, ci, cv = _exact_pairs(src, geoms[idx], crs_wkt, sub, progress, scale=scale, out=out)
            if own is not None and own.holds(ci):
                ci, cv = own.exact(ci.size)
            del own, out
        else:  # two halves side by side: the first in a forked child, the second here
            first, second = geoms[idx[:parts]], geoms[idx[parts:]]
            # one shared mapping for both halves: the child's pairs from its start, this
            # process's after the child's bound, moved down next to the child's afterwards
            # (one array of pairs for the matrix, no concatenated copy)
            b1, b2 = (min(_pairs_bound(g, grid), _PAIRS_BUFFER_MAX) for g in (first, second))
            shared = _PairBuffers(b1 + b2 if b1 and b2 else b1, shared=True)
            if side_work is not None:
                side_work.pause()
            try:
                half = ForkedCall.start(
                    _exact_pairs_into,
                    shared.part(0, b1),
                    src,
                    first,
                    crs_wkt,
                    None if sub is None else sub[:parts],
                    scale,
                    name="coverage (first half)",
                )
                try:
                    c2, ci2, cv2 = _exact_pairs(
                        src,
                        second,
                        crs_wkt,
                        None if sub is None else sub[parts:],
                        False,
                        scale=scale,
                        out=shared.part(b1, shared.size) if b2 else None,
                    )
                except BaseException:
                    half.kill()
                    raise
                # this half is done: while the child finishes, this core takes the side work
                # and the import the matrices need next (off the critical path when the
                # child is the slower half)
                if side_work is not None:
                    side_work.resume()
                import scipy.sparse  # noqa: F401

                got = half.result()
            finally:
                if side_work is not None:
                    side_work.resume()
            counts[idx[:parts]], counts[idx[parts:]] = got[0], c2
            if len(got) == 2 and shared.holds(ci2):  # both halves in the shared mapping
                ci, cv = shared.join(got[1], b1, ci2.size)
                ci_parts, cv_parts = [ci], [cv]
                del ci, cv
            elif len(got) == 2:  # the child's pairs are shared, this process's did not fit
                k = got[1]
                ci_parts, cv_parts = [shared.ci[:k], ci2], [shared.cv[:k], cv2]
            else:  # more pairs than the bound: sent back through the pipe
                ci_parts, cv_parts = [got[1], ci2], [got[2], cv2]
            del shared, got, c2, ci2, cv2
        if parts is None:
            counts[idx] = c
            ci_parts, cv_parts = [ci], [cv]
            del c, ci, cv
    if weights == "centroid":
        ci = np.concatenate(ci_parts) if len(ci_parts) > 1 else ci_parts[0]
        cv = np.concatenate(cv_parts) if len(cv_parts) > 1 else cv_parts[0]
        pi = np.repeat(np.arange(n, dtype=np.int64), counts)  # polygon of each pair, in order
        cv = _centroid_weights(geoms, pi, ci, cv, window)
        keep = cv > 0
        counts = np.bincount(pi[keep], minlength=n)
        ci_parts, cv_parts = [ci[keep]], [cv[keep]]
        del pi, keep, ci, cv
    w, cells, total = _compress(ci_parts, cv_parts, counts, window)
    del ci_parts, cv_parts
    plan = CoveragePlan(window=window, cells=cells, weights=w, mode=weights, row_area=row_area)
    if total is not None:
        plan.__dict__["total"] = total
    return plan


#: Windows of at most this many cells compress the plan's columns through a dense lookup
#: table (one int32 per window cell, O(n)); larger ones (e.g. global 0.01°) sort instead.
#: Tests set it to 0 to force the sort.
_DENSE_WINDOW_CELLS = 64_000_000


def _compress(
    ci_parts: list[np.ndarray], cv_parts: list[np.ndarray], counts: np.ndarray, window: Window
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
    """The plan's matrix, its cells and totals from the coverage pairs.

    ``ci_parts`` / ``cv_parts``: cell ids (in ``window``) and weights of the pairs, grouped by
    polygon in input order, in one or more consecutive runs (the halves of a split coverage,
    not joined: the cell ids go straight through the lookup table into one array);
    ``counts``: pairs per polygon. Returns the CSR matrix (polygons x cells), its columns the
    cells in use inside the grid (sorted int32 flat ids), and each polygon's total weight
    when cells outside the grid were left out (they count in ``total`` only, see
    :class:`CoveragePlan`), else None. The arrays given are used up: the matrix holds them
    (the cell ids overwritten by their columns) when they come in one part.
    """
    chunk = 1 << 20
    nrow, ncol = window.shape
    n = len(counts)
    # pairs come grouped by polygon in input order: the CSR index pointer is a cumulative count
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    cv = cv_parts[0] if len(cv_parts) == 1 else np.concatenate(cv_parts)
    if nrow * ncol > _DENSE_WINDOW_CELLS:  # a huge window: sort instead of a lookup table
        ci = ci_parts[0] if len(ci_parts) == 1 else np.concatenate(ci_parts)
        cells, col = np.unique(ci, return_inverse=True)
        del ci
        w = _csr((cv, col.astype(np.int32), indptr), shape=(n, cells.size))
        off = _off_grid(cells, window)
        if off is None:
            return w, cells, None
        total = np.asarray(w.sum(axis=1)).ravel()
        w, cells = _drop_cells(w, cells, off)
        return w, cells, total
    used = np.zeros(nrow * ncol, dtype=bool)  # nonzero() of a bool mask is the fast one
    for ci in ci_parts:
        used[ci] = True
    # the cells outside the grid (a window past its edge) are missing every year: they count
    # in each polygon's total weight (valid_fraction) and nowhere else, so the matrix leaves
    # them out (no per-year masks; the same sums, less the zero terms)
    off = _take_off_grid(used, window)
    cells = _flatnonzero32(used)
    del used
    col_of = np.empty(nrow * ncol, dtype=np.int32)  # read only where written
    for a in range(0, cells.size, chunk):  # no int32 range of every cell at once
        b = min(a + chunk, cells.size)
        col_of[cells[a:b]] = np.arange(a, b, dtype=np.int32)
    if off is not None:
        col_of[off] = -1  # pairs to drop
    # each pair's column written over its cell id (the ids are ours and not needed after),
    # in chunks: no second array of the pairs, and no intp copy of the ids (np.take's)
    col = ci_parts[0] if len(ci_parts) == 1 else np.concatenate(ci_parts)
    for a in range(0, col.size, chunk):
        col[a : a + chunk] = col_of[col[a : a + chunk]]
    del col_of
    total = None
    if off is not None:
        total = _row_sums(cv, indptr)  # CoveragePlan.total, with the cells outside
        cv, col, indptr = _drop_pairs(cv, col, indptr, np.flatnonzero(col < 0))
    return _csr((cv, col, indptr), shape=(n, cells.size)), cells, total


def _row_sums(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Row sums of the CSR matrix of ``data`` and ``indptr`` (float64), as its
    ``sum(axis=1)``: they do not depend on the column indices, which stand in as zeros
    (never read, so never allocated)."""
    zeros = np.zeros(data.size, dtype=np.int32)
    m = _csr((data, zeros, indptr), shape=(indptr.size - 1, 1))
    return np.asarray(m.sum(axis=1)).ravel()


def _take_off_grid(used: np.ndarray, window: Window) -> np.ndarray | None:
    """Flat ids (int64) of the cells marked in ``used`` (a mask of ``window``'s cells) that
    lie outside the window's grid, unmarked in ``used``; None when there is none."""
    g = window.grid
    nrow, ncol = window.shape
    north = min(max(0, -window.r0), nrow)  # rows before it are north of the grid
    south = max(min(g.ny - window.r0, nrow), north)  # rows from it on are south of it
    west = min(max(0, -window.c0), ncol)
    east = max(min(g.nx - window.c0, ncol), west)
    if north == 0 and south == nrow and west == 0 and east == ncol:
        return None
    pieces = [
        np.flatnonzero(used[a * ncol : b * ncol]) + a * ncol
        for a, b in ((0, north), (south, nrow))
        if b > a
    ]
    rows = used.reshape(nrow, ncol)[north:south]
    for a, b in ((0, west), (east, ncol)):
        if b > a and south > north:
            r, c = np.nonzero(rows[:, a:b])
            pieces.append((r + north) * ncol + (c + a))
    off = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if off.size == 0:
        return None
    used[off] = False
    return off


def _flatnonzero32(mask: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``np.flatnonzero(mask).astype(np.int32)`` (a mask of < 2**31 values) in chunks: no
    int64 array of every position."""
    out = np.empty(int(np.count_nonzero(mask)), dtype=np.int32)
    at = 0
    for a in range(0, mask.size, chunk):
        nz = np.flatnonzero(mask[a : a + chunk])
        np.add(nz, a, out=out[at : at + nz.size], casting="unsafe")
        at += nz.size
    return out


def _off_grid(cells: np.ndarray, window: Window) -> np.ndarray | None:
    """Which of ``cells`` (sorted flat indices in ``window``) lie outside the window's grid;
    None when none does."""
    g = window.grid
    nrow, ncol = window.shape
    lo = min(max(0, -window.r0), nrow) * ncol  # rows north of the grid come first
    hi = max(min(g.ny - window.r0, nrow), 0) * ncol  # and rows south of it last
    a, b = np.searchsorted(cells, np.array([lo, hi], dtype=cells.dtype))
    if a == 0 and b == cells.size and window.c0 >= 0 and window.c1 <= g.nx:
        return None
    off = np.ones(cells.size, dtype=bool)
    off[a:b] = False
    # columns west or east of the grid: in each window row, one range of flat indices per
    # side, found by bisection in the sorted cells (no per-cell division)
    base = np.arange(nrow, dtype=cells.dtype) * ncol  # keys of the cells' dtype: no cast
    sides = []
    if window.c0 < 0:
        sides.append((base, base + min(-window.c0, ncol)))
    if window.c1 > g.nx:
        sides.append((base + max(g.nx - window.c0, 0), base + ncol))
    for lo_ids, hi_ids in sides:
        i, j = np.searchsorted(cells, lo_ids), np.searchsorted(cells, hi_ids)
        for s0, s1 in zip(i[j > i].tolist(), j[j > i].tolist(), strict=True):
            off[s0:s1] = True
    return off if off.any() else None


def _drop_cells(w: sp.csr_matrix, cells: np.ndarray, off: np.ndarray) -> tuple:
    """``w`` and ``cells`` without the columns where ``off`` is True (same order), compacted
    in place: the few pairs on those cells are squeezed out of ``w``'s arrays, which are
    then the new matrix's (no second copy of the weights)."""
    keep_cell = ~off
    n = w.shape[0]
    data, indices, indptr = _drop_pairs(w.data, w.indices, w.indptr, np.flatnonzero(off[w.indices]))
    del w
    new_col = np.cumsum(keep_cell, dtype=np.int32)
    new_col -= 1
    np.take(new_col, indices, out=indices, mode="clip")  # valid: clip skips a buffered copy
    del new_col
    cells = cells[keep_cell]
    return _csr((data, indices, indptr), shape=(n, cells.size)), cells


def _drop_pairs(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR arrays without the pairs at the sorted positions ``drop`` (compacted in place
    when they are few: the arrays returned are views of ``data`` and ``indices``)."""
    rows = np.searchsorted(indptr, drop, side="right") - 1
    counts = np.diff(indptr) - np.bincount(rows, minlength=indptr.size - 1)
    indptr = np.zeros(indptr.size, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    if drop.size > max(100_000, data.size // 64):  # many: a boolean copy is the fast way
        keep = np.ones(data.size, dtype=bool)
        keep[drop] = False
        return data[keep], indices[keep], indptr
    for a in (data, indices):
        _squeeze_out(a, drop)
    return data[: int(indptr[-1])], indices[: int(indptr[-1])], indptr


def _squeeze_out(a: np.ndarray, drop: np.ndarray, chunk: int = 1 << 20) -> None:
    """Remove the elements at sorted positions ``drop`` from ``a`` in place: the kept ones
    move to the front, in order, in chunks of at most ``chunk`` (numpy buffers a copy whose
    source and target overlap, so the temporary is at most one chunk)."""
    if drop.size == 0:
        return
    # runs of consecutive dropped positions; the kept segments lie between them
    new_run = np.flatnonzero(np.diff(drop) != 1) + 1
    starts = drop[np.r_[0, new_run]]
    stops = drop[np.r_[new_run - 1, drop.size - 1]] + 1
    dst = int(starts[0])
    for lo, hi in zip(stops.tolist(), [*starts[1:].tolist(), a.size], strict=True):
        while lo < hi:
            m = min(chunk, hi - lo)
            a[dst : dst + m] = a[lo : lo + m]
            dst += m
            lo += m


#: Split exactextract's coverage across two processes when the polygons' bounding boxes hold
#: at least this many grid cells (below it the fork costs more than it saves) and two cores
#: are usable. Tests set it to 0 to force the split on small data.
_SPLIT_MIN_CELLS = 2_000_000


def _split_point(geoms: np.ndarray, grid: Grid) -> int | None:
    """Where to cut ``geoms`` (all present) into two runs of about equal
    exactextract time (bounding-box cells and vertices), or
    None to compute the coverage in one process.

    Departure from DESIGN.md (one process per stage): exactextract's coverage is the floor of
    a 1-year job, and it holds the GIL, so the two halves run in a forked child and in this
    process (:class:`agglo._forked.ForkedCall`), when two cores are usable. The halves are
    contiguous in input order, so their pairs concatenate into the same CSR layout as one
    call, and exactextract computes each polygon's coverage independently of the others: the
    plan is identical bit for bit.
    """
    if len(geoms) < 2 or usable_cores() < 2 or fork_obstacle() is not None:
        return None  # e.g. in the pipeline's daemonic stage workers, which may not fork
    b = shapely.bounds(geoms)
    cells = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / abs(grid.dx * grid.dy)
    if not np.isfinite(cells.sum()) or cells.sum() < _SPLIT_MIN_CELLS:
        return None
    # exactextract's time, fitted on China's counties at 0.01°: ~8 bounding-box cells cost
    # as much as one vertex
    cum = np.cumsum(cells + 8.0 * shapely.get_num_coordinates(geoms))
    k = int(np.searchsorted(cum, cum[-1] / 2)) + 1  # the first half ends at the midpoint
    return min(max(k, 1), len(geoms) - 1)


def _pairs_bound(geoms: np.ndarray, grid: Grid) -> int:
    """An upper bound on exactextract's pairs for ``geoms`` (all present): the cells of each
    polygon's bounding box, one more row and column for the edges' cells."""
    b = shapely.bounds(geoms)
    rows = np.floor((b[:, 3] - b[:, 1]) / abs(grid.dy)) + 2
    cols = np.floor((b[:, 2] - b[:, 0]) / abs(grid.dx)) + 2
    total = float((rows * cols).sum())
    return int(total) if math.isfinite(total) and total < 2**40 else 0


#: Most pairs a buffer is reserved for up front (its pages are allocated only as the pairs
#: are written; 3.2 GB of address space): past it, or without a bound, they grow as they come.
_PAIRS_BUFFER_MAX = 1 << 28


class _PairBuffers:
    """Cell-id (int32) and value (float64) buffers of ``size`` pairs in one anonymous
    mapping (pages never written are never allocated). ``shared``: a forked child writes
    its pairs there instead of pickling them back, and this process writes its own after
    them (:meth:`join`).

    The pairs are handed on as arrays of their own length (:meth:`exact`), not as views of
    the whole buffers: scipy.sparse copies the arrays of a matrix that are views of an array
    more than twice their size (``_prune_array``)."""

    def __init__(self, size: int, *, shared: bool) -> None:
        self.size = max(size, 1)
        self._at = -(-self.size * 4 // 8) * 8  # byte offset of the values
        nbytes = self._at + self.size * 8
        self._buf: mmap.mmap | None = None
        if shared:
            self._buf = mmap.mmap(-1, nbytes)
        elif hasattr(mmap, "MAP_PRIVATE"):  # POSIX
            self._buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
            if hasattr(mmap, "MADV_HUGEPAGE"):  # as numpy asks for its large arrays
                with contextlib.suppress(OSError, ValueError):
                    self._buf.madvise(mmap.MADV_HUGEPAGE)
        else:  # numpy's own arrays (scipy may then copy the pairs once)
            self.ci, self.cv = np.empty(self.size, np.int32), np.empty(self.size, np.float64)
            return
        self.ci, self.cv = self.exact(self.size)

    def exact(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The buffers of the first ``n`` pairs, as arrays of ``n`` values."""
        if self._buf is None:
            return self.ci[:n], self.cv[:n]
        return (
            np.frombuffer(self._buf, dtype=np.int32, count=n),
            np.frombuffer(self._buf, dtype=np.float64, count=n, offset=self._at),
        )

    def part(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Buffers of the pairs ``start:stop``."""
        return self.ci[start:stop], self.cv[start:stop]

    def holds(self, a: np.ndarray) -> bool:
        """Whether ``a`` is a view of these buffers."""
        return a.size > 0 and (np.shares_memory(a, self.ci) or np.shares_memory(a, self.cv))

    def join(self, k1: int, start: int, k2: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k1`` pairs at the start and the ``k2`` pairs at ``start`` as one run of
        ``k1 + k2`` pairs (the second moved down in place, the pages it leaves given back
        to the system)."""
        for a in (self.ci, self.cv):
            _move_down(a, start, k1, k2)
        # the pages past the joined pairs that the second run had written: freed
        # (MADV_REMOVE: a shared mapping's pages stay allocated until removed)
        if start > k1 and hasattr(mmap, "MADV_REMOVE"):
            page = mmap.PAGESIZE
            for base, item in ((0, 4), (self._at, 8)):
                lo = -(-(base + (k1 + k2) * item) // page) * page
                hi = (base + (start + k2) * item) // page * page
                if hi > lo:
                    with contextlib.suppress(OSError, ValueError):
                        self._buf.madvise(mmap.MADV_REMOVE, lo, hi - lo)
        return self.exact(k1 + k2)


def _move_down(a: np.ndarray, start: int, to: int, n: int, chunk: int = 1 << 20) -> None:
    """Move ``a[start:start + n]`` to ``a[to:to + n]`` (``to <= start``) in place, in
    chunks (numpy buffers a copy whose source and target overlap, so the temporary is at
    most one chunk)."""
    if start == to:
        return
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        a[to + s : to + s + m] = a[start + s : start + s + m]


def _exact_pairs_into(
    out: tuple[np.ndarray, np.ndarray],
    src: Any,
    geoms: np.ndarray,
    crs_wkt: str,
    wkb: np.ndarray | None,
    scale: tuple[np.ndarray, int] | None,
) -> tuple:
    """:func:`_exact_pairs` in a forked child: the pairs written into the shared ``out``
    buffers and ``(counts, n_pairs)`` returned, or ``(counts, cell_ids, values)`` when they
    do not fit."""
    counts, ci, cv = _exact_pairs(src, geoms, crs_wkt, wkb, False, scale=scale, out=out)
    if ci.size == 0 or np.shares_memory(ci, out[0]):
        return counts, ci.size
    return counts, ci, cv


class _PairSink:
    """exactextract's covered cells, polygon by polygon as it computes them, copied into
    one int32 and one float64 array (``out`` while the pairs fit, else arrays grown as
    needed): its per-polygon arrays are never all held at once."""

    def __init__(
        self,
        n: int,
        out: tuple[np.ndarray, np.ndarray] | None,
        scale: tuple[np.ndarray, int] | None,
    ) -> None:
        self.counts = np.zeros(n, dtype=np.int64)
        if out is None:
            out = (np.zeros(0, dtype=np.int32), np.zeros(0))
        self.ci, self.cv = out
        self.pairs = 0
        self.polygons = 0
        self._scale = scale

    def add(self, cell_ids: np.ndarray | None, coverage: np.ndarray | None) -> None:
        """The next polygon's pairs (only its covered cells are kept)."""
        if cell_ids is None or coverage is None:
            cell_ids, coverage = np.zeros(0, np.int64), np.zeros(0)
        cell_ids, coverage = np.asarray(cell_ids), np.asarray(coverage, dtype=np.float64)
        keep = coverage > 0
        if not keep.all():
            cell_ids, coverage = cell_ids[keep], coverage[keep]
        m, at = coverage.size, self.pairs
        if at + m > self.ci.size:
            self._grow(at + m)
        self.ci[at : at + m] = cell_ids
        if self._scale is None:
            self.cv[at : at + m] = coverage
        else:  # the fractions x the area of each cell's window row
            row_area, ncol = self._scale
            np.multiply(coverage, row_area[cell_ids // ncol], out=self.cv[at : at + m])
        self.counts[self.polygons] = m
        self.polygons += 1
        self.pairs = at + m

    def _grow(self, need: int) -> None:
        size = max(need, 2 * self.ci.size, 1 << 16)
        ci, cv = np.empty(size, dtype=np.int32), np.empty(size, dtype=np.float64)
        ci[: self.pairs] = self.ci[: self.pairs]
        cv[: self.pairs] = self.cv[: self.pairs]
        self.ci, self.cv = ci, cv


def _pairs_writer(sink: _PairSink) -> Any:
    """An exactextract output writer handing each polygon's results to ``sink``."""
    from exactextract._exactextract import Feature
    from exactextract.writer import Writer

    class _Results(Feature):
        """What a result is copied into: its arrays, by operation name."""

        def __init__(self) -> None:
            Feature.__init__(self)
            self.values: dict[str, Any] = {}

        def set(self, name: str, value: Any) -> None:
            self.values[name] = value

        def set_geometry(self, geometry: Any) -> None:
            pass  # results without geometry (include_geom=False)

        def set_geometry_format(self) -> str:
            return "wkb"

    class _PairsWriter(Writer):
        def add_operation(self, op: Any) -> None:
            pass

        def write(self, feature: Any) -> None:
            f = _Results()
            feature.copy_to(f)
            sink.add(f.values.get("cell_id"), f.values.get("coverage"))

        def features(self) -> _PairSink:
            return sink

    return _PairsWriter()


def _exact_pairs(
    src: Any,
    geoms: np.ndarray,
    crs_wkt: str,
    wkb: np.ndarray | None,
    progress: bool,
    *,
    scale: tuple[np.ndarray, int] | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exactextract's covered cells of every polygon of ``geoms`` (all present): pairs per
    polygon (int64), cell ids (int32, in the window) and coverage fractions (float64 > 0),
    grouped by polygon in input order.

    ``scale=(row_area, ncol)``: the fractions multiplied by the area of each cell's window
    row. ``out``: cell-id and value buffers to write the pairs into while they fit (the
    arrays returned are then views of them). The pairs are copied as exactextract writes
    each polygon's (:class:`_PairSink`), not gathered into a table first: China's counties
    at 0.01° have ~11 M pairs, 16 bytes each in exactextract's arrays."""
    from exactextract import exact_extract

    n = len(geoms)
    sink = _PairSink(n, out, scale)
    exact_extract(
        src,
        _wkb_source(geoms, crs_wkt, wkb),
        ["cell_id", "coverage"],
        output=_pairs_writer(sink),
        progress=progress,
    )
    if sink.polygons != n:
        raise RuntimeError(f"exactextract returned {sink.polygons} results for {n} polygons")
    k = sink.pairs
    return sink.counts, sink.ci[:k], sink.cv[:k]


def _centroid_weights(
    geoms: np.ndarray, pi: np.ndarray, ci: np.ndarray, cv: np.ndarray, window: Window
) -> np.ndarray:
    """1 where the cell centre is inside the polygon; coverage fallback for tiny polygons."""
    ncol = window.shape[1]
    x = window.col_centres()[ci % ncol]
    y = window.row_centres()[ci // ncol]
    out = (cv >= 1.0 - 1e-12).astype(np.float64)
    edge = (cv > 0) & (out == 0)
    if edge.any():
        shapely.prepare(geoms[pi[edge]])
        out[edge] = shapely.contains_xy(geoms[pi[edge]], x[edge], y[edge]).astype(np.float64)
    has = np.bincount(pi, weights=out, minlength=len(geoms)) > 0
    fallback = ~has[pi] & (cv > 0)
    if fallback.any():
        log.info(
            "%d polygon(s) contain no cell centre; using their covering cells weighted by "
            "coverage instead",
            np.unique(pi[fallback]).size,
        )
        out[fallback] = cv[fallback]
    return out


def _projected_cell_area(grid: Grid) -> float:
    crs = CRS.from_user_input(grid.crs)
    proj = (crs.to_dict() or {}).get("proj", "")
    if proj in {"aea", "laea", "cea", "moll", "eck4", "sinu", "igh", "eqearth", "goode"}:
        return grid.dx * grid.dy / 1e6
    raise CRSError(
        f"weights='area' needs true cell areas, but the raster is in a projected CRS that is not "
        f"equal-area ({crs.name}). Use weights='coverage', or warp the raster to EPSG:4326 or an "
        "equal-area CRS first."
    )


# -- per-year reduction ----------------------------------------------------------------------
def _reduce_years(
    layers: Sequence[Layer], plan: CoveragePlan, pop: dict[int, np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Weighted sums for each layer: one gather of the used cells and sparse mat-vecs per year
    (a Dask task runs a chunk of years)."""
    total = plan.total
    out = []
    buf = None  # one values buffer for every year (no page faults after the first)
    for layer in layers:
        index = plan.cell_index(layer)
        # the first year's buffer is the reader's (in a shared mapping when its read is split)
        buf = layer.read_indexed(index, out=buf)
        v, notes = screen_pm25_values(buf, layer)
        invalid = np.isnan(v)
        # cells outside the grid are missing every year: when they are the only missing ones,
        # the mask sums are those of the layout (computed once)
        n_outside = index.outside.size
        all_valid = int(np.count_nonzero(invalid)) == n_outside
        v0 = v  # the values read are ours: zero the missing cells in place
        if not all_valid:
            v0[invalid] = 0.0
        elif n_outside:  # the missing cells are exactly those outside the grid
            v0[index.outside] = 0.0
        num = plan.weights @ v0
        p = pop.get(layer.year)
        wp = plan.base.multiply(p[None, :]).tocsr() if p is not None else None
        pnum = wp @ v0 if wp is not None else None
        del v0, v
        if all_valid:  # the common case: no mask mat-vecs (same numbers: W @ 1, pair counts)
            vf = None
            if index.inside is not None and wp is not None:
                vf = index.inside.astype(np.float64)
            den, n = plan.valid_sums(index, scratch=buf)  # the year's values are used up
        else:
            vf = (~invalid).astype(np.float64)
            den = plan.weights @ vf
            n = (plan.binary @ (~invalid).astype(np.float32)).astype(np.float64)
        res = {"num": num, "den": den, "total": total, "n": n, "notes": notes}
        if wp is not None:
            res["pnum"] = pnum
            res["pden"] = wp @ (vf if vf is not None else np.ones(plan.cells.size))
        out.append(res)
    return out


# -- public entry point ----------------------------------------------------------------------
def zonal_pm25(
    source: str | Path | Any,
    polygons: gpd.GeoDataFrame,
    *,
    id_col: str | None = "adcode",
    years: Sequence[int] | None = None,
    weights: str = "area",
    population: str | Path | Any | None = None,
    variable: str | None = None,
    raster_crs: Any = None,
    scheduler: Any = None,
    years_per_task: int = 2,
    progress: bool = False,
    coverage_cache: CoverageCache | str | Path | None = None,
) -> pd.DataFrame:
    """Mean annual PM2.5 of every polygon and year from ACAG-style rasters.

    Parameters
    ----------
    source
        A NetCDF or GeoTIFF file, a folder of yearly files (year parsed from each name), or an
        ``xarray.DataArray`` with ``lat``/``lon`` (and ``year``/``time``) dimensions.
    polygons
        Polygons with a CRS (reprojected to the raster's CRS when they differ).
    id_col
        Column identifying the polygons (unique), copied to the output. ``None``: the
        polygons' own index identifies them, and the output is indexed by it (one row per
        polygon and year, index name kept).
    years
        Years to compute (default: every year found).
    weights
        ``"area"`` (coverage fraction x true ellipsoidal cell area), ``"coverage"`` (coverage
        fraction) or ``"centroid"`` (cells whose centre is inside).
    population
        Optional population-count raster (persons per cell; file, folder of yearly files or
        DataArray; lon/lat, any resolution) for ``pm25_popw``. Per PM2.5 year the nearest
        population year is used.
    variable
        NetCDF variable name (default ``PM25``, else the first data variable).
    raster_crs
        CRS of a raster whose file has none. NetCDF lat/lon grids are taken as EPSG:4326.
    scheduler
        ``None``: chosen by data size and cores (see the module notes): forked processes
        for many large years on >= 2 cores, else the years in turn (local Dask threads with
        more than 2 cores and ``agglo[dask]`` installed). ``"synchronous"`` (years in turn),
        ``"processes"`` (years split across forked processes, one per usable core; Linux
        only; in turn where forking is not allowed), ``"threads"``, a ``dask.distributed``
        scheduler address (``"tcp://host:8786"``) or a ``distributed.Client`` (these need
        ``agglo[dask]``). Every scheduler gives the same numbers.
    years_per_task
        Years per Dask task.
    progress
        Show a progress bar while computing coverage fractions.
    coverage_cache
        A :class:`CoverageCache` the caller owns, or its folder: coverage is read from it on
        a second run with the same polygons and grid (and stored on the first). None:
        always computed.

    Returns
    -------
    pandas.DataFrame
        One row per polygon and year: ``<id_col>, year, pm25_mean`` (µg/m³), ``pm25_popw``
        (µg/m³, population-weighted; NaN without ``population``), ``valid_fraction`` (share of
        the polygon's weight on cells with data, 0-1), ``n_cells`` (cells with data and weight
        > 0). ``attrs`` records the source, weights, CRS handling and whether it is synthetic.

    Raises
    ------
    AggloInputError
        Bad option values, missing or duplicated ids, unreadable or corrupt files, requested
        years absent. :class:`~agglo.errors.CRSError` for polygons or a raster without CRS.

    Warns
    -----
    PM25Warning
        Polygons with no valid cell in a year (their mean is NaN), listed by id.

    Examples
    --------
    >>> import numpy as np, xarray as xr, geopandas as gpd, shapely
    >>> lat = np.arange(29.5, 27, -1.0); lon = np.arange(100.5, 104, 1.0)
    >>> da = xr.DataArray(np.array([[[10.0, 20, 30, 40]] * 3]), dims=("year", "lat", "lon"),
    ...                   coords={"year": [2020], "lat": lat, "lon": lon})
    >>> polys = gpd.GeoDataFrame({"adcode": ["a"]}, geometry=[shapely.box(100, 27, 102, 30)],
    ...                          crs=4326)
    >>> out = zonal_pm25(da, polys, weights="coverage", scheduler="synchronous")
    >>> float(out["pm25_mean"].iloc[0]), int(out["n_cells"].iloc[0])
    (15.0, 6)
    """
    if problem := choice_problem("weights", weights, WEIGHTS):
        raise AggloInputError(problem)
    sched = _check_scheduler(scheduler)
    if not isinstance(years_per_task, int) or years_per_task < 1:
        raise AggloInputError(f"years_per_task must be a positive integer, got {years_per_task!r}")
    ids = _check_polygons(polygons, id_col)
    if coverage_cache is not None and not isinstance(coverage_cache, CoverageCache):
        coverage_cache = CoverageCache(coverage_cache)
    check_crs(polygons, what="polygons")
    raw = np.asarray(polygons.geometry.values, dtype=object)
    wkb = digest = None
    if coverage_cache is not None:  # one digest per run: cache keys and validity marker
        digest = _digest_beside_imports(raw)
    pending = None  # shapely.is_valid running in a thread while coverage is computed
    if digest is not None and coverage_cache.is_validated(digest):
        # the very same polygons (WKB digest) were checked valid by an earlier run: a check
        # now would find them valid again (invalid ones are never marked, so they warn)
        log.info("polygons found valid by an earlier run (coverage cache): check skipped")
    elif _overlap_validity(raw):
        pending = _ValidityCheck(raw)  # paused while a coverage split keeps both cores busy
    else:
        cleaned = clean_geometries(polygons, what="polygons", id_col=id_col)
        if digest is not None and cleaned is polygons:
            coverage_cache.mark_validated(digest)
        polygons = cleaned
    year_list = None if years is None else sorted({int(y) for y in years})
    layers = discover_layers(source, years=year_list, variable=variable, crs=raster_crs)
    pop_layers = (
        discover_layers(population, what="population raster", crs=raster_crs)
        if population is not None
        else []
    )
    notes = sorted({layer.note for layer in layers if layer.note})
    groups: dict[tuple, list[Layer]] = {}
    for layer in layers:
        groups.setdefault(layer.grid.key(), []).append(layer)
    # With `pending`, a speculative pass: coverage of the polygons as given while the check
    # runs; its warnings are held back until the check says the polygons are valid (then
    # the result is what clean_geometries + the computation give: valid polygons come back
    # unchanged). Invalid ones: reported and repaired, and a second pass. (The passes are
    # inline, not a function, so that warnings keep pointing at zonal_pm25's caller.)
    while True:
        error = None
        held_ctx = (
            warnings.catch_warnings(record=True)
            if pending is not None
            else contextlib.nullcontext([])
        )
        with held_ctx as held:
            if pending is not None:
                warnings.simplefilter("always")
            try:
                frames = []
                for group in groups.values():
                    grid = group[0].grid
                    check_crs(
                        (grid.west, grid.south, grid.east, grid.north),
                        grid.crs,
                        what=f"raster {group[0].name}",
                        fix="raster_crs='EPSG:4326' (CLI: --raster-crs EPSG:4326)",
                    )
                    geoms = _polygons_on_grid(polygons, grid)
                    check_overlap(
                        geoms,
                        (grid.west, grid.south, grid.east, grid.north),
                        ids,
                        what=group[0].name,
                    )
                    arr = np.asarray(geoms.values, dtype=object)
                    same = digest is not None and len(arr) == len(raw)
                    same = same and all(map(operator.is_, arr, raw))
                    plan = _coverage_plan(
                        arr,
                        grid,
                        weights=weights,
                        progress=progress,
                        cache=coverage_cache,
                        wkb=wkb if same else None,
                        digest=digest if same else None,
                        side_work=pending,
                    )
                    pop = _population_for(pop_layers, group, plan) if pop_layers else {}
                    results = _run(group, plan, pop, sched, years_per_task, auto=scheduler is None)
                    for layer, r in zip(group, results, strict=True):
                        for note in r.get("notes", ()):
                            warnings.warn(
                                f"{layer.name} ({layer.year}): {note}",
                                AggloDataWarning,
                                stacklevel=2,
                            )
                    frames.extend(
                        _frame(ids, id_col, layer.year, r)
                        for layer, r in zip(group, results, strict=True)
                    )
            except Exception as exc:
                if pending is None:
                    raise
                error = exc  # decided once validity is known
            all_valid = True
            if pending is not None:
                try:  # waited for inside the block: the thread's warnings are held too
                    all_valid = bool(pending.result().all())
                except Exception:  # the regular check reports it
                    all_valid = False
        if pending is None:
            break
        pending = None
        if all_valid:
            if digest is not None:
                coverage_cache.mark_validated(digest)
            for w in held:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            if error is not None:
                raise error
            break
        del held, frames
        polygons = clean_geometries(polygons, what="polygons", id_col=id_col)
        wkb = digest = None  # the repaired polygons are other polygons
    out = pd.concat(frames).sort_values(["year"], kind="stable")
    if id_col is not None:
        out = out.reset_index(drop=True)
    if out["pm25_mean"].isna().all():
        raise AggloInputError(
            "no polygon has a valid PM2.5 cell in any year: every covered cell is missing or "
            "fill. Check the raster's extent, CRS and fill value."
        )
    _warn_missing(out, id_col)
    synthetic = any(
        "synthetic" in layer.name.lower() or "synthetic" in layer.note for layer in layers
    )
    out.attrs.update(
        {
            "source": ", ".join(layer.name for layer in layers),
            "weights": weights,
            "crs": "; ".join(notes),
            "units": "µg/m³",
            "synthetic": synthetic,
            "population": None if not pop_layers else ", ".join(p.name for p in pop_layers),
        }
    )
    if synthetic:
        log.warning("PM2.5 from SYNTHETIC rasters: %s", out.attrs["source"])
    return out


def _import_readers() -> None:
    """Import the sparse matrices and the NetCDF reader (first use costs ~0.2 s)."""
    import scipy.sparse  # noqa: F401

    with contextlib.suppress(ImportError):
        import netCDF4  # noqa: F401


class _ValidityCheck:
    """``shapely.is_valid`` of the polygons in a thread (named ``agglo-valid``), started at
    once, in chunks of about equal vertex counts so that it can be paused between two
    (:meth:`pause`, :meth:`resume`): it uses the idle second core before and after a coverage
    split, not the cores the split's halves keep busy. :meth:`result` resumes it and waits.

    shapely.lib.is_valid, not shapely.is_valid: the latter wraps the call in
    warnings.catch_warnings, which is not thread-safe (it would swap the warning filters of
    the main thread); the GEOS notices it raises are held by zonal_pm25 like the others.
    """

    #: chunks of the check (each one GEOS call on a run of polygons)
    CHUNKS: ClassVar[int] = 32

    def __init__(self, raw: np.ndarray) -> None:
        self._raw = raw
        self._go = threading.Event()
        self._go.set()
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="agglo-valid")
        self._future = pool.submit(self._check)
        pool.shutdown(wait=False)

    def _check(self) -> np.ndarray:
        cum = np.cumsum(shapely.get_num_coordinates(self._raw))
        k = min(self.CHUNKS, len(self._raw))
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, k) / k) if k > 1 else []
        out = []
        for part in np.split(self._raw, np.unique(cuts)):
            self._go.wait()
            out.append(shapely.lib.is_valid(part))
        return np.concatenate(out) if out else np.zeros(0, bool)

    def pause(self) -> None:
        """Stop after the chunk in progress."""
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def result(self) -> np.ndarray:
        self.resume()
        return self._future.result()


def _overlap_validity(raw: np.ndarray) -> bool:
    """Whether to run the validity check in a thread while coverage is computed.

    shapely releases the GIL in ``is_valid`` and exactextract lets it run, so with a second
    core the check (~0.4 s for China's 2,875 counties) is hidden behind the coverage step; on
    one core it would only interleave. Null or empty geometries go straight to
    :func:`clean_geometries` (it raises on them)."""
    if usable_cores() < 2 or len(raw) == 0:
        return False
    return not (shapely.is_missing(raw) | shapely.is_empty(raw)).any()


@dataclass(frozen=True)
class PM25Result(StageResult):
    """City mean PM2.5 per year (result of :func:`city_pm25`; the ``pm25`` stage).

    Attributes
    ----------
    means
        :func:`zonal_pm25`'s table (``attrs``: source files, weights, CRS, synthetic).
    source_path
        The raster file or folder read.
    id_col
        Identifier column of the cities.
    """

    means: pd.DataFrame
    source_path: str
    id_col: str = "adcode"
    #: the panel indicator this stage computes
    name: ClassVar[str] = "pm25"

    @property
    def synthetic(self) -> bool:
        """Whether any raster read is synthetic."""
        return bool(self.means.attrs.get("synthetic"))

    @property
    def files(self) -> list[str]:
        """The raster files read (``file#variable`` reduced to the file)."""
        return [s.split("#")[0] for s in self.means.attrs.get("source", "").split(", ") if s]

    @property
    def values(self) -> pd.DataFrame:
        """The panel indicator: ``adcode, year, value`` (µg/m³)."""
        cols = {self.id_col: "adcode", "pm25_mean": "value"}
        return self.means.rename(columns=cols)[["adcode", "year", "value"]]

    @property
    def source(self) -> str:
        """Where the indicator comes from (panel provenance)."""
        status = "synthetic" if self.synthetic else "real"
        return f"zonal_pm25({self.source_path}, weights={self.means.attrs['weights']}) [{status}]"

    def synthetic_sources(self) -> set[str]:
        return set(self.files) if self.synthetic else set()

    def provenance(self) -> dict[str, str]:
        """The rasters read, their status and CRS handling."""
        status = "synthetic" if self.synthetic else "real"
        crs = self.means.attrs.get("crs", "")
        return {"pm25_rasters": f"{', '.join(self.files)} ({status}; {crs})"}

    def tables(self) -> dict[str, pd.DataFrame]:
        status = "synthetic" if self.synthetic else "real"
        return {"pm25": self.means.assign(data_status=status, provenance=self.row_labels(status))}

    def row_labels(self, status: str) -> list[str]:
        """Per row: ``<status>:<raster file>`` of its year (all files when none names it)."""
        files = self.files
        by_year: dict[int, str] = {}
        for year in self.means["year"].unique():
            named = [f for f in files if str(int(year)) in Path(f).name] or files
            by_year[int(year)] = "; ".join(f"{status}:{Path(f).name}" for f in named)
        return [by_year[int(y)] for y in self.means["year"]]

    def summary_lines(self) -> list[str]:
        df = self.means
        low = int((df["valid_fraction"] < 0.5).sum())
        return [
            f"PM2.5: {df[self.id_col].nunique()} cities x {df['year'].nunique()} years from "
            f"{len(self.files)} raster file(s) ({df.attrs['weights']}-weighted); mean "
            f"{df['pm25_mean'].mean():.1f} µg/m³; {low} city-years with < 50 % valid cells"
        ]

    def metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.means.attrs.items() if k != "synthetic"}


def raster_years(source: str | Path | Any, *, variable: str | None = None) -> list[int]:
    """The years of the PM2.5 rasters in ``source`` (a file, a folder or a DataArray).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((2, 2, 2)), dims=("year", "lat", "lon"),
    ...                   coords={"year": [2015, 2020], "lat": [30.5, 29.5], "lon": [110.5, 111.5]})
    >>> raster_years(da)
    [2015, 2020]
    """
    return sorted({layer.year for layer in discover_layers(source, variable=variable)})


def city_pm25(
    source: str | Path | Any,
    cities: gpd.GeoDataFrame,
    options: PM25Options | None = None,
    *,
    years: Sequence[int] | None = None,
    id_col: str = "adcode",
    progress: bool = False,
) -> PM25Result:
    """Mean annual PM2.5 of every city for the years the rasters cover (the ``pm25`` stage).

    Parameters
    ----------
    source
        Rasters as in :func:`zonal_pm25`.
    cities
        City polygons with a unique ``id_col``.
    options
        :class:`PM25Options` (weights, population raster, NetCDF variable, raster CRS, Dask
        scheduler, coverage cache folder).
    years
        Years wanted (default: every year of the rasters); each must have a raster (see
        :func:`raster_years`).
    id_col
        Identifier column of ``cities``.
    progress
        Progress bar while computing coverage.

    Returns
    -------
    PM25Result

    Raises
    ------
    AggloInputError
        A year without a raster, and everything else :func:`zonal_pm25` raises.

    Examples
    --------
    >>> import numpy as np, xarray as xr, geopandas as gpd, shapely
    >>> da = xr.DataArray(np.full((1, 2, 2), 30.0), dims=("year", "lat", "lon"),
    ...                   coords={"year": [2020], "lat": [30.5, 29.5], "lon": [110.5, 111.5]})
    >>> cities = gpd.GeoDataFrame({"adcode": ["A"]}, geometry=[shapely.box(110, 29, 112, 31)],
    ...                           crs=4326)
    >>> res = city_pm25(da, cities, PM25Options(scheduler="synchronous"), years=[2020])
    >>> res.values.to_dict("records")
    [{'adcode': 'A', 'year': 2020, 'value': 30.0}]
    """
    options = options or PM25Options()
    means = zonal_pm25(
        source, cities, id_col=id_col, years=years, progress=progress, **options.to_dict()
    )
    return PM25Result(
        means=means,
        source_path=str(source) if isinstance(source, str | Path) else type(source).__name__,
        id_col=id_col,
    )


def _frame(ids: pd.Series, id_col: str | None, year: int, r: dict[str, np.ndarray]) -> pd.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(r["den"] > 0, r["num"] / r["den"], np.nan)
        frac = np.clip(np.where(r["total"] > 0, r["den"] / r["total"], 0.0), 0.0, 1.0)
        popw = (
            np.where(r["pden"] > 0, r["pnum"] / r["pden"], np.nan)
            if "pnum" in r
            else np.full(len(ids), np.nan)
        )
    columns = {} if id_col is None else {id_col: ids.to_numpy()}
    index = pd.Index(ids, name=ids.name) if id_col is None else None
    return pd.DataFrame(
        {
            **columns,
            "year": np.full(len(ids), year, dtype=np.int64),
            "pm25_mean": mean,
            "pm25_popw": popw,
            "valid_fraction": frac,
            "n_cells": np.rint(r["n"]).astype(np.int64),
        },
        index=index,
    )


def _warn_missing(out: pd.DataFrame, id_col: str | None) -> None:
    miss = out[out["pm25_mean"].isna()]
    if miss.empty:
        return
    labels = miss.index.to_series() if id_col is None else miss[id_col]
    miss = miss.assign(_label=labels.to_numpy())
    parts = []
    for year, g in miss.groupby("year"):
        shown = [str(v) for v in g["_label"].tolist()[:20]]
        more = len(g) - len(shown)
        parts.append(f"{year}: {', '.join(shown)}" + (f" (+{more} more)" if more else ""))
    warnings.warn(
        f"{miss['_label'].nunique()} polygon(s) have no valid PM2.5 cells (mean set to NaN; outside "
        f"the raster or only fill values) — {'; '.join(parts)}",
        PM25Warning,
        stacklevel=3,
    )


#: scheduler names accepted besides a dask.distributed address or Client
SCHEDULERS = ("synchronous", "threads", "processes")
#: Stored cells (read and decompressed) per worker process below which ``scheduler=None``
#: does not split the years across processes: the threshold from which one NetCDF read is
#: split with a forked child (``agglo.io.rasters._SPLIT_READ_CELLS``: a fork costs ~20 ms,
#: reading and reducing 8 M stored cells ~0.2 CPU-s at 0.01°, zlib level 1). Where the years
#: are split, each process reads its years whole (one fork for all of them, not one a year).
#: Tests set it to 0 to let small data fork.
_CELLS_PER_PROCESS = 8_000_000


def _run(
    layers: list[Layer],
    plan: CoveragePlan,
    pop: dict[int, np.ndarray],
    sched: Any,
    years_per_task: int,
    *,
    auto: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Each layer's sums (:func:`_reduce_years`) under ``sched``, in layer order.

    ``auto`` (``scheduler=None``): forked processes when :func:`_process_count` finds they
    pay, else ``sched`` (the in-process default of :func:`_check_scheduler`).
    """
    if auto or sched == "processes":
        workers = _process_count(layers, plan, explicit=not auto)
        if workers >= 2:
            return _run_processes(layers, plan, pop, workers)
        if sched == "processes":
            sched = "synchronous"
    chunks = [layers[i : i + years_per_task] for i in range(0, len(layers), years_per_task)]
    if sched == "synchronous" or (len(chunks) == 1 and sched == "threads"):
        if len(layers) < 2:
            return _reduce_years(layers, plan, pop)
        with whole_reads():  # years in turn: one read split (a fork) per year would not pay
            return [r for c in chunks for r in _reduce_years(c, plan, pop)]
    if sched == "threads":
        dask = require("dask", "dask", "zonal_pm25(scheduler='threads')")
        tasks = [dask.delayed(_reduce_years, pure=False)(c, plan, pop) for c in chunks]
        # a pool of this call's own, joined before returning: dask's default pool would leave
        # idle threads behind, and a later scheduler=None / 'processes' call does not fork
        # beside running threads (see _can_fork), so it would run its years in turn
        with concurrent.futures.ThreadPoolExecutor(
            min(usable_cores(), len(chunks)), thread_name_prefix="agglo-pm25"
        ) as pool:
            results = dask.compute(*tasks, scheduler="threads", pool=pool)
        return [r for chunk in results for r in chunk]
    client, own = _client(sched)
    try:
        # a list scatters each element as one object (a dict alone would be split by key)
        plan_f, pop_f = client.scatter([plan, pop], broadcast=True)
        futures = [client.submit(_reduce_years, c, plan_f, pop_f, pure=False) for c in chunks]
        results = client.gather(futures)
    finally:
        if own:
            client.close()
    return [r for chunk in results for r in chunk]


def _process_count(layers: Sequence[Layer], plan: CoveragePlan, *, explicit: bool) -> int:
    """Processes to split the years of ``layers`` across (< 2: run them in this process).

    At most one per usable core and per year, and only where forking is safe
    (:func:`_fork_obstacle`). Chosen (``explicit=False``, ``scheduler=None``): also at most
    one per :data:`_CELLS_PER_PROCESS` stored cells to read, so that each process has enough
    work to pay for its fork; on 2 cores China's counties at 0.01° (14 M stored cells a
    year) take 2 from 2 years on, a single year none (its read may still be split, see
    :mod:`agglo.io.rasters`). Asked for (``scheduler="processes"``): whatever the data size.
    """
    workers = min(usable_cores(), len(layers))
    if workers < 2:
        return 0
    why = _fork_obstacle()
    if why is not None:
        log.log(
            logging.INFO if explicit else logging.DEBUG,
            "pm25: the years run in turn in this process (%s)",
            why,
        )
        return 0
    if not explicit:
        work = sum(_cells_read(plan.cell_index(layer)) for layer in layers)
        workers = min(workers, work // max(_CELLS_PER_PROCESS, 1))
    if workers >= 2:
        log.debug("pm25: %d years on %d processes", len(layers), workers)
    return workers


def _cells_read(index: CellIndex) -> int:
    """Stored cells a year of ``index`` reads (whole bands: the decompression work)."""
    return index.stored_cells


def _fork_obstacle() -> str | None:
    """Why this process may not fork workers now, or None when it may
    (:func:`agglo._forked.fork_obstacle`: Linux ``fork``, not a daemonic process — the
    pipeline runs stages side by side in daemonic forked children, which may not have
    children of their own — and no thread running but the fork-safe ones; a child would
    inherit the locks other threads hold, e.g. the NetCDF reader's, and could hang).
    zonal_pm25's own validity check thread is waited for first: its result is waited for
    after the years anyway.
    """
    for thread in threading.enumerate():
        if thread.name.startswith("agglo-valid"):
            thread.join()
    return fork_obstacle()


def _run_processes(
    layers: list[Layer], plan: CoveragePlan, pop: dict[int, np.ndarray], workers: int
) -> list[dict[str, np.ndarray]]:
    """The years in ``workers`` runs of consecutive years, the first in this process and the
    others in forked children (:class:`agglo._forked.ForkedCall`), all at once.

    Departure from DESIGN.md and the years-in-turn rule above: the years are independent,
    and reading them (zlib decompression in HDF5, which holds a lock across threads) is most
    of their time, so processes, not threads, are what lets two cores share it. The children
    inherit the plan and read positions built here before the fork (nothing is pickled but
    each year's sums), and run the very same :func:`_reduce_years`: the sums are identical bit
    for bit. Their warnings and log records are issued here, in year order, after this
    process's years; an error is that of the first failing year, as when the years run in
    turn (a child that dies without an answer raises :class:`agglo._forked.ForkedError`).
    """
    # what every year shares is built once, here, and inherited by the children
    for layer in layers:
        plan.valid_sums(plan.cell_index(layer))
    plan.total  # noqa: B018 - a cached property, computed before the fork
    if pop:
        plan.base  # noqa: B018 - idem
    parts = [p.tolist() for p in np.array_split(np.arange(len(layers)), workers) if p.size]
    calls: list[ForkedCall] = []
    try:
        for part in parts[1:]:
            years = f"{layers[part[0]].year}-{layers[part[-1]].year}"
            run = [layers[i] for i in part]
            calls.append(ForkedCall.start(_reduce_years, run, plan, pop, name=years))
        out = _reduce_years([layers[i] for i in parts[0]], plan, pop)
        for call in calls:
            try:
                out.extend(call.result())
            except ForkedError as exc:  # the child died, or its outcome could not be sent
                code = call.process.exitcode
                why = str(exc) if code == 0 else f"died without a result (exit code {code})"
                raise ForkedError(
                    f"zonal_pm25: the worker process of years {call.name} {why}; "
                    "scheduler='synchronous' runs the years in this process"
                ) from exc
    finally:
        for call in calls:
            call.kill()
    return out


def _client(sched: Any) -> tuple[Any, bool]:
    Client = require("distributed", "dask", "a Dask scheduler address").Client

    if isinstance(sched, Client):
        return sched, False
    try:
        return Client(sched, timeout="20s"), True
    except OSError as exc:
        raise AggloInputError(
            f"cannot connect to the Dask scheduler at {sched} ({exc}); start one with "
            "`dask scheduler` or omit --scheduler to let agglo choose."
        ) from exc


def _check_scheduler(scheduler: Any) -> Any:
    """The checked ``scheduler``; for None the in-process default (years in turn on <= 2
    cores, where Dask threads measured 2x kernel time and +1 GB, since NetCDF reads hold a
    lock; local Dask threads with more cores and Dask installed), which :func:`_run` replaces
    by forked processes where they pay (:func:`_process_count`)."""
    if scheduler is None:
        many_cores = usable_cores() > 2
        have_dask = importlib.util.find_spec("dask") is not None
        return "threads" if many_cores and have_dask else "synchronous"
    if isinstance(scheduler, str):
        if scheduler == "processes" and not fork_available():
            raise AggloInputError(
                "scheduler='processes' forks worker processes, which agglo does only on Linux; "
                "use 'synchronous' or 'threads' (or omit scheduler to let agglo choose)."
            )
        if scheduler in SCHEDULERS:
            return scheduler
        if "://" in scheduler or ":" in scheduler:
            return scheduler
        raise AggloInputError(
            "scheduler must be 'threads', 'synchronous', 'processes', a dask.distributed "
            f"address such as 'tcp://127.0.0.1:8786' or a distributed.Client; got {scheduler!r}"
        )
    if type(scheduler).__name__ == "Client":
        return scheduler
    raise AggloInputError(f"scheduler: unsupported value {scheduler!r}")


def _check_polygons(polygons: Any, id_col: str | None) -> pd.Series:
    if not isinstance(polygons, gpd.GeoDataFrame):
        raise AggloInputError(f"polygons must be a GeoDataFrame, got {type(polygons).__name__}")
    if polygons.crs is None:
        raise CRSError(
            "polygons have no CRS. Set it first, e.g. polygons.set_crs('EPSG:4326') for lon/lat."
        )
    if id_col is None:
        ids = polygons.index.to_series()
        what = "the polygons' index"
    elif id_col not in polygons.columns:
        raise AggloInputError(
            f"id column {id_col!r} not in the polygons; columns: "
            f"{', '.join(map(str, polygons.columns))} (or id_col=None to key by the index)"
        )
    else:
        ids = polygons[id_col]
        what = f"id column {id_col!r}"
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise AggloInputError(f"{what} has duplicated values: {dup[:10]}")
    bad = ~polygons.geometry.isna() & ~polygons.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if bad.any():
        raise AggloInputError(
            f"polygons must be (Multi)Polygons; {int(bad.sum())} are "
            f"{sorted(set(polygons.geometry[bad].geom_type))} (ids {ids[bad].tolist()[:10]})"
        )
    return ids


def _polygons_on_grid(polygons: gpd.GeoDataFrame, grid: Grid) -> gpd.GeoSeries:
    """Polygons in the grid's CRS with longitudes on the grid's convention."""
    crs = CRS.from_user_input(grid.crs)
    geoms = polygons.geometry
    if not CRS.from_user_input(polygons.crs).equals(crs):
        log.info("reprojecting polygons from %s to the raster CRS %s", polygons.crs.name, crs.name)
        geoms = geoms.to_crs(crs)
    # validity: zonal_pm25 repaired the polygons once (clean_geometries); a reprojection
    # keeps them valid for exactextract's coverage (which needs no topology)
    arr = np.asarray(geoms.values, dtype=object).copy()
    if crs.is_geographic:
        arr = _align_longitudes(arr, grid)
    return gpd.GeoSeries(arr, index=polygons.index, crs=crs)


def _align_longitudes(arr: np.ndarray, grid: Grid) -> np.ndarray:
    """Move polygon parts onto the grid's longitude range (0..360 vs -180..180)."""
    present = ~(shapely.is_missing(arr) | shapely.is_empty(arr))
    if not present.any():
        return arr
    b = shapely.bounds(arr[present])
    out = arr.copy()
    if grid.east > 180.0 + 1e-9 and (b[:, 0] < min(grid.west, 0.0)).any():
        # 0..360 grid: western-hemisphere parts move east by 360°
        west = shapely.box(-180, -90, 0, 90)
        east = shapely.box(0, -90, 360, 90)
        idx = np.flatnonzero(present)[b[:, 0] < 0]
        for i in idx:
            g = out[i]
            moved = shapely.affinity.translate(shapely.intersection(g, west), xoff=360)
            out[i] = shapely.union(shapely.intersection(g, east), moved)
        log.info("raster longitudes run 0-360: shifted %d polygon(s) east by 360°", idx.size)
    elif grid.west < 0 and (b[:, 2] > 180.0).any():
        far = shapely.box(180, -90, 360, 90)
        near = shapely.box(-180, -90, 180, 90)
        idx = np.flatnonzero(present)[b[:, 2] > 180.0]
        for i in idx:
            g = out[i]
            moved = shapely.affinity.translate(shapely.intersection(g, far), xoff=-360)
            out[i] = shapely.union(shapely.intersection(g, near), moved)
        log.info("polygons use 0-360 longitudes: shifted %d polygon(s) west by 360°", idx.size)
    return out


# -- population ------------------------------------------------------------------------------
def _population_for(
    pop_layers: list[Layer], layers: list[Layer], plan: CoveragePlan
) -> dict[int, np.ndarray]:
    """Persons in each used PM2.5 cell, per PM2.5 year (nearest population year)."""
    cache: dict[int, np.ndarray] = {}
    out = {}
    pop_years = np.array([p.year for p in pop_layers])
    for layer in layers:
        j = int(np.argmin(np.abs(pop_years - layer.year)))
        if pop_years[j] != layer.year:
            log.info("PM2.5 %d: using population of %d (nearest year)", layer.year, pop_years[j])
        if j not in cache:
            cache[j] = _population_on_cells(pop_layers[j], plan)
        out[layer.year] = cache[j]
    return out


def _population_on_cells(pop: Layer, plan: CoveragePlan) -> np.ndarray:
    win = plan.window
    pm = win.grid
    pg = pop.grid
    if not (pg.is_geographic and CRS.from_user_input(pg.crs).equals(CRS.from_user_input(pm.crs))):
        raise CRSError(
            f"population raster {pop.name} must be on longitude/latitude in the same CRS as the "
            "PM2.5 raster; warp it first (e.g. gdalwarp -t_srs EPSG:4326)."
        )
    rows, cols = plan.rows_cols()
    pw = pg.window(win.bounds, margin=1)
    counts = pop.read(pw)
    counts = np.where(np.isfinite(counts) & (counts > 0), counts, 0.0)
    if pg.dx <= pm.dx * (1 + 1e-9) and pg.dy <= pm.dy * (1 + 1e-9):
        # finer population grid: sum the counts of population cells by their centre
        yc, xc = np.meshgrid(pw.row_centres(), pw.col_centres(), indexing="ij")
        r = np.floor((pm.north - yc) / pm.dy).astype(np.int64) - win.r0
        c = np.floor((xc - pm.west) / pm.dx).astype(np.int64) - win.c0
        ok = (r >= 0) & (r < win.shape[0]) & (c >= 0) & (c < win.shape[1]) & (counts > 0)
        flat = r[ok] * win.shape[1] + c[ok]
        pos = np.searchsorted(plan.cells, flat)
        pos = np.clip(pos, 0, max(plan.cells.size - 1, 0))
        hit = plan.cells[pos] == flat if plan.cells.size else np.zeros(flat.size, bool)
        return np.bincount(pos[hit], weights=counts[ok][hit], minlength=plan.cells.size)
    # coarser population grid: density of the population cell holding the PM2.5 cell centre
    y = win.row_centres()[rows]
    x = win.col_centres()[cols]
    pr = np.floor((pg.north - y) / pg.dy).astype(np.int64) - pw.r0
    pc = np.floor((x - pg.west) / pg.dx).astype(np.int64) - pw.c0
    ok = (pr >= 0) & (pr < pw.shape[0]) & (pc >= 0) & (pc < pw.shape[1])
    pop_area = cell_area_km2(pw.row_edges(), pg.dx)
    pm_area = cell_area_km2(win.row_edges(), pm.dx)
    out = np.zeros(rows.size)
    out[ok] = counts[pr[ok], pc[ok]] / pop_area[pr[ok]] * pm_area[rows[ok]]
    return out
