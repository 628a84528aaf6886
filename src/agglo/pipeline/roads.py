"""Pipeline stage ``roads``: road-network density per city into the panel (``road_density``).

Input: ``[inputs] roads`` of the run config (OSM extract or any line layer) or, when absent,
the bundled SYNTHETIC demo network ``data/roads/demo_roads_synthetic.gpkg``. Options in the
``[roads]`` section: ``classes`` (preset or list), ``class_col``, ``mapping`` (table of source
class -> OSM highway), ``layer``. A road network is a snapshot: its density is used for every
year of the run (recorded in the provenance).
"""

from __future__ import annotations

import logging

from agglo.measures.roads import RoadsOptions
from agglo.pipeline import RunContext, road_network

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    """Compute road density for ``ctx.cities`` and put it into the panel for every year."""
    from agglo.measures.roads import read_roads, road_density

    opts = RoadsOptions.from_dict(ctx.config.section("roads"))
    found = road_network(ctx, "roads")
    if found is None:
        return
    path, synthetic = found
    cities = ctx.cities
    bbox = tuple(float(v) for v in cities.to_crs(4326).total_bounds)
    lines = read_roads(path, bbox=bbox, **opts.to_dict())
    result = road_density(lines, cities, id_col="adcode", classes=opts.classes)
    status = "SYNTHETIC" if synthetic else "real"
    if synthetic:
        ctx.synthetic.add(path.name)
    source = (
        f"agglo.road_density on {path.name} ({status}); classes "
        f"{result.attrs['classes']}; geodesic km per 100 km² (WGS84); one network snapshot "
        f"applied to every year {ctx.years}"
    )
    log.info(
        "road density from %s (%s): one network snapshot used for years %s",
        path.name,
        status,
        ctx.years,
    )
    values = [
        result[["adcode"]].assign(year=year, value=result["density_km_per_100km2"].to_numpy())
        for year in ctx.years
    ]
    if values:
        import pandas as pd

        ctx.replace_indicator(pd.concat(values, ignore_index=True), "road_density", source)
    else:
        ctx.provenance["road_density"] = source
    table = result.reset_index(drop=True)
    table.insert(1, "name_zh", cities["name_zh"].to_numpy())
    table.insert(2, "agglomeration_id", cities["agglomeration_id"].to_numpy())
    table["data_status"] = "synthetic" if synthetic else "real"
    table["source"] = path.name
    ctx.tables["road_density"] = table
    ctx.results["roads"] = result
    members = table[table["agglomeration_id"].notna()]
    ctx.summary.append(
        ctx.label(
            f"Road density ({path.name}, {status}): {len(lines):,} lines, "
            f"{result['length_km'].sum():,.0f} km; member cities' median "
            f"{members['density_km_per_100km2'].median():.1f} km/100 km²"
        )
    )
