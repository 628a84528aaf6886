"""Run configuration: paths and method options, loadable from TOML; defaults need no file.

A TOML file mirrors :class:`RunConfig`::

    [inputs]
    panel = "my_yearbook.xlsx"     # default: the bundled synthetic demo panel
    rasters = "acag/"              # ACAG PM2.5 NetCDF/GeoTIFF file or directory
    roads = "china-latest.osm.pbf" # OSM extract or any line layer; or a list of FILE[=CLASS]
    stations = "hsr_stations.csv"
    years = [2010, 2015, 2020]
    agglomerations = ["cy", "qz"]  # core-periphery only these (default: all five)

    [panel]          # options of agglo.PanelOptions (columns, on_unknown_city, years, sheet, ...)
    on_unknown_city = "drop"

    [index]          # options of agglo.IndexOptions (sensitivity included)
    ddof = 0

    [autocorr]
    weights = "queen"
    permutations = 999

Each stage reads its own section (``index``, ``pm25``, ``roads``, ``hsr``, ``autocorr``,
``coreperiphery``, ``metro``, ``plot``) and validates its keys.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from agglo.errors import AggloInputError, ValidationError
from agglo.options import RUN_SEED, did_you_mean

__all__ = ["SECTIONS", "RunConfig", "load_config"]

SECTIONS = (
    "panel",
    "index",
    "pm25",
    "roads",
    "hsr",
    "autocorr",
    "coreperiphery",
    "metro",
    "coordination",
    "disparity",
    "convergence",
    "plot",
    "report",
)


@dataclass
class RunConfig:
    """Everything ``agglo run`` needs; ``None`` paths mean "use the bundled data"."""

    boundaries: Path | None = None
    #: boundary region: "yangtze" (default), "china" or a list of two-digit province codes
    region: str | list[str] | None = None
    #: membership table (CSV with the bundled table's columns); default: the bundled five
    membership: Path | None = None
    panel: Path | None = None
    rasters: Path | None = None
    roads: Path | list[str] | None = None
    stations: Path | None = None
    years: list[int] | None = None
    agglomerations: list[str] | None = None
    seed: int = RUN_SEED
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """Options of one stage (empty dict if absent)."""
        if name not in SECTIONS:
            raise KeyError(name)
        return dict(self.sections.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (recorded in every output's metadata)."""
        d = asdict(self)
        for k in ("boundaries", "membership", "panel", "rasters", "roads", "stations"):
            v = d[k]
            d[k] = None if v is None else [str(x) for x in v] if isinstance(v, list) else str(v)
        return d


_INPUT_KEYS = {f.name for f in fields(RunConfig)} - {"sections"}
_PATH_KEYS = {"boundaries", "membership", "panel", "rasters", "roads", "stations"}


def load_config(path: str | Path | None) -> RunConfig:
    """Read a TOML run configuration; ``None`` gives the defaults.

    Relative paths in ``[inputs]`` and ``[panel] columns_file`` are resolved against the TOML
    file's folder.

    Raises
    ------
    AggloInputError
        Unknown sections or keys (with the closest valid names), unreadable TOML.

    Examples
    --------
    >>> load_config(None).seed
    20101115
    """
    if path is None:
        return RunConfig()
    path = Path(path)
    if not path.is_file():
        raise AggloInputError(f"config file {path} does not exist.")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM (Windows Notepad) is fine
    except UnicodeDecodeError as exc:
        raise AggloInputError(
            f"{path}: not UTF-8 text (GBK/GB18030?); save it as UTF-8 and run again."
        ) from exc
    except OSError as exc:
        raise AggloInputError(f"cannot read config file {path}: {exc.strerror}.") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AggloInputError(f"{path}: not valid TOML ({exc}).") from exc
    problems = []
    inputs = raw.pop("inputs", {})
    if not isinstance(inputs, dict):
        raise AggloInputError(
            f'{path}: inputs must be a table ([inputs] with keys such as panel = "file.xlsx"); '
            f"got {inputs!r}."
        )
    problems += _input_type_problems(inputs)
    valid = sorted(_INPUT_KEYS)
    problems += [
        f"inputs.{key} is not an option{did_you_mean(key, valid)}; valid: {', '.join(valid)}"
        for key in inputs
        if key not in _INPUT_KEYS
    ]
    problems += [
        f"section [{key}] is unknown{did_you_mean(key, SECTIONS)}; valid: {', '.join(SECTIONS)}"
        for key in raw
        if key not in SECTIONS
    ]
    problems += [
        f"[{key}] must be a table of options ([{key}] then key = value lines); got {value!r}"
        for key, value in raw.items()
        if key in SECTIONS and not isinstance(value, dict)
    ]
    if problems:
        raise ValidationError(problems, source=str(path))
    cfg = RunConfig(sections={k: dict(v) for k, v in raw.items()})
    panel = cfg.sections.get("panel", {})
    if isinstance(panel.get("columns_file"), str) and not Path(panel["columns_file"]).is_absolute():
        panel["columns_file"] = str(path.parent / panel["columns_file"])  # beside the TOML
    for key, value in inputs.items():
        if key == "roads" and isinstance(value, list):  # several FILE[=CLASS] sources
            value = [str(path.parent / v) if not Path(v).is_absolute() else v for v in value]
        elif key in _PATH_KEYS and value is not None:
            p = Path(value)
            value = p if p.is_absolute() else (path.parent / p)
        setattr(cfg, key, value)
    return cfg


def _input_type_problems(inputs: dict[str, Any]) -> list[str]:
    """Types of the ``[inputs]`` values: paths are strings, years integers, seed an integer."""
    problems = []
    for key, value in inputs.items():
        if key in {"boundaries", "panel", "rasters", "roads", "stations"}:
            if value is not None and not isinstance(value, str):
                problems.append(f"inputs.{key} must be a path in quotes; got {value!r}")
        elif key == "years":
            if not isinstance(value, list) or not all(
                isinstance(y, int) and not isinstance(y, bool) for y in value
            ):
                problems.append(
                    f"inputs.years must be a list of years, e.g. [2010, 2020]; got {value!r}"
                )
        elif key == "seed" and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"inputs.seed must be an integer; got {value!r}")
    return problems
