"""Output integrity under faults: a run killed at any point leaves the previous output intact.

A child process writes a run folder (GeoPackage, shapefile set, CSV) through
:func:`agglo.outputs.writers.run_folder` and kills itself with SIGKILL at the N-th file rename
(every rename is a point where a half-replaced output could appear), or is killed from outside
while it writes. The next writer's cleanup then runs, and the previous complete output must be
what is there: manifest ``complete``, every checksum matching, the layers readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from agglo.outputs.writers import (
    MANIFEST,
    clean_stale_temps,
    export,
    read_manifest,
    run_folder,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL fault injection needs POSIX")

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import geopandas as gpd, pandas as pd, shapely
    from agglo.outputs import writers

    out, version, kill_at, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    calls = {"n": 0}
    real_replace = os.replace

    def replace(a, b):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(a, b)

    writers.os.replace = replace
    n = 3 + version
    g = gpd.GeoDataFrame(
        {"adcode": [f"{i:06d}" for i in range(n)], "version": [version] * n},
        geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(n)], crs=4326)
    if mode == "shp":
        writers.export(g, os.path.join(out, "cities.shp"), force=True)
        sys.exit(0)
    with writers.run_folder(out, force=True, config={"version": version}) as tmp:
        writers.export_layers({"cities": g}, tmp / "agglo.gpkg")
        writers.export(g, tmp / "shp" / "cities.shp")
        writers.write_csv(pd.DataFrame(g.drop(columns="geometry")), tmp / "tables" / "t.csv")
        if mode == "slow":
            print("writing", flush=True)
            time.sleep(30)
    print("renames", calls["n"])
    """
)


def child(out: Path, version: int, kill_at: int = 0, mode: str = "run") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), str(version), str(kill_at), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_complete_run(out: Path, version: int) -> None:
    manifest = read_manifest(out)
    assert manifest["status"] == "complete" and manifest["config"] == {"version": version}
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST
    }
    assert set(listed) == on_disk  # nothing missing, nothing extra
    for rel, f in listed.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == f["sha256"], rel
    assert pyogrio.read_dataframe(out / "agglo.gpkg", layer="cities")["version"].eq(version).all()
    shp = gpd.read_file(out / "shp" / "cities.shp")
    assert len(shp) == 3 + version and shp.geometry.notna().all()
    assert shp["version"].eq(version).all()
    assert pd.read_csv(out / "tables" / "t.csv")["version"].eq(version).all()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".agglo-" in p.name)


def test_complete_run_writes_manifest_last(tmp_path):
    out = tmp_path / "run"
    p = child(out, 1)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert_complete_run(out, 1)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_run_killed_at_every_rename_keeps_the_previous_output(tmp_path):
    out = tmp_path / "run"
    p = child(out, 1)
    p.communicate(timeout=120)
    assert_complete_run(out, 1)
    # renames in the replacing run: count them on a throw-away copy
    probe = child(tmp_path / "probe", 2)
    n_renames = int(probe.communicate(timeout=120)[0].split()[-1])
    assert n_renames >= 5
    outcomes = []
    for kill_at in range(1, n_renames + 1):
        p = child(out, 2, kill_at)
        p.communicate(timeout=120)
        assert p.returncode == -signal.SIGKILL
        clean_stale_temps(tmp_path)  # what the next run does first
        version = read_manifest(out)["config"]["version"]
        assert_complete_run(out, version)  # old or new, never a mixture
        assert leftovers(tmp_path) == []
        outcomes.append(version)
        if version == 2:  # the swap went through: start again from version 1
            child(out, 1).communicate(timeout=120)
    # only a kill at the very last rename (the old folder already moved aside) can leave it
    assert outcomes[:-1] == [1] * (n_renames - 1)


def test_run_killed_from_outside_while_writing(tmp_path):
    out = tmp_path / "run"
    child(out, 1).communicate(timeout=120)
    p = child(out, 2, mode="slow")
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert_complete_run(out, 1)  # untouched even before any cleanup
    assert leftovers(tmp_path) != []  # the killed run's staging folder ...
    clean_stale_temps(tmp_path)
    assert leftovers(tmp_path) == []  # ... is removed by the next writer


@pytest.mark.slow
def test_shapefile_set_is_replaced_as_a_unit(tmp_path):
    g = gpd.GeoDataFrame(
        {"version": [1] * 4}, geometry=[shapely.box(i, 0, i + 1, 1) for i in range(4)], crs=4326
    )
    export(g, tmp_path / "cities.shp")
    n_files = len(list(tmp_path.glob("cities.*")))
    for kill_at in range(1, 2 * n_files + 2):
        p = child(tmp_path, 2, kill_at, mode="shp")
        p.communicate(timeout=120)
        clean_stale_temps(tmp_path)
        shp = gpd.read_file(tmp_path / "cities.shp")
        assert leftovers(tmp_path) == []
        if p.returncode == 0:  # the kill point was past the last rename
            assert shp["version"].eq(2).all() and len(shp) == 5
            break
        assert p.returncode == -signal.SIGKILL
        # the previous set, whole: 4 rows, no null geometries, old attributes
        assert len(shp) == 4 and shp.geometry.notna().all() and shp["version"].eq(1).all()
    else:
        pytest.fail("the replacement never completed")


def test_failed_run_leaves_no_trace(tmp_path):
    out = tmp_path / "run"
    with run_folder(out) as tmp:
        (tmp / "a.csv").write_text("1")
    before = json.loads((out / MANIFEST).read_text())
    with pytest.raises(RuntimeError, match="boom"), run_folder(out, force=True) as tmp:
        (tmp / "a.csv").write_text("2")
        raise RuntimeError("boom")
    assert (out / "a.csv").read_text() == "1" and read_manifest(out) == before
    assert leftovers(tmp_path) == []


def test_a_live_process_temp_is_not_removed(tmp_path):
    mine = tmp_path / f".x.gpkg.agglo-tmp-{os.getpid()}-abc.gpkg"
    mine.write_text("")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    time.sleep(0.05)
    stale = tmp_path / f".x.gpkg.agglo-tmp-{dead.stdout.strip()}-abc.gpkg"
    stale.write_text("")
    assert clean_stale_temps(tmp_path) == [f"removed the stale temporary {stale.name}"]
    assert mine.exists() and not stale.exists()


def test_agglo_run_writes_its_folder_as_a_unit(tmp_path):
    from agglo.config import RunConfig
    from agglo.pipeline import run

    out = tmp_path / "out"
    outputs = run(RunConfig(), out, stages=("inputs", "write"))
    manifest = read_manifest(out)
    assert manifest["status"] == "complete" and manifest["end"] >= manifest["start"]
    assert {"agglo.gpkg", "shp/cities.shp"} <= {f["path"] for f in manifest["files"]}
    assert outputs.out_dir == out and leftovers(tmp_path) == []
    # boundaries and membership are real, and so is a run made only of them
    assert manifest["data_status"] == "real" and manifest["synthetic_inputs"] == []
    (out / "extra.txt").write_text("x")
    # a folder with a run.json is agglo's: --force replaces it whole (nothing stale survives)
    outputs = run(RunConfig(), out, force=True, stages=("inputs", "roads", "write"))
    manifest = read_manifest(out)
    assert not (out / "extra.txt").exists() and manifest["status"] == "complete"
    # the bundled demo roads are synthetic: the manifest says so and names them
    assert manifest["data_status"] == "synthetic" == outputs.data_status
    assert manifest["synthetic_inputs"] == sorted(outputs.synthetic)
    assert any("demo_roads_synthetic" in name for name in manifest["synthetic_inputs"])
