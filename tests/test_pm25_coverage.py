"""Coverage split across two processes (``_SPLIT_MIN_CELLS``): the plan built from two halves
(one in a forked child) is checked against exactextract's own coverage fractions computed
directly, and against the plan built in one process, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import agglo.measures.pm25 as m
from agglo._forked import ForkedCall, fork_available
from agglo.io.rasters import Grid

GRID = Grid(west=100, north=30, dx=0.1, dy=0.1, nx=40, ny=30)

pytestmark = pytest.mark.skipif(not fork_available(), reason="needs fork")


def _polygons() -> np.ndarray:
    ring = shapely.Polygon(
        [(100.23, 27.11), (101.87, 27.3), (101.5, 29.2), (100.4, 28.9)],
        holes=[[(100.8, 27.9), (101.2, 27.9), (101.1, 28.4)]],
    )
    multi = shapely.MultiPolygon(
        [shapely.box(102.05, 27.05, 102.66, 27.93), shapely.box(102.91, 28.4, 103.37, 29.81)]
    )
    outside = shapely.box(103.6, 29.5, 104.7, 30.6)  # partly outside the grid (east, north)
    tiny = shapely.box(100.01, 29.91, 100.03, 29.93)  # inside one cell
    # neighbours sharing cells, so that the halves cover some of the same cells
    left = shapely.box(100.15, 27.0, 101.05, 27.55)
    right = shapely.box(101.05, 27.0, 101.95, 27.55)
    return np.array([ring, left, multi, None, right, outside, tiny, ring.buffer(0.07)], object)


def _exactextract_fractions(geoms: np.ndarray, window) -> list[dict[int, float]]:
    """exactextract's coverage fractions per polygon (one call per polygon, through its own
    GeoPandas source), keyed by flat cell index in ``window``."""
    import geopandas as gpd
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource
    from pyproj import CRS

    src = NumPyRasterSource(
        np.zeros(window.shape, np.float32), *window.bounds, srs_wkt=CRS(4326).to_wkt()
    )
    out = []
    for g in geoms:
        if g is None:
            out.append({})
            continue
        r = exact_extract(
            src,
            gpd.GeoDataFrame(geometry=[g], crs=4326),
            ["cell_id", "coverage"],
            output="pandas",
        )
        ids, cov = r["cell_id"].iloc[0], r["coverage"].iloc[0]
        out.append({int(i): float(c) for i, c in zip(ids, cov, strict=True) if c > 0})
    return out


@pytest.fixture
def forced_split(monkeypatch):
    calls = []
    start = ForkedCall.start.__func__

    def counting(cls, fn, *args, **kw):
        calls.append(fn.__name__)
        return start(cls, fn, *args, **kw)

    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 0)
    monkeypatch.setattr(m, "usable_cores", lambda: 2)
    monkeypatch.setattr(ForkedCall, "start", classmethod(counting))
    return calls


def test_split_plan_matches_exactextract_and_one_process(forced_split, monkeypatch):
    geoms = _polygons()
    split = m._coverage_plan(geoms, GRID, weights="coverage", progress=False, cache=None)
    assert forced_split == ["_exact_pairs_into"]  # the split did happen
    ref = _exactextract_fractions(geoms, split.window)
    w = split.weights.tocsr()
    ncol, win = split.window.shape[1], split.window
    for i, every in enumerate(ref):
        row = w.getrow(i)
        got = {int(c): float(v) for c, v in zip(split.cells[row.indices], row.data, strict=True)}
        # the plan holds the cells inside the grid; its totals, every covered cell
        want = {
            k: v
            for k, v in every.items()
            if 0 <= k // ncol + win.r0 < GRID.ny and 0 <= k % ncol + win.c0 < GRID.nx
        }
        assert got.keys() == want.keys(), i
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12)
        assert split.total[i] == pytest.approx(sum(every.values()), rel=1e-12, abs=0), i
    assert any(len(e) > 0 and split.total[i] > w.getrow(i).sum() for i, e in enumerate(ref))
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 10**12)
    one = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 0)
    two_area = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    np.testing.assert_array_equal(one.cells, two_area.cells)
    for a in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(one.weights, a), getattr(two_area.weights, a))


@pytest.mark.parametrize("bound", [None, 1])
def test_split_pairs_through_shared_buffers_or_the_pipe(forced_split, monkeypatch, bound):
    """The child's pairs come back in the shared buffers (bound from the bounding boxes: every
    polygon's pairs fit in it), or through the pipe when they do not fit (a bound of 1): the
    plan is the one-process plan bit for bit either way."""
    geoms = _polygons()
    sent = []
    result = ForkedCall.result

    def recording(self):
        got = result(self)
        sent.append("shared" if len(got) == 2 else "pipe")
        return got

    monkeypatch.setattr(ForkedCall, "result", recording)
    if bound is not None:
        monkeypatch.setattr(m, "_pairs_bound", lambda geoms, grid: bound)
    two = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    assert forced_split == ["_exact_pairs_into"]
    assert sent == (["pipe"] if bound == 1 else ["shared"])
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 10**12)
    one = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    np.testing.assert_array_equal(one.cells, two.cells)
    np.testing.assert_array_equal(one.row_area, two.row_area)
    for a in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(one.weights, a), getattr(two.weights, a))


@pytest.mark.parametrize("weights", ["area", "coverage", "centroid"])
@pytest.mark.parametrize("split", [False, True])
def test_dense_compression_equals_scipy_column_selection(forced_split, monkeypatch, weights, split):
    """The plan's columns compressed through the dense lookup table, the cells outside the
    grid left out as they are numbered (every side of the grid cut, halves of a split
    coverage taken as they come), equal scipy's column selection of the cells inside the grid
    from the plan of every covered cell (sorted, nothing left out), bit for bit; the totals
    equal that plan's row sums."""
    grid = Grid(west=100.5, north=29.5, dx=0.1, dy=0.1, nx=25, ny=20)  # cuts every polygon side
    geoms = _polygons()
    if not split:
        monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 10**12)
    dense = m._coverage_plan(geoms, grid, weights=weights, progress=False, cache=None)
    assert forced_split == (["_exact_pairs_into"] if split else [])
    monkeypatch.setattr(m, "_DENSE_WINDOW_CELLS", 0)
    monkeypatch.setattr(m, "_off_grid", lambda cells, window: None)
    every = m._coverage_plan(geoms, grid, weights=weights, progress=False, cache=None)
    win = every.window
    rows, cols = every.rows_cols()
    rows, cols = rows + win.r0, cols + win.c0
    inside = (rows >= 0) & (rows < grid.ny) & (cols >= 0) & (cols < grid.nx)
    for edge in (rows < 0, rows >= grid.ny, cols < 0, cols >= grid.nx):
        assert edge.any()  # cells outside the grid on every side
    want = every.weights[:, np.flatnonzero(inside)].tocsr()
    np.testing.assert_array_equal(dense.cells, every.cells[inside])
    assert dense.cells.dtype == np.int32 and dense.weights.indices.dtype == np.int32
    for a in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(dense.weights, a), getattr(want, a))
    np.testing.assert_array_equal(dense.total, np.asarray(every.weights.sum(axis=1)).ravel())
    assert (dense.total > np.asarray(want.sum(axis=1)).ravel()).any()


