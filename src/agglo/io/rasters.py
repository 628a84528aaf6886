"""Reading yearly PM2.5 (and population) rasters window by window.

ACAG annual PM2.5 grids come as NetCDF (``PM25`` on ``lat``/``lon``, either order and direction,
``_FillValue``/``missing_value``, ``scale_factor``/``add_offset``) or GeoTIFF (one band per file,
or a multi-band stack with the year in each band's description), one file per year in a folder.
This module finds the year of every file, describes its grid as a north-up :class:`Grid`, and
reads only a window of it (a global 0.01° file is ~2.6 GB as float32: it is never loaded whole).

Layers are small picklable descriptions (path, variable, band, grid), so the per-year reads can
run on Dask workers. A large NetCDF read of a coverage plan's cells is shared with a forked child
when a second core is idle (:func:`_read_split`; HDF5's lock keeps threads from sharing it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import mmap
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from agglo._cores import usable_cores
from agglo._forked import ForkedCall, fork_obstacle
from agglo.errors import AggloInputError, CRSError

__all__ = [
    "NETCDF_SUFFIXES",
    "TIFF_SUFFIXES",
    "CellIndex",
    "Grid",
    "Layer",
    "discover_layers",
    "layer_units",
    "screen_pm25_values",
    "write_acag_netcdf",
    "year_from_name",
]

log = logging.getLogger(__name__)

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
TIFF_SUFFIXES = (".tif", ".tiff", ".gtiff")
#: variable names tried, in order, before "the first data variable"
PM25_VARIABLES = ("PM25", "pm25", "GWRPM25", "PM2.5", "PM2_5")
_LAT_NAMES = ("lat", "latitude", "Lat", "Latitude", "LAT", "y_lat")
_LON_NAMES = ("lon", "longitude", "Lon", "Longitude", "LON", "long", "x_lon")
_TIME_NAMES = ("time", "year", "years", "band", "t")
WGS84_NOTE = "NetCDF lat/lon grid taken as EPSG:4326 (WGS84 longitude/latitude)"

# HDF5 (under netCDF4) is not thread-safe in most builds: serialise NetCDF reads in a process.
_NC_LOCK = threading.Lock()
# rows per read band at least (bands of whole chunks bound the raw block read at once)
_MIN_BAND_ROWS = 256

# YYYY, YYYYMM or YYYYMM-YYYYMM not embedded in a longer number
_YEAR_RE = re.compile(
    r"(?<![0-9])((?:19|20)\d\d)(0[1-9]|1[0-2])?(?:-((?:19|20)\d\d)(0[1-9]|1[0-2])?)?(?![0-9])"
)


def year_from_name(name: str) -> int | None:
    """The year of an annual file from its name, or ``None`` if there is no single year.

    Understands ACAG names: ``V6GL02.04.CNNPM25.0p10.Global.2020.nc``,
    ``V5GL03.HybridPM25.China.201901-201912.nc`` and ``....GL.202001-202012.nc``. A monthly
    period (``202001-202001``) or several different years give ``None``.

    Examples
    --------
    >>> year_from_name("V6GL02.04.CNNPM25.0p10.Global.2020.nc")
    2020
    >>> year_from_name("V5GL03.HybridPM25.China.201901-201912.nc")
    2019
    >>> year_from_name("V5GL03.HybridPM25.China.201903-201903.nc") is None
    True
    """
    years: set[int] = set()
    for m in _YEAR_RE.finditer(name):
        y1, m1, y2, m2 = m.groups()
        if y2 is not None and (y1 != y2 or (m1 or "01") != "01" or (m2 or "12") != "12"):
            return None  # a monthly or multi-year period, not an annual file
        years.add(int(y1))
    return years.pop() if len(years) == 1 else None


@dataclass(frozen=True)
class Grid:
    """A north-up regular grid: cell (row 0, col 0) is the north-west corner.

    Attributes
    ----------
    west, north
        Coordinates of the outer edges (degrees for geographic grids).
    dx, dy
        Positive cell sizes along x and y.
    nx, ny
        Number of columns and rows.
    crs
        WKT (or ``"EPSG:4326"``) of the grid.
    """

    west: float
    north: float
    dx: float
    dy: float
    nx: int
    ny: int
    crs: str = "EPSG:4326"

    @property
    def east(self) -> float:
        return self.west + self.nx * self.dx

    @property
    def south(self) -> float:
        return self.north - self.ny * self.dy

    @property
    def is_geographic(self) -> bool:
        return CRS.from_user_input(self.crs).is_geographic

    def key(self) -> tuple:
        """Hashable identity (rounded so float noise does not split one grid in two)."""
        r = 9
        return (
            round(self.west, r),
            round(self.north, r),
            round(self.dx, 12),
            round(self.dy, 12),
            self.nx,
            self.ny,
            CRS.from_user_input(self.crs).to_wkt(),
        )

    def same_as(self, other: Grid) -> bool:
        return self.key() == other.key()

    def window(self, bounds: tuple[float, float, float, float], *, margin: int = 1) -> Window:
        """The (possibly virtual) window of this grid's lattice covering ``bounds``.

        The window may extend beyond the grid: cells outside it simply have no data. For
        geographic grids it is clipped to latitudes -90..90.
        """
        minx, miny, maxx, maxy = bounds
        c0 = math.floor((minx - self.west) / self.dx + 1e-9) - margin
        c1 = math.ceil((maxx - self.west) / self.dx - 1e-9) + margin
        r0 = math.floor((self.north - maxy) / self.dy + 1e-9) - margin
        r1 = math.ceil((self.north - miny) / self.dy - 1e-9) + margin
        if self.is_geographic:
            r_top = math.ceil((self.north - 90.0) / self.dy - 1e-9)
            r_bottom = math.floor((self.north + 90.0) / self.dy + 1e-9)
            r0, r1 = max(r0, r_top), min(r1, r_bottom)
        c1, r1 = max(c1, c0 + 1), max(r1, r0 + 1)
        return Window(self, r0, r1, c0, c1)


@dataclass(frozen=True)
class Window:
    """Rows ``r0:r1`` and columns ``c0:c1`` of ``grid``'s lattice (may reach outside it)."""

    grid: Grid
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r1 - self.r0, self.c1 - self.c0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        g = self.grid
        return (
            g.west + self.c0 * g.dx,
            g.north - self.r1 * g.dy,
            g.west + self.c1 * g.dx,
            g.north - self.r0 * g.dy,
        )

    def row_edges(self) -> np.ndarray:
        """Northern edges of rows r0..r1 then the southern edge of the last (length nrows+1)."""
        g = self.grid
        return g.north - np.arange(self.r0, self.r1 + 1) * g.dy

    def col_centres(self) -> np.ndarray:
        g = self.grid
        return g.west + (np.arange(self.c0, self.c1) + 0.5) * g.dx

    def row_centres(self) -> np.ndarray:
        g = self.grid
        return g.north - (np.arange(self.r0, self.r1) + 0.5) * g.dy

    def inside(self) -> tuple[slice, slice, slice, slice]:
        """(grid rows, grid cols, window rows, window cols) slices of the overlap with the grid."""
        g = self.grid
        gr0, gr1 = max(self.r0, 0), min(self.r1, g.ny)
        gc0, gc1 = max(self.c0, 0), min(self.c1, g.nx)
        if gr1 <= gr0 or gc1 <= gc0:
            return slice(0, 0), slice(0, 0), slice(0, 0), slice(0, 0)
        return (
            slice(gr0, gr1),
            slice(gc0, gc1),
            slice(gr0 - self.r0, gr1 - self.r0),
            slice(gc0 - self.c0, gc1 - self.c0),
        )


