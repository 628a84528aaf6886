"""The on-disk coverage cache: format version, stored read positions and the validity marker.

Each fast path of a cached run is checked against an independent computation: values read
through stored read positions against the masked-array window reader, cached results against
a run without any cache, and the skipped validity check against shapely's own verdict."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

import agglo.measures.pm25 as m
from agglo.errors import AggloDataWarning
from agglo.io.rasters import Grid, Layer, discover_layers
from agglo.measures.pm25 import CoverageCache, PM25Warning, coverage_plan, zonal_pm25

DEMO = Path(__file__).resolve().parents[1] / "data" / "rasters"
GRID = Grid(west=97, north=35.5, dx=0.1, dy=0.1, nx=265, ny=145)


@pytest.fixture
def some_cities(cities):
    return cities.iloc[::4].reset_index(drop=True)


def _run(cities, cache=None, **kw):
    return zonal_pm25(DEMO, cities, scheduler="synchronous", coverage_cache=cache, **kw)


def test_old_format_entry_is_recomputed_with_a_log_line(some_cities, tmp_path, caplog):
    cache = CoverageCache(tmp_path)
    geoms = np.asarray(some_cities.geometry.values, dtype=object)
    key = CoverageCache.key(geoms, GRID, "area")
    old = tmp_path / f"coverage-{key}.npz"
    np.savez(old, cells=np.arange(3))  # an entry of the old, unversioned layout
    with caplog.at_level(logging.INFO, logger="agglo.measures.pm25"):
        plan = coverage_plan(some_cities.geometry, GRID, cache=cache)
    assert "old format" in caplog.text
    assert not old.exists() and len(list(tmp_path.glob("*.plan"))) == 1
    ref = coverage_plan(some_cities.geometry, GRID)  # no cache at all
    np.testing.assert_array_equal(plan.cells, ref.cells)
    assert (plan.weights != ref.weights).nnz == 0


def test_entry_of_another_version_is_recomputed(some_cities, tmp_path, caplog, monkeypatch):
    cache = CoverageCache(tmp_path)
    coverage_plan(some_cities.geometry, GRID, cache=cache)
    monkeypatch.setattr(CoverageCache, "FORMAT", CoverageCache.FORMAT + 1)
    calls = []
    real = m._build_plan
    monkeypatch.setattr(m, "_build_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    with caplog.at_level(logging.INFO, logger="agglo.measures.pm25"):
        coverage_plan(some_cities.geometry, GRID, cache=cache)
    assert calls == [1] and "computing it again" in caplog.text
    coverage_plan(some_cities.geometry, GRID, cache=cache)  # rewritten in the new version
    assert calls == [1]


def test_stored_read_positions_read_the_same_values_as_the_window_reader(
    some_cities, tmp_path, monkeypatch
):
    cache = CoverageCache(tmp_path)
    first = _run(some_cities, cache)
    assert len(list(tmp_path.glob("*.index"))) == 1  # one layout for the three years
    layer = discover_layers(DEMO)[0]

    def boom(*a, **k):
        raise AssertionError("read positions recomputed although cached")

    monkeypatch.setattr(Layer, "cell_index", boom)
    plan = coverage_plan(some_cities.geometry, layer.grid, cache=CoverageCache(tmp_path))
    index = plan.cell_index(layer)  # from disk
    got = layer.read_indexed(index)
    # independent path: the masked-array window reader, indexed by the plan's cells
    want = layer.read(plan.window).reshape(-1)[plan.cells]
    np.testing.assert_array_equal(got, want)
    again = _run(some_cities, CoverageCache(tmp_path))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, _run(some_cities))  # no cache


@pytest.fixture
def plans_with_off_grid_cells(monkeypatch):
    """Plans that keep the cells outside the grid, as stored by earlier versions (read with
    an inside mask): the machinery that reads them is still checked."""
    monkeypatch.setattr(m, "_off_grid", lambda cells, window: None)
    monkeypatch.setattr(m, "_take_off_grid", lambda used, window: None)


def test_read_positions_of_cells_outside_the_grid_round_trip(tmp_path, plans_with_off_grid_cells):
    # a polygon reaching beyond the grid: the index has an inside mask and stored valid sums
    g = Grid(west=100, north=30, dx=1, dy=1, nx=4, ny=3)
    import geopandas as gpd

    polys = gpd.GeoSeries([shapely.box(99.5, 28, 101.5, 30), shapely.box(102, 27, 104, 29)])
    layer = Layer(2020, "xarray", g)
    cache = CoverageCache(tmp_path)
    plan = coverage_plan(polys.set_crs(4326), g, weights="coverage", cache=cache)
    built = plan.cell_index(layer)
    sums = plan.valid_sums(built)
    again = coverage_plan(polys.set_crs(4326), g, weights="coverage", cache=cache)
    stored = again.cell_index(layer)
    assert stored.inside is not None and not stored.inside.all()
    np.testing.assert_array_equal(stored.inside, built.inside)
    for a, b in zip(stored.bands, built.bands, strict=True):
        assert (a.rows, a.cols, a.start, a.stop) == (b.rows, b.cols, b.start, b.stop)
        np.testing.assert_array_equal(a.flat, b.flat)
    for a, b in zip(again.valid_sums(stored), sums, strict=True):
        np.testing.assert_array_equal(a, b)
    # closed form: inside the grid polygon 0 covers 2 rows x 1.5 cells (4 cells touched),
    # polygon 1 four whole cells
    np.testing.assert_allclose(sums[0], [3.0, 4.0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sums[1], [4.0, 4.0])
    # and scipy's mat-vecs of the weights and of their pattern with the inside mask
    np.testing.assert_array_equal(sums[0], plan.weights @ built.inside.astype(np.float64))
    np.testing.assert_array_equal(sums[1], plan.binary @ built.inside.astype(np.float32))


def test_inside_cell_counts_equal_the_pattern_mat_vec_on_real_polygons(
    some_cities, plans_with_off_grid_cells
):
    # a grid cutting through the cities: many cells outside, counts over thousands of pairs
    grid = Grid(west=105, north=32, dx=0.1, dy=0.1, nx=120, ny=60)
    plan = coverage_plan(some_cities.geometry, grid)
    index = plan.cell_index(Layer(2020, "xarray", grid))
    assert index.inside is not None and 0 < index.inside.sum() < index.n
    den, n = plan.valid_sums(index, scratch=np.full(index.n, 7.0))
    np.testing.assert_array_equal(n, plan.binary @ index.inside.astype(np.float32))
    np.testing.assert_array_equal(den, plan.weights @ index.inside.astype(np.float64))


def test_damaged_index_entry_warns_and_is_recomputed(some_cities, tmp_path):
    first = _run(some_cities, CoverageCache(tmp_path))
    (entry,) = tmp_path.glob("*.index")
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the last array: its CRC no longer matches
    entry.write_bytes(bytes(data))
    with pytest.warns(PM25Warning, match="unreadable"):
        again = _run(some_cities, CoverageCache(tmp_path))
    pd.testing.assert_frame_equal(first, again)


def test_validity_check_is_skipped_only_for_the_same_valid_polygons(
    some_cities, tmp_path, monkeypatch
):
    assert shapely.is_valid(some_cities.geometry.values).all()  # shapely's own verdict
    cache = CoverageCache(tmp_path)
    first = _run(some_cities, cache)
    assert len(list(tmp_path.glob("validated-*"))) == 1
    checked = []
    real = shapely.lib.is_valid  # the check, in the thread or in clean_geometries
    monkeypatch.setattr(shapely.lib, "is_valid", lambda g, **k: checked.append(1) or real(g, **k))
    pd.testing.assert_frame_equal(first, _run(some_cities, cache))
    assert checked == []  # same polygons: not checked again
    moved = some_cities.copy()
    moved["geometry"] = moved.geometry.translate(xoff=1e-9)
    _run(moved, cache)
    assert checked  # other polygons: checked (in chunks)


def test_invalid_polygons_warn_on_every_cached_run(some_cities, tmp_path):
    bad = some_cities.copy()
    c = bad.geometry.iloc[0].centroid
    x, y = c.x, c.y
    bowtie = shapely.Polygon([(x, y), (x + 0.2, y + 0.2), (x + 0.2, y), (x, y + 0.2)])
    assert not shapely.is_valid(bowtie)
    bad.loc[0, "geometry"] = bowtie
    cache = CoverageCache(tmp_path)
    outs = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            outs.append(_run(bad, cache))
        assert any(
            issubclass(w.category, AggloDataWarning) and "invalid polygon" in str(w.message)
            for w in rec
        )
    assert not list(tmp_path.glob("validated-*"))
    pd.testing.assert_frame_equal(outs[0], outs[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_frame_equal(outs[0], _run(bad))


def _record(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    return out, [
        (w.category, str(w.message), Path(w.filename).name)
        for w in rec
        if w.category is not ResourceWarning
    ]


@pytest.mark.parametrize("overlap", [True, False])
def test_validity_check_in_a_thread_gives_the_same_results_and_warnings(
    some_cities, monkeypatch, overlap
):
    """The check running beside the coverage step (speculative) against the check first:
    same tables and the same warnings, for valid polygons, polygons partly outside the
    raster (a warning held back until the check is done) and invalid polygons (repaired as
    shapely.make_valid does); the warning filters are the caller's afterwards."""
    valid = some_cities.copy()
    outside = some_cities.copy()
    outside.loc[0, "geometry"] = shapely.box(96.5, 30, 97.5, 31)  # the raster starts at 97°E
    bad = some_cities.copy()
    c = bad.geometry.iloc[1].centroid
    bad.loc[1, "geometry"] = shapely.Polygon(
        [(c.x, c.y), (c.x + 0.3, c.y + 0.3), (c.x + 0.3, c.y), (c.x, c.y + 0.3)]
    )
    repaired = bad.copy()
    repaired.loc[1, "geometry"] = shapely.make_valid(bad.geometry.iloc[1])
    filters = list(warnings.filters)
    for polys in (valid, outside, bad):
        monkeypatch.setattr(m, "_overlap_validity", lambda raw: overlap)
        got, got_w = _record(lambda p=polys: _run(p))
        assert warnings.filters == filters
        monkeypatch.setattr(m, "_overlap_validity", lambda raw: False)
        want, want_w = _record(lambda p=polys: _run(p))
        pd.testing.assert_frame_equal(got, want)
        assert sorted(got_w, key=str) == sorted(want_w, key=str)
        if polys is outside:  # pointing at the caller of zonal_pm25, as before
            assert (AggloDataWarning, Path(__file__).name) in {
                (c, f) for c, msg, f in got_w if "covers only part" in msg
            }
        if polys is bad:
            assert any("invalid polygon" in msg for _, msg, _ in got_w)
            fixed, _ = _record(lambda: _run(repaired))
            pd.testing.assert_frame_equal(got, fixed)