def test_flatnonzero32_equals_numpy():
    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 100_003):
        mask = rng.random(size) < 0.3
        for chunk in (1, 5, 1 << 20):
            got = m._flatnonzero32(mask, chunk=chunk)
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, np.flatnonzero(mask))


def test_split_point_balances_and_keeps_small_jobs_in_process(monkeypatch):
    geoms = np.array([shapely.box(100 + i * 0.1, 27, 100.1 + i * 0.1, 28) for i in range(10)])
    assert m._split_point(geoms, GRID) is None  # 100 cells: below _SPLIT_MIN_CELLS
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 0)
    monkeypatch.setattr(m, "usable_cores", lambda: 2)
    assert m._split_point(geoms, GRID) == 5
    monkeypatch.setattr(m, "usable_cores", lambda: 1)
    assert m._split_point(geoms, GRID) is None


def _split_point_in_daemon(geoms):
    import multiprocessing

    assert multiprocessing.current_process().daemon
    m._SPLIT_MIN_CELLS, m.usable_cores = 0, lambda: 2  # this child's module only
    return m._split_point(geoms, GRID)


def test_no_split_in_a_daemonic_worker():
    # the pipeline's stages run side by side in daemonic children, which may not fork: the
    # coverage stays in process there instead of failing on a China-scale job
    geoms = np.array([shapely.box(100 + i * 0.1, 27, 100.1 + i * 0.1, 28) for i in range(10)])
    assert ForkedCall.start(_split_point_in_daemon, geoms, name="split").result() is None


