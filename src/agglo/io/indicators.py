"""Put measured indicators (PM2.5, road density, HSR, ...) into a long panel.

The measures return one table per indicator (``zonal_pm25`` → ``pm25_mean``, ``road_density``
→ ``density_km_per_100km2``, ``hsr_access`` → ``hsr``); :func:`with_indicators` turns them into
panel rows (``adcode, year, indicator, value``) and replaces what the panel held for those
indicators, so a notebook does what ``agglo run`` does without hand-written concatenation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from agglo.errors import AggloInputError
from agglo.results import StageResult

__all__ = [
    "MEASURE_VALUE_COLUMNS",
    "AnalysisPanel",
    "analysis_panel",
    "attach_provenance",
    "combine_provenance",
    "describe_provenance",
    "joined_labels",
    "provenance_by",
    "with_indicators",
    "with_provenance",
]

log = logging.getLogger(__name__)

#: the value column of each measure's own table, tried in this order
MEASURE_VALUE_COLUMNS = ("value", "pm25_mean", "density_km_per_100km2", "hsr")


def _values(name: str, table: pd.DataFrame, years: Iterable[int] | None) -> pd.DataFrame:
    """``adcode, year, value`` rows of one measured indicator."""
    table = pd.DataFrame(table)
    if "adcode" not in table.columns and table.index.name == "adcode":
        table = table.reset_index()
    column = next((c for c in MEASURE_VALUE_COLUMNS if c in table.columns), None)
    if "adcode" not in table.columns or column is None:
        raise AggloInputError(
            f"indicator {name!r}: the table needs an 'adcode' column and a value column (one of "
            f"{', '.join(MEASURE_VALUE_COLUMNS)}); it has {list(table.columns)}."
        )
    if "year" not in table.columns:
        if years is None:
            raise AggloInputError(
                f"indicator {name!r} has no 'year' column (one snapshot, e.g. a road network); "
                "pass years=[...] to apply it to those years."
            )
        years = [int(y) for y in years]
        table = pd.concat([table.assign(year=y) for y in years], ignore_index=True)
        log.info("indicator %s: one snapshot applied to years %s", name, years)
    rows = table[["adcode", "year", column]].rename(columns={column: "value"})
    duplicated = rows.duplicated(["adcode", "year"], keep=False)
    if duplicated.any():
        dup = rows.loc[duplicated, ["adcode", "year"]].drop_duplicates().head(5)
        raise AggloInputError(
            f"indicator {name!r} has several values for the same city and year, e.g. "
            f"{dup.to_dict('records')}; aggregate them first."
        )
    return rows.astype({"year": "int64", "value": "float64"})


def with_indicators(
    panel: pd.DataFrame,
    measured: Mapping[str, pd.DataFrame],
    *,
    years: Iterable[int] | None = None,
    source: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The panel with each measured indicator's rows replaced by the measured values.

    Parameters
    ----------
    panel
        Long panel with columns ``adcode, year, indicator, value`` (e.g. ``read_panel(...).panel``);
        not modified.
    measured
        Indicator name (registry key, e.g. ``"pm25"``, ``"road_density"``, ``"hsr"``) -> the
        measure's table: ``adcode``, optionally ``year``, and a value column (``value``,
        ``pm25_mean`` in µg/m³, ``density_km_per_100km2`` in km per 100 km², or ``hsr`` 0/1).
    years
        Years to which a table without a ``year`` column applies (one snapshot).
    source
        Indicator -> provenance label for the new rows, written to the panel's ``provenance``
        column when it has one (default ``"measured:<indicator>"``).

    Returns
    -------
    pandas.DataFrame
        A new panel; ``attrs["replaced"]`` maps each indicator to the number of panel rows
        its measured values replaced.

    Examples
    --------
    >>> panel = pd.DataFrame({"adcode": [320100, 320100], "year": [2020, 2020],
    ...                       "indicator": ["pm25", "gdp_per_capita"], "value": [40.0, 1.7e5]})
    >>> pm = pd.DataFrame({"adcode": [320100], "year": [2020], "pm25_mean": [31.5]})
    >>> roads = pd.DataFrame({"adcode": [320100], "density_km_per_100km2": [180.0]})
    >>> out = with_indicators(panel, {"pm25": pm, "road_density": roads}, years=[2020])
    >>> out.sort_values("indicator")[["indicator", "value"]].to_numpy().tolist()
    [['gdp_per_capita', 170000.0], ['pm25', 31.5], ['road_density', 180.0]]
    >>> out.attrs["replaced"]
    {'pm25': 1, 'road_density': 0}
    """
    missing = {"adcode", "year", "indicator", "value"} - set(panel.columns)
    if missing:
        raise AggloInputError(
            f"the panel lacks column(s) {sorted(missing)}; give the long panel of read_panel."
        )
    out, replaced = panel, {}
    for name, table in measured.items():
        rows = _values(name, table, years).assign(indicator=name)
        # the panel's own code type (read_panel keeps adcodes as text)
        rows["adcode"] = rows["adcode"].astype(panel["adcode"].dtype)
        if "provenance" in panel.columns:
            rows["provenance"] = (source or {}).get(name, f"measured:{name}")
        old = out["indicator"] == name
        replaced[name] = int(old.sum())
        out = pd.concat([out[~old], rows], ignore_index=True)
        log.info(
            "indicator %s: %d measured values replace %d panel rows", name, len(rows), old.sum()
        )
    out = out[list(panel.columns) + [c for c in out.columns if c not in panel.columns]]
    out.attrs = {**panel.attrs, "replaced": replaced}
    return out