def test_errors_of_the_speculative_path_are_raised_for_valid_polygons(some_cities, monkeypatch):
    from agglo.errors import AggloInputError

    far = some_cities.copy()
    far["geometry"] = far.geometry.translate(xoff=100)  # nowhere near the raster
    monkeypatch.setattr(m, "_overlap_validity", lambda raw: True)
    with pytest.raises(AggloInputError) as got:
        _run(far)
    monkeypatch.setattr(m, "_overlap_validity", lambda raw: False)
    with pytest.raises(AggloInputError) as want:
        _run(far)
    assert str(got.value) == str(want.value)


def test_in_place_compaction_of_cells_outside_the_grid(tmp_path, plans_with_off_grid_cells):
    """The plan's index (built with overwrite=True) equals one built without overwriting,
    leaves the caller's arrays alone when asked to, and reads the same values as the
    window reader, for cells on both sides of the grid's edge."""
    import geopandas as gpd
    import xarray as xr

    values = np.arange(12, dtype=np.float64).reshape(3, 4) + 10
    da = xr.DataArray(
        values[None],
        dims=("year", "lat", "lon"),
        coords={"year": [2020], "lat": [29.5, 28.5, 27.5], "lon": [100.5, 101.5, 102.5, 103.5]},
    )
    (layer,) = discover_layers(da)
    polys = gpd.GeoSeries(
        [shapely.box(99.2, 26.5, 101.5, 30), shapely.box(102, 27.5, 105.5, 29)], crs=4326
    )
    plan = coverage_plan(polys, layer.grid, weights="coverage")
    index = plan.cell_index(layer)
    assert index.inside is not None and (~index.inside).sum() > 0
    rows, cols = plan.rows_cols()
    rows, cols = rows + plan.window.r0, cols + plan.window.c0
    r0, c0 = rows.copy(), cols.copy()
    plain = layer.cell_index(rows, cols)
    np.testing.assert_array_equal(rows, r0)  # not overwritten by default
    np.testing.assert_array_equal(cols, c0)
    for a, b in zip(index.bands, plain.bands, strict=True):
        assert (a.rows, a.cols, a.start, a.stop) == (b.rows, b.cols, b.start, b.stop)
        np.testing.assert_array_equal(a.flat, b.flat)
    want = layer.read(plan.window).reshape(-1)[plan.cells]  # NaN outside the grid
    np.testing.assert_array_equal(layer.read_indexed(index), want)
    assert np.isnan(want).sum() == (~index.inside).sum()


