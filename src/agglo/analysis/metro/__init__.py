"""Metropolitan areas (都市圈) as one-hour commute catchments on a road graph (seed 001).

Model (DESIGN.md "Metropolitan areas"):

- **Graph** (:func:`road_graph`): nodes at road vertices, merged when they fall in the same
  ``snap_m`` (1 m) cell of an azimuthal equidistant projection centred on the data; one edge per
  pair of consecutive vertices, both ways unless the line is one-way. Edge time (minutes) =
  geodesic length on the WGS84 ellipsoid / speed. Speed = the ``maxspeed`` tag when present and
  valid (see :func:`parse_maxspeed`), else :data:`DEFAULT_SPEEDS_KMH` by ``highway`` class
  (overridable with ``speeds=``). Lines of classes without a speed are dropped and reported.
- **Sources** are joined to their nearest graph node (of any component) by an off-network
  *access* leg: geodesic distance at ``access_speed_kmh`` (default 15 km/h: unmapped local roads,
  e-bike). Sources farther than ``max_access_km`` from every node are an error.
- **Travel times**: one multi-source Dijkstra (``scipy.sparse.csgraph``, compiled) per group of
  sources, from virtual nodes joined to the sources' nodes by their access times (or from the
  node itself when a source sits on it), with the cut-off as ``limit``; results are arrays over
  the nodes (:class:`TravelTimes`), geometry on demand.
- **Catchment**: the set of points reachable in time when one may leave the network anywhere and
  continue off-network at ``access_speed_kmh``: for each reached directed edge u->v, the part of
  the edge reachable from u (fraction ``min(1, (T - t_u) / w)``) swept by a disc whose radius is
  the time left times the access speed -- the convex hull of the two end discs, exact because the
  radius shrinks linearly along the edge -- united over edges, plus the discs of reached nodes and
  the source's own walking disc. Nothing unreachable is claimed (discs are inscribed polygons):
  hosted isochrone tools that buffer whole edges or wrap a concave hull around the reached nodes
  claim area that cannot be reached in time. Entering the network part-way along an edge is not
  modelled (vehicles join at nodes). For speed, the sweep of an edge deep inside the area is
  left out when it adds less than the disc polygons' own chord error (see
  ``_network_pieces``), so the polygon may miss a sliver of that width -- never more. The
  catchments of all groups (and, in :func:`metro_areas`, all bands, which reuse the hour's
  projected nodes and edges) are built in a thread pool of one thread per available core when
  they reach 1,000 nodes in all (GEOS, numpy and PROJ release the GIL; the polygons are those
  built one by one, tests/test_metro.py). DESIGN.md does not mention threads; this is the
  metro stage's only parallelism and it changes wall time, not results.
- **Friction** alternative (``method="friction"``, for sparse networks): the road speeds are
  burnt into a raster of ``cell_m`` cells over a background speed (default: the access speed);
  cost-distance by Dijkstra on the 8-neighbour cell graph (step cost = step length x mean of the
  two cells' minutes per metre). It ignores one-way tags and lets traffic join a road anywhere.

Examples
--------
>>> import geopandas as gpd, shapely
>>> roads = gpd.GeoDataFrame(
...     {"highway": ["primary"], "maxspeed": ["60"]},
...     geometry=[shapely.LineString([(104.0, 30.0), (104.0, 30.1)])], crs=4326)
>>> g = road_graph(roads)
>>> tt = travel_times(g, [(104.0, 30.0)], minutes=60)
>>> round(float(tt.minutes.max()), 2)  # 11.09 km at 60 km/h
11.09
"""

from agglo.analysis.metro.areas import (
    CHENGDU_CHECK,
    DEFAULT_CORES,
    MetroResult,
    metro_areas,
    resolve_cores,
)
from agglo.analysis.metro.catchment import METHODS, Catchment, commute_catchment
from agglo.analysis.metro.graph import DEFAULT_SPEEDS_KMH, RoadGraph, parse_maxspeed, road_graph
from agglo.analysis.metro.metropolitan import latest_population, metropolitan_areas
from agglo.analysis.metro.options import MetroOptions
from agglo.analysis.metro.routing import DEFAULT_ACCESS_SPEED_KMH, TravelTimes, travel_times

__all__ = [
    "CHENGDU_CHECK",
    "DEFAULT_ACCESS_SPEED_KMH",
    "DEFAULT_CORES",
    "DEFAULT_SPEEDS_KMH",
    "METHODS",
    "Catchment",
    "MetroOptions",
    "MetroResult",
    "RoadGraph",
    "TravelTimes",
    "commute_catchment",
    "latest_population",
    "metro_areas",
    "metropolitan_areas",
    "parse_maxspeed",
    "resolve_cores",
    "road_graph",
    "travel_times",
]