@dataclass(frozen=True)
class AnalysisPanel(StageResult):
    """The panel the analyses use: the read panel with the measured indicators put in.

    Every value keeps its ``provenance`` label; ``indicator_provenance`` says per indicator
    which values are real, interpolated or synthetic, and :attr:`synthetic_inputs` names the
    panel file only for the indicators that stay synthetic.
    """

    panel: pd.DataFrame
    panel_name: str
    measured: dict[str, str]  # indicator -> source text of the measure

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"indicator_provenance": self.indicator_provenance}

    @cached_property  # read by tables(), notes() and synthetic_inputs: computed once
    def indicator_provenance(self) -> pd.DataFrame:
        """Per indicator: counts of real, interpolated and synthetic values and their sources."""
        from agglo.io.panel import indicator_provenance

        return indicator_provenance(self.panel)

    @property
    def synthetic_inputs(self) -> set[str]:
        """The panel file, naming its synthetic indicators (empty when none stays synthetic)."""
        t = self.indicator_provenance
        left = t[(t["n_synthetic"] > 0) & ~t["indicator"].isin(list(self.measured))]
        if left.empty:
            return set()
        return {f"{self.panel_name} (synthetic indicators: {', '.join(left['indicator'])})"}

    def synthetic_sources(self) -> set[str]:
        return self.synthetic_inputs

    def provenance(self) -> dict[str, str]:
        return dict(self.measured)

    def notes(self) -> list[str]:
        t = self.indicator_provenance
        synthetic = t["data_status"] == "synthetic"
        named = "; ".join(
            f"{r.indicator} {r.data_status} ({r.sources})" for r in t[~synthetic].itertuples()
        )
        return [
            f"Panel provenance: {named or 'no real values'}; "
            f"{int(synthetic.sum())} of {len(t)} variables wholly synthetic"
        ]


def analysis_panel(panel: pd.DataFrame, panel_name: str, measures: Iterable[Any]) -> AnalysisPanel:
    """The read panel with each measure's values (``.name``, ``.values``, ``.source``) put in.

    A measure whose source says ``synthetic`` labels its values ``synthetic``; otherwise
    ``real:agglo <name> stage`` (computed by agglo from real inputs).
    """
    measures = [m for m in measures if m is not None]
    tables = {m.name: m.values for m in measures}
    labels = {
        m.name: "synthetic" if "synthetic" in m.source.lower() else f"real:agglo {m.name} stage"
        for m in measures
    }
    merged = with_indicators(panel, tables, source=labels) if tables else panel
    return AnalysisPanel(merged, panel_name, {m.name: m.source for m in measures})