def test_polygons_digest_tells_geometries_apart_as_wkb_does():
    """The structure-and-coordinates digest agrees with WKB equality (the reference)."""
    sq = shapely.box(0, 0, 2, 2)
    hole = [(0.5, 0.5), (1, 0.5), (1, 1)]
    variants = [
        [sq, shapely.box(3, 3, 4, 4)],
        [shapely.box(3, 3, 4, 4), sq],  # order
        [sq, None],
        [sq, shapely.Polygon()],  # empty, not missing
        [shapely.Polygon(sq.exterior, [hole]), sq],  # a hole
        [shapely.Polygon(sq.exterior, [hole, [(1.5, 1.5), (1.8, 1.5), (1.8, 1.8)]]), sq],
        [shapely.MultiPolygon([sq, shapely.box(3, 3, 4, 4)]), None],  # the same rings, merged
        [shapely.box(0, 0, 2, 2.0000000001), shapely.box(3, 3, 4, 4)],  # one coordinate
        [shapely.Polygon([(0, 0, 1), (2, 0, 1), (2, 2, 1)]), sq],  # z
        [shapely.Polygon([(0, 0, 2), (2, 0, 1), (2, 2, 1)]), sq],
    ]
    arrays = [np.array(v, dtype=object) for v in variants]
    copies = [shapely.from_wkb(shapely.to_wkb(a)) for a in arrays]
    for i, a in enumerate(arrays):
        d = CoverageCache.polygons_digest(a).hexdigest()
        assert d == CoverageCache.polygons_digest(copies[i]).hexdigest()
        for j, b in enumerate(arrays):
            same_wkb = list(shapely.to_wkb(a)) == list(shapely.to_wkb(b))
            assert (d == CoverageCache.polygons_digest(b).hexdigest()) == same_wkb, (i, j)


