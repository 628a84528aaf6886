"""zonal_pm25's years split across forked processes (``scheduler="processes"`` and the choice
of ``scheduler=None``): same numbers as the years in turn, warnings, logs and errors of the
children shown in the caller, in-process fallback where forking is not allowed."""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agglo._forked import ForkedCall, fork_available
from agglo.errors import AggloInputError
from agglo.io.rasters import Layer, write_acag_netcdf
from agglo.measures import pm25
from agglo.measures.pm25 import zonal_pm25

pytestmark = pytest.mark.skipif(not fork_available(), reason="forked processes need Linux")

YEARS = list(range(2001, 2008))  # 7 years: uneven runs of years over 2 or 3 processes
LAT = np.arange(20.05, 23.0, 0.1)  # 30 rows, ascending as ACAG files
LON = np.arange(100.05, 104.0, 0.1)  # 40 columns


def _field(year: int) -> np.ndarray:
    rng = np.random.default_rng(year)
    v = rng.uniform(5.0, 90.0, (LAT.size, LON.size))
    if year % 2:  # odd years have missing cells (the masked-sums path), even years none
        v[rng.random(v.shape) < 0.08] = np.nan
    return v


@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scheduler_rasters")
    for y in YEARS:
        p = folder / f"synthetic_CNNPM25.test.{y}.nc"
        write_acag_netcdf(p, _field(y), LAT, LON, year=y, synthetic=True, title="scheduler test")
    return folder


@pytest.fixture(scope="module")
def polygons():
    # boxes on cell edges (closed-form means with weights="coverage") and a triangle
    boxes = [(100.0, 20.0, 101.0, 21.0), (101.2, 20.5, 103.0, 22.9), (103.0, 20.0, 104.0, 23.0)]
    geoms = [shapely.box(*b) for b in boxes]
    geoms.append(shapely.Polygon([(100.13, 21.07), (102.91, 21.5), (101.4, 22.86)]))
    return gpd.GeoDataFrame({"adcode": ["a", "b", "c", "t"]}, geometry=geoms, crs=4326)


@pytest.fixture
def two_cores(monkeypatch):
    """Two usable cores whatever this machine's affinity (the years can still fork on one)."""
    monkeypatch.setattr(pm25, "usable_cores", lambda: 2)


def _spy_pids(monkeypatch) -> list:
    """Make every run of _reduce_years log its process id and warn once per year."""
    real = pm25._reduce_years

    def spy(layers, plan, pop):
        for layer in layers:
            logging.getLogger("agglo.test").info("year %d in pid %d", layer.year, os.getpid())
            warnings.warn(f"spy warning {layer.year}", UserWarning, stacklevel=1)
        return real(layers, plan, pop)

    monkeypatch.setattr(pm25, "_reduce_years", spy)


@pytest.mark.parametrize("weights", ["area", "coverage"])
def test_processes_equal_synchronous_bit_for_bit(rasters, polygons, two_cores, weights):
    sync = zonal_pm25(rasters, polygons, weights=weights, scheduler="synchronous")
    procs = zonal_pm25(rasters, polygons, weights=weights, scheduler="processes")
    pd.testing.assert_frame_equal(procs, sync, check_exact=True)
    assert sorted(sync["year"].unique()) == YEARS
    assert sync["valid_fraction"].lt(1).any()  # the missing-cells path was exercised


def test_processes_match_closed_form_means(rasters, polygons, two_cores):
    # boxes made of whole cells: the coverage-weighted mean is the plain mean of their cells
    out = zonal_pm25(rasters, polygons, weights="coverage", scheduler="processes")
    out = out.set_index(["adcode", "year"])
    for code, (w, s, e, n) in zip(
        "abc", [(0, 0, 10, 10), (12, 5, 30, 29), (30, 0, 40, 30)], strict=True
    ):
        for y in YEARS:
            cells = _field(y)[s:n, w:e].astype(np.float32).astype(np.float64)  # as stored
            expect = np.nanmean(cells)
            assert out.loc[(code, y), "pm25_mean"] == pytest.approx(expect, rel=1e-12)
            assert out.loc[(code, y), "n_cells"] == np.isfinite(cells).sum()