def test_validity_check_in_chunks_paused_and_resumed_equals_shapely():
    """The chunked, pausable validity check thread gives shapely.is_valid's verdict, polygon
    by polygon, whether or not it was paused (a pause holds it between two chunks)."""
    import threading

    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])  # self-intersecting: invalid
    geoms = np.array([*_polygons()[[0, 1, 2, 4, 5, 6, 7]], bowtie] * 9, dtype=object)
    want = shapely.is_valid(geoms)
    assert not want.all() and want.any()
    check = m._ValidityCheck(geoms)
    np.testing.assert_array_equal(check.result(), want)
    paused = m._ValidityCheck.__new__(m._ValidityCheck)
    paused._raw = geoms
    paused._go = threading.Event()  # paused before its first chunk
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("v", paused._check()))
    t.start()
    t.join(0.05)
    assert t.is_alive() and "v" not in out  # waits while paused
    paused.resume()
    t.join()
    np.testing.assert_array_equal(out["v"], want)


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_squeeze_out_equals_numpy_delete(chunk):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 1000, 5000)
    drop = np.unique(np.r_[rng.choice(5000, 300, replace=False), np.arange(100, 140), 4999])
    want = np.delete(a, drop)
    m._squeeze_out(a, drop, chunk=chunk)
    np.testing.assert_array_equal(a[: want.size], want)


@pytest.mark.parametrize("bound", [0, 3])
def test_pairs_grown_past_the_bound_or_without_one(monkeypatch, bound):
    """exactextract's pairs copied polygon by polygon into buffers grown as they come (no
    bound, or one too small for them) give the plan of buffers sized by the bounding boxes,
    bit for bit, in one process and split (the halves then joined by concatenation)."""
    geoms = _polygons()
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 10**12)
    want = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    monkeypatch.setattr(m, "_pairs_bound", lambda geoms, grid: bound)
    got = [m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)]
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 0)
    monkeypatch.setattr(m, "usable_cores", lambda: 2)
    got.append(m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None))
    for plan in got:
        np.testing.assert_array_equal(plan.cells, want.cells)
        np.testing.assert_array_equal(plan.total, want.total)
        for a in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(plan.weights, a), getattr(want.weights, a))


def test_shared_pairs_join_moves_the_second_run_next_to_the_first():
    shared = m._PairBuffers(3 * (1 << 20), shared=True)
    k1, start, k2 = 5, (1 << 20) + 7, (1 << 20) + 11  # a run longer than its gap: overlap
    ci, cv = shared.part(0, shared.size)
    ci[:k1], cv[:k1] = np.arange(k1), np.arange(k1) / 2
    ci[start : start + k2] = np.arange(k1, k1 + k2)
    cv[start : start + k2] = np.arange(k1, k1 + k2) / 2
    ci_all, cv_all = shared.join(k1, start, k2)
    np.testing.assert_array_equal(ci_all, np.arange(k1 + k2))
    np.testing.assert_array_equal(cv_all, np.arange(k1 + k2) / 2)
    assert shared.holds(ci_all) and shared.holds(cv_all)


@pytest.mark.parametrize("split", [False, True])
def test_plan_holds_the_pair_buffers_not_a_copy(forced_split, monkeypatch, split):
    """The plan's matrix holds the buffers exactextract's pairs were written into (arrays of
    their own length: scipy copies views of a much larger array), in one process or split."""
    if not split:
        monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 10**12)
    made = []
    real = m._PairBuffers.__init__

    def recording(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(m._PairBuffers, "__init__", recording)
    monkeypatch.setattr(m, "_pairs_bound", lambda geoms, grid: 10_000)  # a loose bound
    plan = m._coverage_plan(_polygons(), GRID, weights="area", progress=False, cache=None)
    (buffers,) = made
    assert buffers.size > 2 * plan.weights.nnz
    assert buffers.holds(plan.weights.data) and buffers.holds(plan.weights.indices)


def test_pair_buffers_without_private_mappings_give_the_same_plan(monkeypatch):
    """Where anonymous private mappings are not offered (Windows' mmap), the pairs go into
    numpy arrays: the same plan bit for bit."""
    import mmap

    geoms = _polygons()
    monkeypatch.setattr(m, "_SPLIT_MIN_CELLS", 10**12)
    want = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    monkeypatch.delattr(mmap, "MAP_PRIVATE")
    assert m._PairBuffers(10, shared=False)._buf is None
    got = m._coverage_plan(geoms, GRID, weights="area", progress=False, cache=None)
    np.testing.assert_array_equal(got.cells, want.cells)
    for a in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(got.weights, a), getattr(want.weights, a))
