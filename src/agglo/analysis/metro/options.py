"""Options of the metro stage (:class:`MetroOptions`): the one definition of every metro default.

The function defaults of :func:`~agglo.analysis.metro.travel_times`,
:func:`~agglo.analysis.metro.commute_catchment` and :func:`~agglo.analysis.metro.metro_areas`
are read from here, as are the ``[metro]`` TOML section and the ``agglo metro`` flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agglo.options import Options, option

__all__ = ["MetroOptions"]


@dataclass(frozen=True)
class MetroOptions(Options):
    """Options of :func:`~agglo.analysis.metro.metropolitan_areas` (``[metro]``, ``agglo metro``).

    Examples
    --------
    >>> MetroOptions.from_dict({"minutes": 45}).used_bands, MetroOptions().method
    ((15.0, 30.0, 45.0), 'network')
    """

    section = "metro"
    minutes: float = option(
        60.0, help="Commute limit.", unit="min", minimum=0, exclusive_minimum=True
    )
    access_speed_kmh: float = option(
        15.0, help="Off-network access speed.", unit="km/h", minimum=0, exclusive_minimum=True
    )
    cores: tuple[str, ...] | None = option(
        None,
        help="Core cities (adcodes or Chinese names, e.g. 成都,500000); default: the core "
        "cities of the five agglomerations.",
    )
    method: str = option("network", help="Travel-time method.", choices=("network", "friction"))
    bands: tuple[float, ...] = option(
        (15.0, 30.0, 45.0, 60.0), help="Isochrone band limits.", unit="min"
    )
    cell_m: float = option(
        500.0,
        help="Cell size of the friction method.",
        unit="m",
        minimum=0,
        exclusive_minimum=True,
    )
    classes: str | tuple[str, ...] | None = option(
        None,
        help="Road classes read: all, default, major or a list (default: every class with a "
        "default speed).",
    )
    class_col: str = option("highway", help="Class column of a line layer (Geofabrik: fclass).")
    speed_col: str | None = option(None, help="Column of the line layer holding speeds, km/h.")
    speeds: Mapping[str, float] | None = option(None, help="Speeds by road class, km/h.", cli=False)
    max_access_km: float = option(
        10.0, help="Longest off-network access to the road graph.", unit="km", minimum=0
    )

    def extra_problems(self) -> list[str]:
        """Given bands must lie within the commute limit (the default bands are cut at it).

        >>> MetroOptions.from_dict({"minutes": 60, "bands": [15, 90]})
        Traceback (most recent call last):
        ...
        agglo.errors.ValidationError: [metro] options: 1 problem(s)
          - metro.bands 90 exceed the commute limit minutes = 60: give bands up to it (e.g. 15,30,45,60) or raise minutes
        """
        if self.bands == MetroOptions.bands:
            return []
        if not self.bands or any(b <= 0 for b in self.bands):
            return [
                f"metro.bands must be positive minutes, e.g. [15, 30, 45, 60]; got {self.bands}"
            ]
        over = ", ".join(f"{b:g}" for b in self.bands if b > self.minutes)
        if not over:
            return []
        return [
            f"metro.bands {over} exceed the commute limit minutes = {self.minutes:g}: give bands "
            "up to it (e.g. 15,30,45,60) or raise minutes"
        ]

    @property
    def used_bands(self) -> tuple[float, ...]:
        """The band limits within the commute limit (the default bands are cut at it)."""
        return tuple(b for b in self.bands if b <= self.minutes)