def test_processes_run_in_children_and_forward_logs_and_warnings(
    rasters, polygons, two_cores, monkeypatch, caplog
):
    sync = zonal_pm25(rasters, polygons, scheduler="synchronous")
    monkeypatch.setattr(pm25, "usable_cores", lambda: 3)
    _spy_pids(monkeypatch)
    with caplog.at_level(logging.INFO, logger="agglo"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        procs = zonal_pm25(rasters, polygons, scheduler="processes")
    pd.testing.assert_frame_equal(procs, sync, check_exact=True)
    pids = {}
    for r in caplog.records:
        if r.name == "agglo.test":  # a child's record comes back formatted (no args)
            year, pid = map(int, re.fullmatch(r"year (\d+) in pid (\d+)", r.getMessage()).groups())
            pids[year] = pid
    assert sorted(pids) == YEARS
    # 3 runs of consecutive years (3 + 2 + 2), the first in this process
    runs = [pids[y] for y in YEARS]
    assert runs[:3] == [os.getpid()] * 3
    assert len(set(runs)) == 3 and runs[3] == runs[4] and runs[5] == runs[6]
    spied = [str(x.message) for x in w if str(x.message).startswith("spy warning")]
    assert spied == [f"spy warning {y}" for y in YEARS]  # each year once, in year order


def test_auto_scheduler_forks_only_for_enough_data(rasters, polygons, two_cores, monkeypatch):
    sync = zonal_pm25(rasters, polygons, scheduler="synchronous")
    forked, per_year = [], []
    real_run, real_cells = pm25._run_processes, pm25._cells_read
    monkeypatch.setattr(pm25, "_run_processes", lambda *a: forked.append(a[-1]) or real_run(*a))
    monkeypatch.setattr(
        pm25, "_cells_read", lambda i: per_year.append(real_cells(i)) or per_year[-1]
    )
    out = zonal_pm25(rasters, polygons)  # 7 small years: far below _CELLS_PER_PROCESS
    assert forked == [] and len(per_year) == len(YEARS)
    pd.testing.assert_frame_equal(out, sync, check_exact=True)
    cells = per_year[0]
    assert 0 < cells <= LAT.size * LON.size and per_year == [cells] * len(YEARS)
    # a process needs 4 years' reading: 7 years make one (no fork); 3 years': two
    for threshold, expect in [(4 * cells, []), (3 * cells, [2]), (1, [2])]:
        forked.clear()
        monkeypatch.setattr(pm25, "_CELLS_PER_PROCESS", threshold)
        out = zonal_pm25(rasters, polygons)
        assert forked == expect  # at most the 2 usable cores
        pd.testing.assert_frame_equal(out, sync, check_exact=True)


def test_error_in_a_child_year_names_the_file(rasters, polygons, two_cores, monkeypatch):
    real = Layer.read_indexed

    def broken(self, index, **kw):
        if self.year == 2006:  # in the child's run of years (2005-2007)
            raise AggloInputError(f"{self.name}: could not read the data (test)")
        return real(self, index, **kw)

    monkeypatch.setattr(Layer, "read_indexed", broken)
    with pytest.raises(AggloInputError, match=r"2006\.nc#PM25: could not read the data \(test\)"):
        zonal_pm25(rasters, polygons, scheduler="processes")


def test_first_failing_year_is_the_error(rasters, polygons, two_cores, monkeypatch):
    real = Layer.read_indexed

    def broken(self, index, **kw):
        if self.year in (2002, 2006):  # one in this process's years, one in the child's
            raise AggloInputError(f"year {self.year} failed")
        return real(self, index, **kw)

    monkeypatch.setattr(Layer, "read_indexed", broken)
    with pytest.raises(AggloInputError, match="year 2002 failed"):
        zonal_pm25(rasters, polygons, scheduler="processes")


def test_child_that_dies_raises_a_clear_error(rasters, polygons, two_cores, monkeypatch):
    real = Layer.read_indexed

    def dies(self, index, **kw):
        if self.year == 2007 and os.getpid() != parent:
            os._exit(3)  # as if killed (e.g. out of memory)
        return real(self, index, **kw)

    parent = os.getpid()
    monkeypatch.setattr(Layer, "read_indexed", dies)
    with pytest.raises(RuntimeError, match=r"years 2005-2007 .*exit code 3.*'synchronous'"):
        zonal_pm25(rasters, polygons, scheduler="processes")


def _in_daemon(rasters, polygons):
    import multiprocessing

    assert multiprocessing.current_process().daemon
    pm25.usable_cores = lambda: 2  # this child's module only
    return zonal_pm25(rasters, polygons, scheduler="processes")


def test_daemonic_worker_runs_the_years_in_process(rasters, polygons, caplog):
    # the pipeline runs stages side by side in daemonic forked children, which may not fork
    sync = zonal_pm25(rasters, polygons, scheduler="synchronous")
    with caplog.at_level(logging.INFO, logger="agglo"):
        out = ForkedCall.start(_in_daemon, rasters, polygons, name="pm25").result()
    pd.testing.assert_frame_equal(out, sync, check_exact=True)
    assert any("already in a daemonic worker process" in r.getMessage() for r in caplog.records)


def test_other_threads_keep_the_years_in_process(rasters, polygons, two_cores, caplog):
    sync = zonal_pm25(rasters, polygons, scheduler="synchronous")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="user-thread")
    other.start()
    try:
        with caplog.at_level(logging.INFO, logger="agglo"):
            out = zonal_pm25(rasters, polygons, scheduler="processes")
    finally:
        stop.set()
        other.join()
    pd.testing.assert_frame_equal(out, sync, check_exact=True)
    assert any("other thread(s) running" in r.getMessage() for r in caplog.records)


def test_processes_need_fork(two_cores, monkeypatch):
    import agglo._forked

    monkeypatch.setattr(pm25, "fork_available", lambda: False)
    monkeypatch.setattr(agglo._forked, "fork_available", lambda: False)
    with pytest.raises(AggloInputError, match=r"scheduler='processes' forks .* only on Linux"):
        pm25._check_scheduler("processes")
    assert pm25._process_count([None, None], None, explicit=True) == 0


def test_scheduler_choices_are_checked():
    with pytest.raises(AggloInputError, match=r"scheduler must be .*'processes'.*got 'fast'"):
        pm25._check_scheduler("fast")