# --- per-row provenance of derived tables -------------------------------------------------
#
# A derived row (a coreness, a Gini, a city score) gets the provenance of the panel values it
# was computed from: ``provenance`` is the "; "-joined set of their labels (the format of
# ``city_gaps`` and ``index_indicators``) and, when the row combines several variables,
# ``provenance_inputs`` says which variable was real and which synthetic.


def joined_labels(labels: Iterable[Any]) -> str:
    """The distinct provenance labels, sorted and ``"; "``-joined (missing: ``unknown``).

    Examples
    --------
    >>> joined_labels(["synthetic", "real:census-2020", "synthetic", None])
    'real:census-2020; synthetic; unknown'
    """
    return "; ".join(sorted({"unknown" if pd.isna(x) else str(x) for x in labels}))


def describe_provenance(labels: pd.DataFrame) -> str:
    """Which inputs were real and which synthetic: ``status: input, input | status: input``.

    Parameters
    ----------
    labels
        ``input`` (variable name) and ``provenance`` (label) of the values a row used.

    Examples
    --------
    >>> t = pd.DataFrame({"input": ["population", "population", "gdp"],
    ...                   "provenance": ["real:census-2020", "interpolated:census-2010-2020",
    ...                                  "synthetic"]})
    >>> describe_provenance(t)
    'real+interpolated: population | synthetic: gdp'
    """
    one = labels[["input", "provenance"]].assign(row=0)
    return str(provenance_by(one, ["row"])["provenance_inputs"].iloc[0])


def provenance_by(labels: pd.DataFrame, by: Sequence[str], *, inputs: bool = True) -> pd.DataFrame:
    """Per group of ``by``: ``provenance`` (joined labels) and ``provenance_inputs``.

    Parameters
    ----------
    labels
        One row per value used: the ``by`` columns, ``input`` (its variable) and
        ``provenance`` (its label, e.g. ``real:census-2020``).
    by
        Columns identifying the output rows (e.g. ``agglomeration_id, year``).
    inputs
        Add ``provenance_inputs`` (:func:`describe_provenance`); leave it out for rows of one
        variable, whose ``provenance`` already says it.

    Returns
    -------
    pandas.DataFrame
        ``*by, provenance[, provenance_inputs]``, one row per group (first-seen order).

    Examples
    --------
    >>> t = pd.DataFrame({"year": [2020, 2020, 2010], "input": ["population", "gdp", "gdp"],
    ...                   "provenance": ["real:census-2020", "synthetic", "synthetic"]})
    >>> provenance_by(t, ["year"]).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'year': 2020, 'provenance': 'real:census-2020; synthetic',
      'provenance_inputs': 'real: population | synthetic: gdp'},
     {'year': 2010, 'provenance': 'synthetic', 'provenance_inputs': 'synthetic: gdp'}]
    """
    by = list(by)
    labels = labels[[*by, "input", "provenance"]]
    labels.attrs = {}  # (a copy) pandas would deep-copy them on every column taken below
    if by and len(labels) and not any(labels[c].isna().any() for c in by):
        out = _provenance_by_codes(labels, by, inputs)
        if out is not None:
            return out
    return _provenance_by_loop(labels, by, inputs)


#: most cells of the group x (label + input) tables :func:`_provenance_by_codes` builds
_CODES_MAX_CELLS = 20_000_000