def _reference_digest(geoms: np.ndarray) -> str:
    """The digest's stream built from shapely's rings of every part (copies of each ring)."""
    import hashlib

    types = shapely.get_type_id(geoms).astype(np.int64)
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    has_z = bool(shapely.has_z(geoms[types >= 0]).any()) if (types >= 0).any() else False
    digest = hashlib.sha1(b"agglo-polygons-v2")
    for a in (
        np.array([len(geoms), int(has_z)], np.int64),
        types,
        np.bincount(part_of, minlength=len(geoms)).astype(np.int64),
        np.bincount(ring_of, minlength=len(parts)).astype(np.int64),
        shapely.get_num_coordinates(rings).astype(np.int64),
        np.ascontiguousarray(shapely.get_coordinates(geoms, include_z=has_z)),
    ):
        digest.update(a.tobytes())
    return digest.hexdigest()


def test_ring_structure_without_copies_equals_shapely_rings():
    """Rings per part and vertices per ring, skipping the copy of simple parts' rings, equal
    those of shapely.get_rings on every part (holes, empties, mixed types, multi-parts)."""
    sq = shapely.box(0, 0, 2, 2)
    holed = shapely.Polygon(sq.exterior, [[(0.5, 0.5), (1, 0.5), (1, 1)]])
    parts = np.array(
        [
            sq,
            holed,
            shapely.Polygon(),
            shapely.box(3, 3, 5, 4),
            shapely.Point(1, 1),
            shapely.LineString([(0, 0), (1, 1)]),
            holed,
            sq,
        ],
        dtype=object,
    )
    for sub in (parts, parts[:1], parts[1:2], parts[2:3], parts[:0]):
        rings, ring_of = shapely.get_rings(sub, return_index=True)
        per_part, coords = m._ring_structure(sub)
        np.testing.assert_array_equal(per_part, np.bincount(ring_of, minlength=len(sub)))
        np.testing.assert_array_equal(coords, shapely.get_num_coordinates(rings))
        assert per_part.dtype == coords.dtype == np.int64


