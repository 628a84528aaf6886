"""Pipeline stage ``hsr``: high-speed-rail flag per city and year into the panel (``hsr``).

Input: ``[inputs] stations`` of the run config (a stations table or a rail-line table such as
RailwayVIS's ``railways.csv``). Options in the ``[hsr]`` section: ``station_to_city`` (JSON
file), ``min_speed_kmh`` (250), ``rule`` (speed/type/either), ``encoding``. Without a stations
input the panel's own ``hsr`` values are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agglo.errors import AggloInputError
from agglo.measures.hsr import HSROptions
from agglo.pipeline import RunContext

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    """Compute the HSR flag for ``ctx.cities`` and ``ctx.years`` and put it into the panel."""
    from agglo.measures.hsr import hsr_access, read_stations

    opts = HSROptions.from_dict(ctx.config.section("hsr"))
    if ctx.config.stations is None:
        log.info("no stations input configured: the panel's hsr values are kept; stage hsr skipped")
        return
    path = Path(ctx.config.stations)
    if not path.exists():
        raise AggloInputError(f"[inputs] stations = {path} does not exist.")
    min_speed = opts.min_speed_kmh
    table = read_stations(path, **opts.to_dict())
    result = hsr_access(
        table, ctx.cities, ctx.years, counties=ctx.counties, min_speed_kmh=min_speed
    )
    synthetic = "synthetic" in path.name.lower()
    if synthetic:
        ctx.synthetic.add(path.name)
    source = (
        f"agglo.hsr_access on {path.name} ({'SYNTHETIC' if synthetic else 'real'}); "
        f"hsr = 1 from the year the city's first station (>= {min_speed:g} km/h) opened"
    )
    ctx.replace_indicator(result.rename(columns={"hsr": "value"}), "hsr", source)
    table_out = result.copy()
    table_out.insert(
        1, "name_zh", table_out["adcode"].map(ctx.cities.set_index("adcode")["name_zh"])
    )
    ctx.tables["hsr"] = table_out
    ctx.results["hsr"] = result
    last = result[result["year"] == max(ctx.years)] if ctx.years else result
    ctx.summary.append(
        ctx.label(
            f"HSR ({path.name}): {int(last['hsr'].sum())} of {last['adcode'].nunique()} cities "
            f"have a station by {max(ctx.years) if ctx.years else '-'}"
        )
    )