def _provenance_by_codes(labels: pd.DataFrame, by: list[str], inputs: bool) -> pd.DataFrame | None:
    """:func:`provenance_by` on integer codes (``None`` when its tables would be too large).

    Groups, labels and inputs are factorised; each group's set of labels and each
    (group, input)'s set of statuses become rows of small 0/1 and bit-mask tables, and the
    text is built once per distinct row pattern (a run has few). The keys need no missing
    values (:func:`_provenance_by_loop` takes those); the result equals the loop's
    (``tests/test_provenance.py`` compares them).
    """
    from agglo.io.panel import VALUE_STATUSES, value_status

    group = np.zeros(len(labels), dtype=np.int64)
    for c in by:  # combined first-seen codes of the key columns
        codes, uniques = pd.factorize(labels[c])
        group, _ = pd.factorize(group * len(uniques) + codes)
    n_groups = int(group.max()) + 1
    prov_codes, prov_uniques = pd.factorize(labels["provenance"])  # missing -> -1
    prov_text = [str(x) for x in prov_uniques] + ["unknown"]
    prov_codes = np.where(prov_codes < 0, len(prov_text) - 1, prov_codes)
    names = labels["input"].astype(str) if inputs else pd.Series("", index=labels.index)
    input_codes, input_names = pd.factorize(names)
    n_prov, n_inputs = len(prov_text), len(input_names)
    if n_groups * (n_prov + n_inputs) > _CODES_MAX_CELLS:
        return None
    has_label = np.zeros((n_groups, n_prov), dtype=np.uint8)
    has_label[group, prov_codes] = 1
    status_bit = np.array(
        [1 << VALUE_STATUSES.index(value_status(p)) for p in prov_text], dtype=np.uint8
    )
    statuses = np.zeros((n_groups, n_inputs), dtype=np.uint8)
    if inputs:
        np.bitwise_or.at(statuses, (group, input_codes), status_bit[prov_codes])
    patterns, which = np.unique(np.hstack([has_label, statuses]), axis=0, return_inverse=True)
    text, inputs_text = [], []
    for row in patterns:
        text.append("; ".join(sorted({prov_text[j] for j in np.flatnonzero(row[:n_prov])})))
        if inputs:
            of = {
                str(input_names[i]): {st for b, st in enumerate(VALUE_STATUSES) if m >> b & 1}
                for i, m in enumerate(row[n_prov:])
                if m
            }
            inputs_text.append(_inputs_text(of))
    which = which.ravel()
    _, first = np.unique(group, return_index=True)  # each group's first row: its keys
    out = pd.DataFrame({c: labels[c].iloc[first].reset_index(drop=True) for c in by})
    out["provenance"] = np.asarray(text, dtype=object)[which]
    if inputs:
        out["provenance_inputs"] = np.asarray(inputs_text, dtype=object)[which]
    return out


def _provenance_by_loop(labels: pd.DataFrame, by: list[str], inputs: bool) -> pd.DataFrame:
    """:func:`provenance_by` by a loop over the distinct rows (any keys, missing ones too)."""
    from agglo.io.panel import value_status

    # the distinct (row, input, label) triples (hashed by pandas), then plain dicts: a pandas
    # groupby builds one Series per group, 50x slower on these sizes
    labels = labels[[*by, "input", "provenance"]].drop_duplicates()
    cols = [labels[c].astype(object).where(labels[c].notna(), None).tolist() for c in by]
    keys = list(zip(*cols, strict=True))
    provs = labels["provenance"].astype(object).where(labels["provenance"].notna(), "unknown")
    provs = [str(x) for x in provs.tolist()]
    seen: dict[tuple, set[str]] = {}
    by_input: dict[tuple, dict[str, set[str]]] = {}
    names = labels["input"].astype(str).tolist() if inputs else [None] * len(keys)
    for key, name, prov in zip(keys, names, provs, strict=True):
        seen.setdefault(key, set()).add(prov)
        if inputs:
            by_input.setdefault(key, {}).setdefault(name, set()).add(prov)
    status_of = {p: value_status(p) for p in set(provs)}

    def inputs_text(of: dict[str, set[str]]) -> str:
        return _inputs_text({name: {status_of[x] for x in labs} for name, labs in of.items()})

    rows = [
        (*key, "; ".join(sorted(labs)), *([inputs_text(by_input[key])] if inputs else []))
        for key, labs in seen.items()
    ]
    cols = [*by, "provenance", *(["provenance_inputs"] if inputs else [])]
    out = pd.DataFrame(rows, columns=cols)
    for c in by:  # the key columns keep their dtypes (codes as text, years as integers)
        if labels[c].notna().all():
            out[c] = out[c].astype(labels[c].dtype)
    return out


def _inputs_text(statuses: Mapping[str, set[str]]) -> str:
    """``status: input, input | status: input`` from each input's set of value statuses."""
    from agglo.io.panel import VALUE_STATUSES

    rank = {st: i for i, st in enumerate(VALUE_STATUSES)}
    grouped: dict[str, list[str]] = {}
    for name, found in statuses.items():
        grouped.setdefault("+".join(sorted(found, key=rank.__getitem__)), []).append(name)
    order = sorted(grouped, key=lambda st: [rank[x] for x in st.split("+")])
    return " | ".join(f"{st}: {', '.join(sorted(grouped[st]))}" for st in order)