def test_digest_equals_the_reference_stream_and_the_threaded_one(cities):
    """polygons_digest (and zonal_pm25's digest hashed in a thread beside its imports) equal
    the stream hashed from shapely's own rings, so the cache keys are those of before."""
    sq = shapely.box(0, 0, 2, 2)
    mixed = np.array(
        [
            shapely.MultiPolygon([sq, shapely.box(3, 3, 4, 4)]),
            None,
            shapely.Polygon(),
            shapely.Polygon(sq.exterior, [[(0.5, 0.5), (1, 0.5), (1, 1)]]),
            sq,
        ],
        dtype=object,
    )
    for geoms in (np.asarray(cities.geometry.values, dtype=object), mixed):
        want = _reference_digest(geoms)
        assert CoverageCache.polygons_digest(geoms).hexdigest() == want
        assert m._digest_beside_imports(geoms).hexdigest() == want


def test_cached_run_reuses_the_entry_without_computing_coverage(some_cities, tmp_path, monkeypatch):
    """A second run on the same polygons reads the stored plan (keyed by the digest): the
    same table as the first run, and as a run without any cache."""
    import threading

    ref = _run(some_cities, None)
    first = _run(some_cities, tmp_path)
    monkeypatch.setattr(m, "_build_plan", lambda *a, **k: pytest.fail("coverage recomputed"))
    second = _run(some_cities, tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "agglo-digest"]  # joined
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(ref, second, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("weights", ["area", "coverage", "centroid"])
def test_plan_without_off_grid_cells_gives_the_same_table_as_one_with_them(
    some_cities, monkeypatch, weights
):
    """Cells outside the grid left out of the plan (they count only in the totals): the same
    table, bit for bit, as a plan that keeps them and masks them every year, on a grid that
    cuts through the cities (and with a NaN year cell, the per-year mask path)."""
    import xarray as xr

    grid_lat = np.round(np.arange(31.95, 26, -0.1), 6)
    grid_lon = np.round(np.arange(105.05, 117, 0.1), 6)
    rng = np.random.default_rng(8)
    vals = rng.uniform(5, 90, (2, grid_lat.size, grid_lon.size))
    vals[1, 10, 10] = np.nan
    da = xr.DataArray(
        vals,
        dims=("year", "lat", "lon"),
        coords={"year": [2019, 2020], "lat": grid_lat, "lon": grid_lon},
    )
    pop = xr.DataArray(
        rng.uniform(0, 1000, (1, grid_lat.size, grid_lon.size)),
        dims=("year", "lat", "lon"),
        coords={"year": [2020], "lat": grid_lat, "lon": grid_lon},
    )

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zonal_pm25(
                da, some_cities, weights=weights, population=pop, scheduler="synchronous"
            )

    new = run()
    grid = discover_layers(da)[0].grid
    plan = coverage_plan(some_cities.geometry, grid, weights=weights)
    assert plan.cell_index(Layer(2020, "xarray", grid)).inside is None  # none outside
    monkeypatch.setattr(m, "_off_grid", lambda cells, window: None)
    monkeypatch.setattr(m, "_take_off_grid", lambda used, window: None)
    old = run()
    assert (old["valid_fraction"] < 1).any() and (old["valid_fraction"] > 0).any()
    pd.testing.assert_frame_equal(new, old, check_exact=True)