@dataclass(frozen=True, eq=False)
class _Band:
    """One read of a :class:`CellIndex`: stored rows and columns, and where its cells go."""

    rows: slice
    cols: slice
    start: int
    stop: int
    flat: np.ndarray  # positions of the cells in the band's block (C order as stored)

    @property
    def stored_cells(self) -> int:
        """Cells of the stored block this band reads and decompresses (its read cost)."""
        return (self.rows.stop - self.rows.start) * (self.cols.stop - self.cols.start)


@dataclass(frozen=True, eq=False)
class CellIndex:
    """Where a set of grid cells sits in the stored blocks of one layout (see
    :meth:`Layer.cell_index`); computed once per coverage plan and layout, reused every year.

    Attributes
    ----------
    n
        Number of cells asked for.
    inside
        Mask of the cells inside the grid (None: all are); the others read as NaN.
    bands
        The reads, in cell order.
    layout
        :attr:`Layer.layout` the index was built for.
    """

    n: int
    inside: np.ndarray | None
    bands: tuple[_Band, ...]
    layout: tuple

    @property
    def stored_cells(self) -> int:
        """Stored cells a read of this index decompresses (whole bands)."""
        return sum(b.stored_cells for b in self.bands)

    @functools.cached_property
    def inside_runs(self) -> list[tuple[int, int, int]] | None:
        """The cells inside the grid as runs ``(start, stop, first value)`` of consecutive
        positions (a window reaching past the grid's edge has a few: China's counties at
        0.01°, 11), or None when there are too many to pay (then a mask is used)."""
        if self.inside is None:
            return [(0, self.n, 0)]
        step = np.diff(self.inside.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, stops = np.flatnonzero(step == 1), np.flatnonzero(step == -1)
        if starts.size > max(64, self.n // 1024):
            return None
        first = np.r_[0, np.cumsum(stops - starts)[:-1]]
        return list(zip(starts.tolist(), stops.tolist(), first.tolist(), strict=True))

    @functools.cached_property
    def outside(self) -> np.ndarray:
        """Positions of the cells outside the grid (always missing)."""
        if self.inside is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(~self.inside)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The index as plain arrays (for an on-disk cache; :meth:`from_arrays` inverts it).

        Examples
        --------
        >>> g = Grid(west=0, north=2, dx=1, dy=1, nx=3, ny=2)
        >>> idx = Layer(2020, "xarray", g).cell_index(np.array([0, 1]), np.array([2, 5]))
        >>> back = CellIndex.from_arrays(idx.to_arrays(), idx.layout)
        >>> back.n, back.inside.tolist(), back.bands[0].flat.tolist()
        (2, [True, False], [0])
        """
        table = np.array(
            [
                [b.rows.start, b.rows.stop, b.cols.start, b.cols.stop, b.start, b.stop]
                for b in self.bands
            ],
            dtype=np.int64,
        ).reshape(-1, 6)
        wide = any(b.flat.dtype == np.int64 for b in self.bands)
        flat = (
            np.concatenate([b.flat for b in self.bands]).astype(
                np.int64 if wide else np.int32, copy=False
            )
            if self.bands
            else np.zeros(0, np.int32)
        )
        out = {"n_cells": np.array([self.n], dtype=np.int64), "bands": table, "flat": flat}
        if self.inside is not None:
            out["inside"] = self.inside
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], layout: tuple) -> CellIndex:
        """The index stored by :meth:`to_arrays` (for ``layout``)."""
        flat = arrays["flat"]
        bands, at = [], 0
        for r0, r1, c0, c1, a, b in arrays["bands"].tolist():
            part = flat[at : at + b - a]
            if part.size and (part.min() < 0 or part.max() >= (r1 - r0) * (c1 - c0)):
                raise ValueError("cell index: positions outside their band")
            bands.append(_Band(slice(r0, r1), slice(c0, c1), a, b, part))
            at += b - a
        if at != flat.size:
            raise ValueError("cell index: band table and positions disagree")
        return cls(int(arrays["n_cells"][0]), arrays.get("inside"), tuple(bands), layout)


@dataclass(frozen=True)
class Layer:
    """One year of one raster source: where to read it and on which grid.

    ``kind`` is ``"netcdf"``, ``"geotiff"`` or ``"xarray"``; ``flip_rows`` is True when the
    stored rows run south to north (ascending latitude); ``transpose`` when the stored axes are
    (lon, lat); ``index`` selects a time step / band (``None`` for 2-D variables).
    """

    year: int
    kind: str
    grid: Grid
    path: Path | None = None
    variable: str | None = None
    index: int | None = None
    flip_rows: bool = False
    transpose: bool = False
    data: Any = field(default=None, compare=False, repr=False)
    note: str = ""

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.name + (f"#{self.variable}" if self.variable else "")
        return f"<DataArray {self.variable or ''}>"

    def read(self, window: Window) -> np.ndarray:
        """Values of ``window`` as float64, north-up, NaN where missing or outside the grid."""
        out = np.full(window.shape, np.nan, dtype=np.float64)
        gr, gc, wr, wc = window.inside()
        if gr.stop - gr.start <= 0:
            return out
        out[wr, wc] = self._read_block(gr, gc)
        return out

    def read_cells(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values (float64, NaN = missing) at grid cells ``rows``/``cols`` (north-up).

        Cells outside the grid are NaN. Same as :meth:`read_indexed` on
        :meth:`cell_index` (build the index once to read many years of one layout).
        """
        return self.read_indexed(self.cell_index(rows, cols))

    def cell_index(
        self, rows: np.ndarray, cols: np.ndarray, *, overwrite: bool = False
    ) -> CellIndex:
        """Where grid cells ``rows``/``cols`` sit in this layer's stored blocks.

        The index depends only on the layout (kind, grid, row order, axis order), so one index
        serves every year stored the same way. Cells sorted by row (as a coverage plan's) are
        split into bands of whole storage chunks (NetCDF chunks, GeoTIFF blocks), each read
        over only the columns its cells use: a year is read band by band at the file's dtype,
        never as one window-sized block. ``overwrite=True`` lets it reuse ``rows`` and
        ``cols`` (integer arrays the caller no longer needs) as scratch.
        """
        rows, cols = np.asarray(rows), np.asarray(cols)
        n = rows.size
        ny, nx = self.grid.ny, self.grid.nx
        mask = None
        # bounds first (four reductions): a mask of every cell only when some lie outside
        if n and not (rows.min() >= 0 and rows.max() < ny and cols.min() >= 0 and cols.max() < nx):
            mask = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        if mask is not None:
            if overwrite:  # compact in place: no second copy of the (large) inputs
                k = int(np.count_nonzero(mask))
                rows[:k] = rows[mask]
                cols[:k] = cols[mask]
                rows, cols = rows[:k], cols[:k]
            else:
                rows, cols = rows[mask], cols[mask]
        layout = self.layout
        if rows.size == 0:
            return CellIndex(n, mask, (), layout)
        if self.kind == "xarray" or (rows.size > 1 and (rows[1:] < rows[:-1]).any()):
            bands = [(0, rows.size, rows, cols)]  # one block (unsorted cells, or in memory)
        else:
            # sorted rows: each band of whole chunks is a run of cells (no per-cell band ids)
            height = self._band_height()
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            if self.flip_rows:  # stored row = ny - 1 - row: chunk edges at rows ny - k * height
                edges = np.arange(ny - (ny - hi) // height * height, lo, -height)[::-1]
            else:
                edges = np.arange((lo // height + 1) * height, hi, height)
            edges = edges[(edges > lo) & (edges < hi)].astype(rows.dtype)  # no cast of rows
            cuts = np.searchsorted(rows, edges)
            starts, stops = np.r_[0, cuts], np.r_[cuts, rows.size]
            bands = [
                (a, b, rows[a:b], cols[a:b])
                for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
                if b > a
            ]
        out = []
        for a, b, r, c in bands:
            r0, r1 = int(r.min()), int(r.max()) + 1
            c0, c1 = int(c.min()), int(c.max()) + 1
            if self.kind == "xarray":
                flat = (r - r0) * (c1 - c0) + (c - c0)
                out.append(_Band(slice(r0, r1), slice(c0, c1), int(a), int(b), flat))
                continue
            srows = self._stored_rows(slice(r0, r1))
            nr = srows.stop - srows.start
            dtype = np.int32 if nr * (c1 - c0) < 2**31 else np.int64
            # stored row and column within the band, computed at the band's dtype and
            # combined in place: two arrays of the band's cells, not six
            if self.flip_rows:
                ri = np.subtract(ny - 1 - srows.start, r, dtype=dtype)
            else:
                ri = np.subtract(r, r0, dtype=dtype)
            ci = np.subtract(c, c0, dtype=dtype)
            major, minor, stride = (ci, ri, nr) if self.transpose else (ri, ci, c1 - c0)
            flat = np.multiply(major, stride, out=major)
            flat += minor
            del ri, ci, major, minor
            out.append(_Band(srows, slice(c0, c1), int(a), int(b), flat))
        return CellIndex(n, mask, tuple(out), layout)

    @property
    def layout(self) -> tuple:
        """What a :class:`CellIndex` depends on: kind, grid, row and axis order."""
        return (self.kind, self.grid.key(), self.flip_rows, self.transpose)

    def _band_height(self) -> int:
        """Stored rows per read band: whole chunks / blocks, at least _MIN_BAND_ROWS rows."""
        height = 0
        try:
            if self.kind == "netcdf":
                import netCDF4

                with _NC_LOCK, netCDF4.Dataset(self.path) as ds:
                    chunks = ds.variables[self.variable].chunking()
                if isinstance(chunks, list):
                    height = int(chunks[-1] if self.transpose else chunks[-2])
            elif self.kind == "geotiff":
                import rasterio

                with rasterio.open(self.path) as ds:
                    height = int(ds.block_shapes[self.index or 0][0])
        except Exception:  # the read itself reports unreadable files
            height = 0
        if height <= 0:
            return _MIN_BAND_ROWS
        return height * max(1, -(-_MIN_BAND_ROWS // height))

    def read_indexed(self, index: CellIndex, *, out: np.ndarray | None = None) -> np.ndarray:
        """Values (float64, NaN = missing) of the cells of ``index`` (same layout).

        NetCDF and GeoTIFF bands are read raw at the file's dtype (no masked array, no float64
        copy of a block) and only the gathered cells are decoded (fill/nodata values, valid
        range, scale/offset); NetCDF cells are decoded straight into the result, band by band
        when every cell is inside the grid (no array of all the raw cells).

        Parameters
        ----------
        index
            From :meth:`cell_index` on a layer of the same layout.
        out
            A float64 array of ``index.n`` values to write the result into (to reuse one
            buffer across years); default a new array (in a shared mapping when the read is
            split with a forked child, which decodes its cells into it).

        Returns
        -------
        numpy.ndarray
            ``out``, or the new array.
        """
        if index.layout != self.layout:
            raise ValueError(f"cell index of layout {index.layout} used on {self.layout}")
        if out is not None and (out.shape != (index.n,) or out.dtype != np.float64):
            raise ValueError(f"out must be a float64 array of {index.n} values")
        if not index.bands:
            out = np.empty(index.n) if out is None else out
            out.fill(np.nan)
            return out
        if self.kind == "netcdf" and index.inside is None:
            try:
                return self._read_netcdf_into(index.bands, out)
            except AggloInputError:
                raise
            except Exception as exc:
                raise AggloInputError(
                    f"{self.name}: could not read the data ({type(exc).__name__}: {exc}). The "
                    "file may be truncated or corrupt: download it again."
                ) from exc
        if out is None:
            out = np.empty(index.n)
        try:
            if self.kind == "xarray":
                vals = np.empty(index.bands[-1].stop)
                for band in index.bands:
                    block = self._read_block(band.rows, band.cols)
                    vals[band.start : band.stop] = block.reshape(-1)[band.flat]
                _place(out, vals, index)
            elif self.kind == "geotiff":
                _place(out, self._read_geotiff_cells(index.bands), index)
            else:
                vals, attrs = self._read_netcdf_cells(index.bands)
                _cf_decode_into(out, vals, attrs, index)
        except AggloInputError:
            raise
        except Exception as exc:
            raise AggloInputError(
                f"{self.name}: could not read the data ({type(exc).__name__}: {exc}). The file "
                "may be truncated or corrupt: download it again."
            ) from exc
        return out

    def _read_netcdf_cells(self, bands: tuple[_Band, ...]) -> tuple[np.ndarray, dict]:
        """The raw gathered cells (file dtype) and the variable's attributes.

        A large read (:data:`_SPLIT_READ_CELLS` stored cells or more) is shared with a forked
        child when a second core is free (:func:`_read_split`): the child reads the first
        bands and this process the others, each writing its cells into one shared buffer."""
        import netCDF4

        cut = _read_split(bands)
        with _NC_LOCK, netCDF4.Dataset(self.path) as ds:
            var = ds.variables[self.variable]
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            if cut is None:
                var.set_auto_maskandscale(False)
                _no_chunk_cache(var)
                vals = np.empty(bands[-1].stop, dtype=var.dtype)
                self._gather_bands(var, bands, vals)
                return vals, attrs
            dtype = np.dtype(var.dtype)
        # an anonymous shared mapping: the child's cells land here without being sent back
        buf = mmap.mmap(-1, max(bands[-1].stop * dtype.itemsize, 1))
        vals = np.frombuffer(buf, dtype=dtype, count=bands[-1].stop)
        _split_with_child(self._read_bands_into, bands, cut, vals)
        return vals, attrs

    def _read_netcdf_into(self, bands: tuple[_Band, ...], out: np.ndarray | None) -> np.ndarray:
        """The cells of ``bands`` (every one inside the grid: a band's cells are the
        positions ``start:stop``) read and decoded band by band into ``out`` (a new array
        when None), shared with a forked child like :meth:`_read_netcdf_cells`: both decode
        their bands into one array in a shared mapping (``out`` itself when None, else
        copied into ``out``)."""
        n = bands[-1].stop
        cut = _read_split(bands)
        if cut is None:
            out = np.empty(n) if out is None else out
            self._decode_bands_into(bands, out)
            return out
        # an anonymous shared mapping: the child's cells land here without being sent back.
        # Populated at once (one kernel call, not a fault per page in each process): its pages
        # are this process's from the start, never the child's own
        populate = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        shared = np.frombuffer(mmap.mmap(-1, n * 8, flags=populate), dtype=np.float64, count=n)
        _split_with_child(self._decode_bands_into, bands, cut, shared)
        if out is None:
            return shared
        np.copyto(out, shared)
        return out

    def _decode_bands_into(self, bands: tuple[_Band, ...], out: np.ndarray) -> None:
        """Read each band raw, gather its cells and CF-decode them into their positions of
        ``out`` (a band's temporaries only: no array of every raw cell)."""
        import netCDF4

        with _NC_LOCK, netCDF4.Dataset(self.path) as ds:
            var = ds.variables[self.variable]
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            var.set_auto_maskandscale(False)
            _no_chunk_cache(var)
            for band in bands:
                raw = np.asarray(
                    var[_nc_key(var.ndim, self.index, band.rows, band.cols, self.transpose)]
                )
                # positions within the band by construction (checked when read from a cache)
                cells = np.take(raw.reshape(-1), band.flat, mode="clip")
                del raw
                _cf_decode(out[band.start : band.stop], cells, attrs)

    def _read_bands_into(self, bands: tuple[_Band, ...], vals: np.ndarray) -> None:
        import netCDF4

        with _NC_LOCK, netCDF4.Dataset(self.path) as ds:
            var = ds.variables[self.variable]
            var.set_auto_maskandscale(False)
            _no_chunk_cache(var)
            self._gather_bands(var, bands, vals)

    def _gather_bands(self, var: Any, bands: tuple[_Band, ...], vals: np.ndarray) -> None:
        """Read each band raw and gather its cells into ``vals`` (positions of the band)."""
        for band in bands:
            raw = np.asarray(
                var[_nc_key(var.ndim, self.index, band.rows, band.cols, self.transpose)]
            )
            # positions within the band by construction (checked when read from a cache):
            # mode="clip" spares the buffered copy numpy makes of `out` with mode="raise"
            np.take(raw.reshape(-1), band.flat, out=vals[band.start : band.stop], mode="clip")

    def _read_geotiff_cells(self, bands: tuple[_Band, ...]) -> np.ndarray:
        """GeoTIFF cells read raw at the file's dtype; only the gathered ones are decoded."""
        import rasterio
        from rasterio.enums import MaskFlags
        from rasterio.windows import Window as RWindow

        band_no = (self.index or 0) + 1
        n = bands[-1].stop
        bad = np.zeros(n, dtype=bool)
        vals = None
        with rasterio.open(self.path) as ds:
            flags = ds.mask_flag_enums[band_no - 1]
            has_mask = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
            for band in bands:
                srows, cols = band.rows, band.cols
                win = RWindow(
                    cols.start, srows.start, cols.stop - cols.start, srows.stop - srows.start
                )
                raw = ds.read(band_no, window=win)
                if vals is None:
                    vals = np.empty(n, dtype=raw.dtype)
                part = slice(band.start, band.stop)
                np.take(raw.reshape(-1), band.flat, out=vals[part])
                if has_mask:  # a mask band
                    bad[part] |= ds.read_masks(band_no, window=win).reshape(-1)[band.flat] == 0
            nodata = ds.nodatavals[band_no - 1]
            scale = ds.scales[band_no - 1] if ds.scales else 1.0
            offset = ds.offsets[band_no - 1] if ds.offsets else 0.0
        if nodata is not None and not np.isnan(nodata):
            bad |= vals == np.asarray(nodata).astype(vals.dtype)
        out = vals.astype(np.float64)
        if scale not in (None, 1.0) or offset not in (None, 0.0):
            out = out * (scale or 1.0) + (offset or 0.0)
        out[bad | ~np.isfinite(out)] = np.nan
        return out

    # -- backends ----------------------------------------------------------------------------
    def _stored_rows(self, rows: slice) -> slice:
        if not self.flip_rows:
            return rows
        ny = self.grid.ny
        return slice(ny - rows.stop, ny - rows.start)

    def _read_block(self, rows: slice, cols: slice) -> np.ndarray:
        srows = self._stored_rows(rows)
        try:
            if self.kind == "netcdf":
                block = self._read_netcdf(srows, cols)
            elif self.kind == "geotiff":
                block = self._read_geotiff(srows, cols)
            else:
                block = self._read_xarray(srows, cols)
        except AggloInputError:
            raise
        except Exception as exc:  # truncated / corrupt files fail here, not only at open
            raise AggloInputError(
                f"{self.name}: could not read the data ({type(exc).__name__}: {exc}). The file "
                "may be truncated or corrupt: download it again."
            ) from exc
        if self.flip_rows:
            block = block[::-1]
        return block

    def _read_netcdf(self, srows: slice, cols: slice) -> np.ndarray:
        import netCDF4

        with _NC_LOCK, netCDF4.Dataset(self.path) as ds:
            var = ds.variables[self.variable]
            var.set_auto_maskandscale(True)
            key = _nc_key(var.ndim, self.index, srows, cols, self.transpose)
            arr = var[key]
        arr = np.ma.asarray(arr)
        if self.transpose:
            arr = arr.T
        return _to_float(arr)

    def _read_geotiff(self, srows: slice, cols: slice) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window as RWindow

        band = (self.index or 0) + 1
        with rasterio.open(self.path) as ds:
            win = RWindow(cols.start, srows.start, cols.stop - cols.start, srows.stop - srows.start)
            arr = ds.read(band, window=win, masked=True)
            scale = ds.scales[band - 1] if ds.scales else 1.0
            offset = ds.offsets[band - 1] if ds.offsets else 0.0
        out = _to_float(arr)
        if scale not in (None, 1.0) or offset not in (None, 0.0):
            out = out * (scale or 1.0) + (offset or 0.0)
        return out

    def _read_xarray(self, srows: slice, cols: slice) -> np.ndarray:
        da = self.data
        lat, lon = _find_dim(da.dims, _LAT_NAMES), _find_dim(da.dims, _LON_NAMES)
        sel = {lat: srows, lon: cols}
        tdim = [d for d in da.dims if d not in (lat, lon)]
        if tdim:
            sel[tdim[0]] = self.index or 0
        sub = da.isel(sel).transpose(lat, lon)
        arr = np.asarray(sub.values, dtype=np.float64)
        fill = da.attrs.get("_FillValue", da.encoding.get("_FillValue"))
        if fill is not None:
            arr = np.where(arr == fill, np.nan, arr)
        return arr


#: Stored cells (decompressed) of one NetCDF read from which it is split across two processes
#: (below it a fork, ~20 ms, costs more than half the read saves; China's counties at 0.01°
#: read ~15 M a year). Tests set it to 0 to force the split on small data.
_SPLIT_READ_CELLS = 8_000_000


_WHOLE_READS = [0]  # > 0: inside whole_reads()


@contextlib.contextmanager
def whole_reads() -> Iterator[None]:
    """Within this block, NetCDF reads are never split with a forked child (:func:`_read_split`).

    For a caller reading many years in turn in one process (``zonal_pm25(...,
    scheduler='synchronous')``): a fork per year costs more than the split saves (26 years of
    China's counties: 16.0-16.6 CPU-s and 11.7-12.1 s with a split per read, 12.1 CPU-s and
    11.0 s without; 2026-12-03, load 1.3); the years are split across processes instead
    (``scheduler=None``).

    Examples
    --------
    >>> with whole_reads():
    ...     pass
    """
    _WHOLE_READS[0] += 1
    try:
        yield
    finally:
        _WHOLE_READS[0] -= 1


def _read_split(bands: tuple[_Band, ...]) -> int | None:
    """Where to cut ``bands`` into a forked child's share (the first bands) and this
    process's, of about equal stored cells to decompress; None to read them all here.

    Departure from DESIGN.md (one process per stage): HDF5 holds a lock (and netCDF4 the GIL)
    for the whole read, so threads cannot share it, but a forked child reading other bands
    can; it writes its cells into a shared buffer, so the values are the very same. Only for
    large reads, on Linux with the ``fork`` start method, with two usable cores, and only
    from a process that is neither a daemonic worker (which may not fork), nor running
    other threads (the child would inherit their locks), nor has children of its own at
    work (the years already split across processes, or the pipeline's stages side by side:
    no idle core then).
    """
    if len(bands) < 2 or _WHOLE_READS[0]:
        return None
    cost = np.cumsum([b.stored_cells for b in bands])
    if cost[-1] < max(_SPLIT_READ_CELLS, 1):
        return None
    if not _free_to_fork():
        return None
    cut = int(np.searchsorted(cost, cost[-1] / 2)) + 1  # the child's bands end at the midpoint
    return min(max(cut, 1), len(bands) - 1)


def _free_to_fork() -> bool:
    """Whether this process may fork a helper now, with a core for it (see :func:`_read_split`):
    two usable cores and :func:`agglo._forked.fork_obstacle` with no children at work (its
    allowed threads include zonal_pm25's validity check, GEOS only: it holds no lock a reading
    child needs)."""
    return usable_cores() >= 2 and fork_obstacle(children=False) is None


def _split_with_child(
    read: Callable[[tuple[_Band, ...], np.ndarray], None],
    bands: tuple[_Band, ...],
    cut: int,
    shared: np.ndarray,
) -> None:
    """``read(bands, shared)`` with the first ``cut`` bands read by a forked child and the
    others by this process, both writing into ``shared`` (an array in a shared mapping)."""
    half = ForkedCall.start(read, bands[:cut], shared, name="NetCDF read")
    try:
        read(bands[cut:], shared)
    except BaseException:
        half.kill()
        raise
    half.result()


def _no_chunk_cache(var: Any) -> None:
    """Turn off HDF5's chunk cache of ``var`` (open for a banded read): the bands of a
    :class:`CellIndex` are whole rows of chunks, so each chunk is decompressed once and the
    cache (64 MB per variable by default) would only hold chunks never read again: it cost a
    split read's child 64 MB of private pages, and each band a copy (same values either way)."""
    with contextlib.suppress(Exception):  # an older netCDF4, or no HDF5 cache to size
        var.set_var_chunk_cache(size=0)


def _nc_key(ndim: int, index: int | None, srows: slice, cols: slice, transpose: bool) -> tuple:
    spatial = (cols, srows) if transpose else (srows, cols)
    if ndim == 2:
        return spatial
    if ndim == 3:
        return (index or 0, *spatial)
    raise AggloInputError(f"expected a 2-D or 3-D PM2.5 variable, got {ndim} dimensions")


def _place(out: np.ndarray, vals: np.ndarray, index: CellIndex) -> None:
    """Put the values of the cells inside the grid into ``out`` (NaN for the others)."""
    if index.inside is None:
        out[:] = vals
        return
    runs = index.inside_runs
    if runs is None:
        out[index.inside] = vals
    else:  # a few runs of slice copies beat a boolean-mask assignment of every cell
        for a, b, first in runs:
            out[a:b] = vals[first : first + b - a]
    out[index.outside] = np.nan


def _cf_decode_into(
    out: np.ndarray, vals: np.ndarray, attrs: dict[str, Any], index: CellIndex
) -> None:
    """CF decoding of the raw gathered ``vals`` (fill/missing/valid range -> NaN, then scale
    and offset) written into ``out`` (all of ``index``'s cells): the missing-value tests run
    on the raw values, there is no float64 copy of them, and NaN is written only where a
    cell is missing."""
    if index.inside is None:
        _cf_decode(out, vals, attrs)
        return
    bad = _cf_bad(vals, attrs)
    if vals.dtype.kind == "f":
        bad |= ~np.isfinite(vals)
    _place(out, vals, index)
    if "scale_factor" in attrs:
        out *= float(attrs["scale_factor"])
    if "add_offset" in attrs:
        out += float(attrs["add_offset"])
    if "scale_factor" in attrs or "add_offset" in attrs:
        bad |= ~np.isfinite(out[index.inside])  # a scaled value that overflows is missing
    if bad.any():
        full = np.zeros(index.n, dtype=bool)
        full[index.inside] = bad
        out[full] = np.nan


def _cf_decode(out: np.ndarray, vals: np.ndarray, attrs: dict[str, Any]) -> None:
    """CF decoding of the raw ``vals`` into ``out`` (same length; see :func:`_cf_decode_into`,
    of which this is the case of every cell inside the grid)."""
    bad = _cf_bad(vals, attrs)
    if vals.dtype.kind == "f":
        bad |= ~np.isfinite(vals)
    out[:] = vals
    if "scale_factor" in attrs:
        out *= float(attrs["scale_factor"])
    if "add_offset" in attrs:
        out += float(attrs["add_offset"])
    if "scale_factor" in attrs or "add_offset" in attrs:
        bad |= ~np.isfinite(out)  # a scaled value that overflows is missing
    if bad.any():
        out[bad] = np.nan


def _cf_bad(vals: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Raw values that are fill, missing or outside the valid range (CF)."""
    import netCDF4

    dt = vals.dtype
    fill = attrs.get("_FillValue", netCDF4.default_fillvals.get(dt.str[1:]))
    bad = np.zeros(vals.shape, dtype=bool)
    if fill is not None:
        bad |= vals == np.asarray(fill).astype(dt)
    if "missing_value" in attrs:
        bad |= np.isin(vals, np.atleast_1d(np.asarray(attrs["missing_value"]).astype(dt)))
    lo, hi = attrs.get("valid_min"), attrs.get("valid_max")
    if "valid_range" in attrs:
        lo, hi = np.asarray(attrs["valid_range"])[:2]
    if lo is not None:
        bad |= vals < np.asarray(lo).astype(dt)
    if hi is not None:
        bad |= vals > np.asarray(hi).astype(dt)
    return bad


def _to_float(arr: np.ndarray) -> np.ndarray:
    m = np.ma.asarray(arr)
    out = np.asarray(
        m.filled(np.nan) if m.dtype.kind == "f" else m.astype(np.float64).filled(np.nan)
    )
    out = out.astype(np.float64, copy=False)
    out[~np.isfinite(out)] = np.nan
    return out


# -- discovery -------------------------------------------------------------------------------
def discover_layers(
    source: Any,
    *,
    years: list[int] | None = None,
    variable: str | None = None,
    crs: Any = None,
    what: str = "PM2.5 raster",
) -> list[Layer]:
    """All yearly layers of ``source`` (a file, a folder or an xarray object), sorted by year.

    Parameters
    ----------
    source
        NetCDF/GeoTIFF file, a folder of yearly files, or an ``xarray.DataArray`` / ``Dataset``.
    years
        Keep only these years; a missing year is an error naming the years found.
    variable
        NetCDF variable (default ``PM25``, else the first data variable on lat/lon).
    crs
        CRS of a raster whose file has none (GeoTIFF without CRS); NetCDF lat/lon grids are
        taken as EPSG:4326.
    what
        Name used in messages.

    Raises
    ------
    AggloInputError
        Missing/unreadable files, no year in a name, a requested year absent, a raster without
        CRS when ``crs`` is not given.
    """
    if crs is not None:
        _check_user_crs(crs, what)
    layers: list[Layer] = []
    other_years = set()
    if _is_xarray(source):
        layers = _xarray_layers(source, variable=variable, crs=crs)
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in NETCDF_SUFFIXES + TIFF_SUFFIXES
            )
            if not files:
                raise AggloInputError(
                    f"{what}: folder {path} holds no NetCDF (.nc) or GeoTIFF (.tif) files."
                )
            skipped = []
            other_years: set[int] = set()
            for f in files:
                y = year_from_name(f.name)
                if y is None:  # maybe a stack with years inside (time axis, band descriptions)
                    try:
                        layers.extend(_file_layers(f, variable=variable, crs=crs, what=what))
                    except CRSError:
                        raise
                    except AggloInputError:
                        skipped.append(f.name)
                    continue
                if years is not None and y not in years:
                    other_years.add(y)
                    continue
                layers.extend(_file_layers(f, variable=variable, crs=crs, what=what, year=y))
            if skipped:
                log.warning(
                    "%s: skipped %d file(s) with no single year in the name (monthly or "
                    "multi-year files?): %s",
                    what,
                    len(skipped),
                    ", ".join(skipped[:10]),
                )
        elif path.is_file():
            layers = _file_layers(path, variable=variable, crs=crs, what=what)
        else:
            raise AggloInputError(f"{what}: {path} does not exist (give a file or a folder).")
    by_year: dict[int, Layer] = {}
    for layer in layers:
        if layer.year in by_year:
            raise AggloInputError(
                f"{what}: year {layer.year} is given twice ({by_year[layer.year].name} and "
                f"{layer.name}); keep one file per year or select with --years."
            )
        by_year[layer.year] = layer
    if years is not None:
        missing = sorted(set(years) - set(by_year))
        if missing:
            raise AggloInputError(
                f"{what}: no data for year(s) {missing} in {_describe(source)}; years found: "
                f"{sorted(set(by_year) | other_years) or 'none'}."
            )
        by_year = {y: layer for y, layer in by_year.items() if y in years}
    if not by_year:
        raise AggloInputError(f"{what}: found no yearly layers in {_describe(source)}.")
    return [by_year[y] for y in sorted(by_year)]


def _check_user_crs(crs: Any, what: str) -> None:
    from pyproj.exceptions import CRSError as ProjCRSError

    try:
        CRS.from_user_input(crs)
    except ProjCRSError as exc:
        raise CRSError(
            f"{what}: {crs!r} is not a CRS pyproj knows ({exc}); give e.g. EPSG:4326 "
            "(--raster-crs EPSG:4326)."
        ) from exc


def _describe(source: Any) -> str:
    return "the DataArray" if _is_xarray(source) else str(source)


def _is_xarray(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("xarray")


def _file_layers(
    path: Path, *, variable: str | None, crs: Any, what: str, year: int | None = None
) -> list[Layer]:
    suffix = path.suffix.lower()
    if suffix in NETCDF_SUFFIXES:
        return _netcdf_layers(path, variable=variable, crs=crs, what=what, year=year)
    if suffix in TIFF_SUFFIXES:
        return _geotiff_layers(path, crs=crs, what=what, year=year)
    raise AggloInputError(
        f"{what}: {path.name} is neither NetCDF ({', '.join(NETCDF_SUFFIXES)}) nor GeoTIFF "
        f"({', '.join(TIFF_SUFFIXES)})."
    )


def _find_dim(names: Any, candidates: tuple[str, ...]) -> str | None:
    for c in candidates:
        if c in names:
            return c
    return None


def grid_from_coords(lat: np.ndarray, lon: np.ndarray, *, crs: str, name: str) -> tuple[Grid, bool]:
    """North-up :class:`Grid` from cell-centre coordinates; returns (grid, rows_ascending)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 1 or lon.ndim != 1 or lat.size < 2 or lon.size < 2:
        raise AggloInputError(f"{name}: lat/lon must be 1-D with at least 2 values each.")
    dy = _regular_step(lat, "lat", name)
    dx = _regular_step(lon, "lon", name)
    ascending = dy > 0
    if dx < 0:
        raise AggloInputError(
            f"{name}: longitudes decrease along the file; only west-to-east grids are supported."
        )
    dy = abs(dy)
    north = (lat.max() + dy / 2) if ascending else (lat[0] + dy / 2)
    west = lon[0] - dx / 2
    return (
        Grid(
            west=_snap(west, dx),
            north=_snap(north, dy),
            dx=_snap_step(dx),
            dy=_snap_step(dy),
            nx=lon.size,
            ny=lat.size,
            crs=crs,
        ),
        bool(ascending),
    )


def _regular_step(values: np.ndarray, axis: str, name: str) -> float:
    step = (values[-1] - values[0]) / (values.size - 1)
    if step == 0:
        raise AggloInputError(f"{name}: {axis} coordinates are constant.")
    dev = np.max(np.abs(np.diff(values) - step))
    if dev > 0.01 * abs(step):
        raise AggloInputError(
            f"{name}: {axis} coordinates are not regularly spaced (deviation {dev:.3g} for a "
            f"step of {abs(step):.3g}); agglo reads regular lat/lon grids only."
        )
    return float(step)


def _snap_step(step: float) -> float:
    """Snap float32 noise: 0.0099999998 -> 0.01 (within 1e-6 relative)."""
    for digits in range(2, 9):
        r = round(step, digits)
        if r and abs(r - step) <= 1e-6 * abs(step):
            return r
    return step


def _snap(edge: float, step: float) -> float:
    r = round(edge, 6)
    return r if abs(r - edge) <= 1e-3 * step else edge


def _netcdf_layers(
    path: Path, *, variable: str | None, crs: Any, what: str, year: int | None
) -> list[Layer]:
    try:
        import netCDF4

        with _NC_LOCK, netCDF4.Dataset(path) as ds:
            var_name = _pick_variable(ds.variables, variable, path)
            var = ds.variables[var_name]
            dims = var.dimensions
            lat_name = _find_dim(dims, _LAT_NAMES)
            lon_name = _find_dim(dims, _LON_NAMES)
            if lat_name is None or lon_name is None:
                raise AggloInputError(
                    f"{what}: {path.name} variable {var_name!r} has dimensions {dims}; expected "
                    "lat and lon (ACAG layout). Convert projected NetCDF to GeoTIFF with a CRS."
                )
            lat = np.asarray(ds.variables[lat_name][:]) if lat_name in ds.variables else None
            lon = np.asarray(ds.variables[lon_name][:]) if lon_name in ds.variables else None
            if lat is None or lon is None:
                raise AggloInputError(f"{what}: {path.name} has no lat/lon coordinate values.")
            other = [d for d in dims if d not in (lat_name, lon_name)]
            if len(other) > 1 or (other and dims.index(other[0]) != 0):
                raise AggloInputError(
                    f"{what}: {path.name} variable {var_name!r} has dimensions {dims}; expected "
                    "(lat, lon), (lon, lat) or (time, lat, lon)."
                )
            transpose = dims.index(lon_name) < dims.index(lat_name)
            time_years: list[int | None] = [year]
            if other:
                time_years = _time_years(ds, other[0], len(ds.dimensions[other[0]]), year, path)
            elif year is None:
                year = year_from_name(path.name)
                if year is None and str(getattr(ds, "year", "")).isdigit():
                    year = int(ds.year)
                time_years = [year]
            synthetic = "synthetic" in str(getattr(ds, "title", "")).lower() or bool(
                getattr(ds, "synthetic", 0)
            )
    except AggloInputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, IndexError) as exc:
        raise AggloInputError(
            f"{what}: cannot open {path} as NetCDF ({exc}). The file may be truncated or "
            "corrupt (download it again) or not NetCDF."
        ) from exc
    crs_wkt, note = _netcdf_crs(crs, path)
    grid, ascending = grid_from_coords(lat, lon, crs=crs_wkt, name=path.name)
    out = []
    for i, y in enumerate(time_years):
        if y is None:
            raise AggloInputError(
                f"{what}: cannot tell the year of {path.name}: put it in the file name "
                "(e.g. ...2020.nc or ...202001-202012.nc)."
            )
        out.append(
            Layer(
                year=y,
                kind="netcdf",
                grid=grid,
                path=path,
                variable=var_name,
                index=i if other else None,
                flip_rows=ascending,
                transpose=transpose,
                note=note + ("; synthetic" if synthetic else ""),
            )
        )
    return out


def _netcdf_crs(crs: Any, path: Path) -> tuple[str, str]:
    if crs is not None:
        return CRS.from_user_input(crs).to_wkt(), f"CRS given by the user: {crs}"
    log.info("%s: %s", path.name, WGS84_NOTE)
    return "EPSG:4326", WGS84_NOTE


def _pick_variable(variables: Any, variable: str | None, path: Path) -> str:
    if variable is not None:
        if variable not in variables:
            raise AggloInputError(
                f"{path.name}: no variable {variable!r}; variables: {', '.join(variables)}."
            )
        return variable
    for name in PM25_VARIABLES:
        if name in variables:
            return name
    coords = set(_LAT_NAMES + _LON_NAMES + _TIME_NAMES)
    data_vars = [n for n, v in variables.items() if n not in coords and getattr(v, "ndim", 0) >= 2]
    if not data_vars:
        raise AggloInputError(f"{path.name}: no 2-D data variable found.")
    return data_vars[0]


def _time_years(ds: Any, dim: str, n: int, year: int | None, path: Path) -> list[int | None]:
    if n == 1:
        return [year if year is not None else _year_from_time(ds, dim, path, n)[0]]
    return _year_from_time(ds, dim, path, n)


def _year_from_time(ds: Any, dim: str, path: Path, n: int) -> list[int | None]:
    if dim not in ds.variables:
        return [None] * n
    v = ds.variables[dim]
    vals = np.asarray(v[:])
    units = getattr(v, "units", "")
    if "since" in units:
        import cftime

        dates = cftime.num2date(vals, units, getattr(v, "calendar", "standard"))
        return [int(d.year) for d in np.atleast_1d(dates)]
    if np.issubdtype(vals.dtype, np.number) and np.all((vals > 1900) & (vals < 2100)):
        return [int(x) for x in np.atleast_1d(vals)]
    return [None] * n


def _geotiff_layers(path: Path, *, crs: Any, what: str, year: int | None) -> list[Layer]:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as ds:
            t = ds.transform
            if t.b != 0 or t.d != 0:
                raise AggloInputError(f"{what}: {path.name} is rotated; warp it to north-up first.")
            count, descriptions = ds.count, list(ds.descriptions)
            tags = [ds.tags(i + 1) for i in range(count)]
            file_crs = ds.crs
            width, height = ds.width, ds.height
    except RasterioIOError as exc:
        raise AggloInputError(
            f"{what}: cannot open {path} as GeoTIFF ({exc}). The file may be truncated or "
            "corrupt: download it again."
        ) from exc
    if file_crs is None and crs is None:
        raise CRSError(
            f"{what}: {path.name} has no CRS. If it is longitude/latitude on WGS84 (as ACAG "
            "grids are), say so: crs='EPSG:4326' (CLI: --raster-crs EPSG:4326)."
        )
    if crs is not None:
        crs_wkt, note = CRS.from_user_input(crs).to_wkt(), f"CRS given by the user: {crs}"
    else:
        crs_wkt, note = CRS.from_user_input(file_crs.to_wkt()).to_wkt(), "CRS from the file"
    flip = t.e > 0
    dy = abs(t.e)
    north = t.f if not flip else t.f + height * t.e
    grid = Grid(west=t.c, north=north, dx=t.a, dy=dy, nx=width, ny=height, crs=crs_wkt)
    layers = []
    for i in range(count):
        label = " ".join(filter(None, [descriptions[i] or "", *(str(v) for v in tags[i].values())]))
        y = year_from_name(label) if count > 1 else (year or year_from_name(path.name))
        if count > 1 and y is None:
            raise AggloInputError(
                f"{what}: band {i + 1} of {path.name} has no year in its description "
                f"({descriptions[i]!r}); name bands by year (e.g. 'PM25_2020')."
            )
        if y is None:
            y = year_from_name(label)
        if y is None:
            raise AggloInputError(
                f"{what}: cannot tell the year of {path.name}: put it in the file name "
                "(e.g. ...2020.tif) or the band description."
            )
        layers.append(
            Layer(year=y, kind="geotiff", grid=grid, path=path, index=i, flip_rows=flip, note=note)
        )
    return layers


def _xarray_layers(obj: Any, *, variable: str | None, crs: Any) -> list[Layer]:
    import xarray as xr

    if isinstance(obj, xr.Dataset):
        name = _pick_variable(obj.data_vars, variable, Path("<Dataset>"))
        obj = obj[name]
    da = obj
    lat, lon = _find_dim(da.dims, _LAT_NAMES), _find_dim(da.dims, _LON_NAMES)
    if lat is None or lon is None:
        raise AggloInputError(
            f"the DataArray has dimensions {da.dims}; expected lat and lon (and optionally year "
            "or time)."
        )
    other = [d for d in da.dims if d not in (lat, lon)]
    if len(other) > 1:
        raise AggloInputError(
            f"the DataArray has dimensions {da.dims}; at most one besides lat/lon."
        )
    if crs is None:
        crs_attr = da.attrs.get("crs")
        crs_wkt, note = ("EPSG:4326", "DataArray lat/lon grid taken as EPSG:4326")
        if crs_attr is not None:
            crs_wkt, note = CRS.from_user_input(crs_attr).to_wkt(), "CRS from the DataArray attrs"
    else:
        crs_wkt, note = CRS.from_user_input(crs).to_wkt(), f"CRS given by the user: {crs}"
    grid, ascending = grid_from_coords(
        da[lat].values, da[lon].values, crs=crs_wkt, name="DataArray"
    )
    if other:
        coord = da[other[0]].values
        if np.issubdtype(coord.dtype, np.datetime64):
            years = [int(str(v)[:4]) for v in coord.astype("datetime64[Y]")]
        else:
            try:
                years = [int(v) for v in coord]
            except (TypeError, ValueError) as exc:
                raise AggloInputError(
                    f"the DataArray's {other[0]!r} coordinate does not hold years: {coord[:5]}"
                ) from exc
    else:
        y = da.attrs.get("year")
        if y is None:
            raise AggloInputError(
                "a 2-D DataArray needs attrs['year'] or a year/time dimension "
                "(e.g. da.expand_dims(year=[2020]))."
            )
        years = [int(y)]
    transpose_needed = da.dims.index(lon) < da.dims.index(lat)
    return [
        Layer(
            year=y,
            kind="xarray",
            grid=grid,
            variable=str(da.name) if da.name is not None else None,
            index=i if other else None,
            flip_rows=ascending,
            transpose=transpose_needed,
            data=da,
            note=note,
        )
        for i, y in enumerate(years)
    ]


# -- value checks (called once per layer at entry and on every decoded read) -----------------
#: common fill values that files use without declaring them (_FillValue / nodata)
UNDECLARED_FILLS = (-999.0, -9999.0, -99999.0, -32768.0, -32767.0, 32767.0, 65535.0, 9.96921e36)
#: every undeclared fill is negative or above this, so only such cells are compared with them
_FILL_FLOOR = min(f for f in UNDECLARED_FILLS if f > 0) * (1 - 1e-5)
assert all(f < 0 or f > _FILL_FLOOR for f in UNDECLARED_FILLS)
#: no annual mean PM2.5 on Earth comes near this (µg/m³); larger values mean wrong units or fill
PM25_MAX_PLAUSIBLE = 1000.0
#: units attribute value (normalised: lower case, no spaces, µ/μ -> u) -> factor to µg/m³
PM25_UNITS = {
    "ug/m3": 1.0, "ugm-3": 1.0, "ug/m^3": 1.0, "microgram/m3": 1.0, "micrograms/m3": 1.0,
    "microgrampercubicmeter": 1.0, "ugperm3": 1.0,
    "mg/m3": 1000.0, "mgm-3": 1000.0, "mg/m^3": 1000.0, "milligram/m3": 1000.0,
    "kg/m3": 1e9, "kgm-3": 1e9, "kg/m^3": 1e9, "g/m3": 1e6, "gm-3": 1e6,
}  # fmt: skip
_UNITS_CACHE: dict[tuple, tuple[str, float]] = {}


def layer_units(layer: Layer) -> tuple[str, float]:
    """The units attribute of ``layer`` and its factor to µg/m³ (``("", 1.0)`` when absent).

    Raises
    ------
    AggloInputError
        A units attribute that is not a mass concentration agglo can convert.
    """
    key = (str(layer.path), layer.variable, layer.index, layer.kind, id(layer.data))
    if key in _UNITS_CACHE:
        return _UNITS_CACHE[key]
    units = ""
    try:
        if layer.kind == "netcdf":
            import netCDF4

            with _NC_LOCK, netCDF4.Dataset(layer.path) as ds:
                units = str(getattr(ds.variables[layer.variable], "units", ""))
        elif layer.kind == "geotiff":
            import rasterio

            with rasterio.open(layer.path) as ds:
                band = (layer.index or 0) + 1
                units = ds.units[band - 1] if ds.units else ""
                units = units or ds.tags(band).get("units", "") or ds.tags().get("units", "")
        else:
            units = str(layer.data.attrs.get("units", ""))
    except Exception:  # unreadable attributes: the value read reports real problems
        units = ""
    norm = units.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")
    norm = norm.replace("³", "3").replace("**", "^").replace("⁻", "-")
    if not norm or norm in ("1", "none", "unknown"):
        result = ("", 1.0)
    elif norm in PM25_UNITS:
        result = (units, PM25_UNITS[norm])
    else:
        raise AggloInputError(
            f"{layer.name}: units {units!r} are not a mass concentration agglo can convert to "
            "µg/m³ (known: µg/m³, mg/m³, g/m³, kg/m³). Convert the raster to µg/m³, or fix "
            "its units attribute."
        )
    _UNITS_CACHE[key] = result
    return result


def screen_pm25_values(values: np.ndarray, layer: Layer) -> tuple[np.ndarray, list[str]]:
    """Undeclared fill values -> NaN, units -> µg/m³; refuse negative or impossible PM2.5.

    Parameters
    ----------
    values
        Decoded cell values (declared fill already NaN).
    layer
        Where they come from (for the units attribute and messages).

    Returns
    -------
    (numpy.ndarray, list of str)
        Values in µg/m³, and notes on what was masked or rescaled (the caller warns with them).

    Raises
    ------
    AggloInputError
        Negative values, or values above :data:`PM25_MAX_PLAUSIBLE` µg/m³ after conversion.

    Examples
    --------
    >>> import xarray as xr
    >>> g = Grid(west=100, north=30, dx=1, dy=1, nx=3, ny=1)
    >>> lay = Layer(year=2020, kind="xarray", grid=g, data=xr.DataArray([0], attrs={}))
    >>> v, notes = screen_pm25_values(np.array([12.0, -999.0, np.nan]), lay)
    >>> v.tolist(), notes
    ([12.0, nan, nan], ['1 cell(s) hold -999, a fill value the file does not declare: treated as missing'])
    """
    notes: list[str] = []
    out = values
    finite = np.isfinite(out)
    # a value within rtol of a fill is negative or above _FILL_FLOOR: compare only those cells
    # (the whole grid, 8 fills x isclose, cost more than reading it)
    cand = np.flatnonzero(finite & ((out < 0) | (out > _FILL_FLOOR)))
    for fill in UNDECLARED_FILLS:
        hit = cand[np.isclose(out[cand], fill, rtol=1e-6, atol=0.0)]
        if hit.size:
            out = out.copy() if out is values else out  # the input is never modified
            out[hit] = np.nan
            finite[hit] = False
            notes.append(
                f"{hit.size} cell(s) hold {fill:g}, a fill value the file does not "
                "declare: treated as missing"
            )
    units, factor = layer_units(layer)
    if factor != 1.0:
        out = out * factor
        notes.append(f"values in {units} converted to µg/m³ (x {factor:g})")
    if not finite.any():
        return out, notes
    # NaN-skipping reductions: no copy of the valid cells
    lo, hi = float(np.fmin.reduce(out)), float(np.fmax.reduce(out))
    if lo < 0:
        n = int((out < 0).sum())
        raise AggloInputError(
            f"{layer.name} ({layer.year}): {n} cell(s) have negative PM2.5 (down to {lo:g} "
            "µg/m³), which is impossible for a concentration. Is it a difference or anomaly "
            "layer, or a fill value the file does not declare? Give annual mean PM2.5, or set "
            "_FillValue / nodata."
        )
    if hi > PM25_MAX_PLAUSIBLE:
        n = int((out > PM25_MAX_PLAUSIBLE).sum())
        raise AggloInputError(
            f"{layer.name} ({layer.year}): {n} cell(s) have PM2.5 above {PM25_MAX_PLAUSIBLE:g} "
            f"µg/m³ (up to {hi:g}), impossible for an annual mean: the units are wrong "
            "(ng/m³?) or a fill value is undeclared. Fix the units attribute or set "
            "_FillValue / nodata."
        )
    return out, notes


# -- writing ACAG-layout NetCDF (demo and benchmark data) ------------------------------------
def write_acag_netcdf(
    path: str | Path,
    values: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    year: int,
    synthetic: bool,
    title: str = "",
    fill_value: float = -999.0,
    compress: bool = True,
) -> Path:
    """Write one annual PM2.5 grid in the ACAG NetCDF layout.

    ``PM25`` (float32, µg/m³, ``_FillValue``) on ``lat`` (ascending, as ACAG files) x ``lon``;
    NaN in ``values`` becomes the fill value. Synthetic files say so in ``title``,
    ``synthetic = 1`` and ``comment``.

    Parameters
    ----------
    path
        Output file (``.nc``).
    values
        (len(lat), len(lon)) array, rows in the order of ``lat``.
    lat, lon
        Cell-centre coordinates in degrees.
    year
        Year of the annual mean (stored as the ``year`` attribute).
    synthetic
        Mark the file as synthetic.
    title
        Free text added to the title.
    fill_value
        Value written for missing cells.
    compress
        zlib-compress (level 1, 200 x 200 chunks), as distributed files are.

    Returns
    -------
    pathlib.Path
    """
    import netCDF4

    path = Path(path)
    order = np.argsort(lat)
    lat = np.asarray(lat, dtype=np.float64)[order]
    values = np.asarray(values)[order]
    data = np.where(np.isfinite(values), values, fill_value).astype(np.float32)
    kw: dict[str, Any] = {}
    if compress:
        kw = {"zlib": True, "complevel": 1, "chunksizes": (min(200, lat.size), min(200, len(lon)))}
    with _NC_LOCK, netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("lat", lat.size)
        ds.createDimension("lon", len(lon))
        vlat = ds.createVariable("lat", "f8", ("lat",))
        vlat[:] = lat
        vlat.units = "degrees_north"
        vlon = ds.createVariable("lon", "f8", ("lon",))
        vlon[:] = np.asarray(lon, dtype=np.float64)
        vlon.units = "degrees_east"
        var = ds.createVariable(
            "PM25", "f4", ("lat", "lon"), fill_value=np.float32(fill_value), **kw
        )
        var[:] = data
        var.units = "ug/m3"
        var.long_name = "annual mean surface PM2.5" + (" (SYNTHETIC)" if synthetic else "")
        ds.year = int(year)
        ds.title = ("SYNTHETIC " if synthetic else "") + (title or "annual mean surface PM2.5")
        ds.synthetic = int(bool(synthetic))
        if synthetic:
            ds.comment = (
                "SYNTHETIC data for demonstrations and tests, not measurements. Generated by agglo "
                "in the layout of the ACAG (WUSTL/Dalhousie) annual PM2.5 NetCDF files."
            )
    return path