def with_provenance(
    table: pd.DataFrame, labels: pd.DataFrame, on: Sequence[str], *, inputs: bool = True
) -> pd.DataFrame:
    """``table`` with the :func:`provenance_by` columns of its ``on`` keys (rows and order kept).

    A row whose keys have no labelled value gets ``unknown``: never a guess.

    Examples
    --------
    >>> t = pd.DataFrame({"year": [2020, 2010], "gini": [0.3, 0.2]})
    >>> lab = pd.DataFrame({"year": [2020, 2010], "input": "x",
    ...                     "provenance": ["real:census-2020", "synthetic"]})
    >>> with_provenance(t, lab, ["year"], inputs=False)["provenance"].tolist()
    ['real:census-2020', 'synthetic']
    """
    on = list(on)
    return attach_provenance(table, provenance_by(labels, on, inputs=inputs), on)


def attach_provenance(table: pd.DataFrame, prov: pd.DataFrame, on: Sequence[str]) -> pd.DataFrame:
    """``table`` with the columns of ``prov`` (a :func:`provenance_by` result) on its ``on``
    keys (rows and order kept; ``unknown`` where no labelled value); ``prov`` is not
    modified, so one result may label several tables (:func:`with_provenance` is
    ``provenance_by`` then this)."""
    on = list(on)
    for col in on:  # merge keys of one dtype (codes as text, years as integers)
        if col in table and table[col].dtype != prov[col].dtype:
            prov = prov.assign(**{col: prov[col].astype(table[col].dtype)})
    cols = [c for c in prov.columns if c not in on]
    merged = table.drop(columns=cols, errors="ignore").merge(prov, on=on, how="left")
    merged.index = table.index
    merged[cols] = merged[cols].fillna("unknown")
    merged.attrs = dict(table.attrs)
    return merged


def combine_provenance(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: the union of already-labelled rows' ``provenance`` (and inputs).

    For a row computed from other derived rows (a Moran's I from city scores): ``provenance``
    joins the distinct labels of the rows, ``provenance_inputs`` (when ``rows`` has it) says
    per input every status it had in any of them.

    Examples
    --------
    >>> t = pd.DataFrame({"year": [2020, 2020],
    ...                   "provenance": ["real:census-2020; synthetic", "synthetic"],
    ...                   "provenance_inputs": ["real: population | synthetic: gdp",
    ...                                         "synthetic: gdp, population"]})
    >>> combine_provenance(t, ["year"]).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'year': 2020, 'provenance': 'real:census-2020; synthetic',
      'provenance_inputs': 'real+synthetic: population | synthetic: gdp'}]
    """
    by = list(by)
    has_inputs = "provenance_inputs" in rows
    cols = [*by, "provenance", *(["provenance_inputs"] if has_inputs else [])]
    rows = rows[cols].drop_duplicates()
    labs: dict[tuple, set[str]] = {}
    ins: dict[tuple, dict[str, set[str]]] = {}
    keys = list(zip(*[rows[c].tolist() for c in by], strict=True)) if by else [()] * len(rows)
    inputs = rows["provenance_inputs"].tolist() if has_inputs else [None] * len(rows)
    for key, prov, text in zip(keys, rows["provenance"].tolist(), inputs, strict=True):
        labs.setdefault(key, set()).update(x for x in str(prov).split("; ") if x)
        if text is None:
            continue
        of = ins.setdefault(key, {})
        for part in str(text).split(" | "):
            status, _, names = part.partition(": ")
            for name in names.split(", "):
                of.setdefault(name, set()).update(status.split("+"))

    out = pd.DataFrame(
        [
            (
                *key,
                "; ".join(sorted(lab)),
                *([_inputs_text(ins.get(key, {}))] if has_inputs else []),
            )
            for key, lab in labs.items()
        ],
        columns=cols,
    )
    for c in by:
        if rows[c].notna().all():
            out[c] = out[c].astype(rows[c].dtype)
    return out
