"""Build data/crosswalk/city_aliases.csv from the china-prefecture-crosswalk tables.

Usage: python scripts/build_aliases.py [--source ../shared/data/crosswalk] [--out data/crosswalk]

The source (github FIERsity/china-prefecture-crosswalk, CC BY 4.0) gives stable entity ids,
their names by year (year-end basis) and the administrative change events. This script derives
one row per name a prefecture-level unit has carried (full name and name without its suffix,
plus the source's reviewed aliases such as OCR variants), with:

- ``adcode``: the entity's 6-digit code, taken from the source's ``legacy_entity_id``
  (``E420600`` -> ``420600``), i.e. the GB/T 2260 code of the unit as the source recorded it;
- ``name_zh``: the entity's latest name (its last name before abolition for abolished units);
- ``start_year``/``end_year``: the years (year end) the name was in use;
- ``status``: ``current`` (the unit's name today), ``former`` (renamed or upgraded; the unit
  continues under ``adcode``) or ``abolished`` (the unit no longer exists);
- ``successors``: for abolished units, the adcodes of the units that absorbed it (from the
  change event: the ``new_prefecture_name`` field and the units named in its description).

Changes to the source: names are restricted to prefecture-level periods (legal status
``active``), suffix-less forms are added by agglo's own rule (:func:`agglo.reference.names.name_stem`),
and successors are derived as described. The licence and attribution go beside the table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from agglo.reference.names import name_stem  # noqa: E402

COLUMNS = [
    "alias",
    "adcode",
    "name_zh",
    "province_zh",
    "start_year",
    "end_year",
    "status",
    "successors",
    "alias_type",
    "entity_id",
]

ATTRIBUTION = """\
# data/crosswalk — REAL reference table, derived

`city_aliases.csv` is derived by `scripts/build_aliases.py` from the
**china-prefecture-crosswalk** (https://github.com/FIERsity/china-prefecture-crosswalk), files
`entities.csv`, `entity_names_year_end_1987_2026.csv`, `aliases.csv` and
`prefecture_administrative_events_1983_2026.csv`, licensed CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/; `LICENSE-DATA` beside this file).

Changes made by agglo: one row per (name, unit, years in use) restricted to prefecture-level
periods; names without their suffix (市/地区/州/盟, the ethnic part of 自治州) added by agglo's
`name_stem` rule; `adcode` taken from the source's `legacy_entity_id` (`E420600` -> 420600);
`successors` of abolished units derived from the change events (the new unit and the units
named in the event description). The values are the source's; nothing was typed in by hand.

agglo uses the table to resolve city names and codes of a national yearbook by year (renames
such as 襄樊 -> 襄阳 2010, abolitions such as 巢湖 2011 and 莱芜 2019) and to tell a
prefecture-level unit outside the city table from an unknown name.
"""


def build(source: Path) -> pd.DataFrame:
    """The alias table from the crosswalk folder ``source``."""
    ents = pd.read_csv(source / "entities.csv", dtype=str)
    names = pd.read_csv(source / "entity_names_year_end_1987_2026.csv", dtype=str)
    aliases = pd.read_csv(source / "aliases.csv", dtype=str)
    events = pd.read_csv(source / "prefecture_administrative_events_1983_2026.csv", dtype=str)
    ents["adcode"] = ents["legacy_entity_id"].str.removeprefix("E")
    code_of = dict(zip(ents["entity_id"], ents["adcode"], strict=True))
    province_of = dict(zip(ents["entity_id"], ents["province_name_zh"], strict=True))
    active = names[names["legal_status"] == "active"].copy()
    active["start_year"] = active["start_year"].astype(int)
    active["end_year"] = active["end_year"].astype(int)
    last = active.sort_values("end_year").groupby("entity_id").tail(1).set_index("entity_id")
    abolished = set(names.loc[names["legal_status"] == "abolished", "entity_id"])
    current_stems = {
        name_stem(n): code_of[e]
        for e, n in last["name_zh"].items()
        if e not in abolished and e in code_of
    }

    successors: dict[str, str] = {}
    for _, ev in events[events["event_type"].isin(["merge", "split", "abolish"])].iterrows():
        ent = ev["entity_id"]
        if ent not in abolished or ent not in last.index:
            continue
        own = name_stem(last.loc[ent, "name_zh"])
        text = f"{ev['new_prefecture_name'] or ''} {ev['description'] or ''}"
        found = []
        for stem in sorted(current_stems, key=len, reverse=True):  # 马鞍山 before 鞍山
            if stem != own and stem in text:
                found.append(current_stems[stem])
                text = text.replace(stem, "|")
        found = sorted(set(found))
        if found:
            successors[ent] = " ".join(found)

    # a stem an abolished unit shares with a continuing unit (保定地区 -> 保定) stays with the latter
    living_stems = {name_stem(n) for e, n in zip(active["entity_id"], active["name_zh"], strict=True)
                    if e not in abolished}  # fmt: skip
    rows = []
    for _, r in active.iterrows():
        ent = r["entity_id"]
        status = (
            "abolished"
            if ent in abolished
            else ("current" if r["name_zh"] == last.loc[ent, "name_zh"] else "former")
        )
        for alias, kind in ((r["name_zh"], "name"), (name_stem(r["name_zh"]), "suffix_omitted")):
            if kind == "suffix_omitted" and ent in abolished and alias in living_stems:
                continue
            rows.append(
                {
                    "alias": alias,
                    "adcode": code_of.get(ent, ""),
                    "name_zh": last.loc[ent, "name_zh"],
                    "province_zh": province_of.get(ent, ""),
                    "start_year": r["start_year"],
                    "end_year": r["end_year"],
                    "status": status,
                    "successors": successors.get(ent, ""),
                    "alias_type": kind,
                    "entity_id": ent,
                }
            )
    extra = aliases[aliases["alias_type"] != "suffix_omitted"]
    for _, a in extra.iterrows():
        ent = a["entity_id"]
        if ent not in last.index:
            continue
        rows.append(
            {
                "alias": a["alias"],
                "adcode": code_of.get(ent, ""),
                "name_zh": last.loc[ent, "name_zh"],
                "province_zh": province_of.get(ent, ""),
                "start_year": int(a["start_year"]),
                "end_year": int(a["end_year"]),
                "status": "abolished" if ent in abolished else "current",
                "successors": successors.get(ent, ""),
                "alias_type": a["alias_type"],
                "entity_id": ent,
            }
        )
    out = pd.DataFrame(rows, columns=COLUMNS)
    out = out.drop_duplicates(["alias", "entity_id", "start_year", "end_year"])
    return out.sort_values(["adcode", "start_year", "alias"], kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "crosswalk")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "crosswalk")
    args = ap.parse_args(argv)
    if not (args.source / "entities.csv").is_file():
        print(f"error: no crosswalk tables in {args.source}", file=sys.stderr)
        return 2
    table = build(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "city_aliases.csv.tmp"
    table.to_csv(tmp, index=False, encoding="utf-8")
    tmp.replace(args.out / "city_aliases.csv")
    shutil.copyfile(args.source / "LICENSE-DATA", args.out / "LICENSE-DATA")
    (args.out / "README.md").write_text(ATTRIBUTION, encoding="utf-8")
    print(f"wrote {len(table)} aliases of {table['entity_id'].nunique()} units to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
