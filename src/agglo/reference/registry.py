"""The indicator registry: the 19 indicators of seed 004 (table 1) in 5 dimensions, plus
auxiliary variables other stages need.

Ids are the public names used in panels, the API and outputs (DESIGN.md "Indicators").
``kind`` drives validation of panel values:

- ``"rate"``: a percentage, must lie in [0, 100];
- ``"nonneg"``: a non-negative quantity;
- ``"binary"``: 0 or 1;
- ``"positive"``: strictly positive (ratios such as the urban/rural income ratio);
- ``"any"``: any finite number (growth rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

__all__ = [
    "AUXILIARY",
    "DIMENSIONS",
    "EXTRA_VARIABLES",
    "INDICATORS",
    "UNIT_RANGES",
    "VARIABLES",
    "Indicator",
    "indicator_table",
]

Kind = Literal["rate", "nonneg", "binary", "positive", "any"]


@dataclass(frozen=True)
class Indicator:
    """One panel variable: an index indicator (with a dimension) or an auxiliary variable."""

    id: str
    name_zh: str
    name_en: str
    unit: str
    direction: int  # +1 higher is better, -1 lower is better, 0 auxiliary
    kind: Kind
    dimension: str | None = None
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_index_indicator(self) -> bool:
        return self.dimension is not None


#: dimension id -> (Chinese, English) label, in the paper's order
DIMENSIONS: dict[str, tuple[str, str]] = {
    "development": ("区域发展", "regional development"),
    "innovation": ("创新产业", "innovation & industry"),
    "infrastructure": ("基础设施", "infrastructure"),
    "ecology": ("生态环境", "ecology"),
    "public_services": ("公共服务", "public services"),
}

_I = Indicator
_INDICATOR_LIST: list[Indicator] = [
    _I(
        "income_ratio",
        "城乡居民可支配收入比",
        "urban/rural disposable income ratio",
        "ratio",
        -1,
        "positive",
        "development",
        (
            "城乡收入比",
            "城乡居民收入比",
            "城乡居民人均可支配收入比",
            "urban_rural_income_ratio",
            "income ratio",
        ),
    ),
    _I(
        "gdp_per_capita",
        "人均GDP",
        "GDP per capita",
        "yuan/person",
        1,
        "nonneg",
        "development",
        (
            "人均地区生产总值",
            "人均生产总值",
            "gdp_pc",
            "per capita gdp",
            "gdp per capita (yuan)",
            "pgdp",
        ),
    ),
    _I(
        "urbanization_rate",
        "常住人口城镇化率",
        "urbanisation rate of resident population",
        "%",
        1,
        "rate",
        "development",
        ("城镇化率", "urbanisation_rate", "urbanization rate", "urban_rate", "城镇人口比重"),
    ),
    _I(
        "avg_wage",
        "在岗职工平均工资",
        "average wage of employees",
        "yuan/year",
        1,
        "nonneg",
        "development",
        (
            "职工平均工资",
            "在岗职工平均工资(元)",
            "average wage",
            "avg wage",
            "mean_wage",
            "职工平均工资(元)",
        ),
    ),
    _I(
        "st_spending_share",
        "财政科学技术投入强度",
        "S&T share of fiscal expenditure",
        "%",
        1,
        "rate",
        "innovation",
        ("科技支出占比", "科学技术支出占比"),
    ),
    _I(
        "patents_per_10k",
        "万人专利授权量",
        "patents granted per 10k people",
        "patents/10k persons",
        1,
        "nonneg",
        "innovation",
        ("每万人专利授权量", "patents per 10k", "patents_per_10000"),
    ),
    _I(
        "krugman_index",
        "克鲁格曼专业化指数",
        "Krugman specialisation index",
        "index (0-2)",
        1,
        "nonneg",
        "innovation",
        ("克鲁格曼指数", "专业化指数"),
    ),
    _I(
        "trade_openness",
        "对外贸易依存度",
        "foreign trade / GDP",
        "%",
        1,
        "nonneg",
        "innovation",
        ("外贸依存度",),
    ),
    _I(
        "fdi_openness",
        "外资依存度",
        "actually used FDI / GDP",
        "%",
        1,
        "nonneg",
        "innovation",
        ("实际利用外资占GDP比重",),
    ),
    _I(
        "road_density",
        "公路网密度",
        "road network density",
        "km/100 km²",
        1,
        "nonneg",
        "infrastructure",
        ("公路密度", "路网密度", "road density"),
    ),
    _I(
        "hsr",
        "是否开通高铁",
        "high-speed rail opened",
        "0/1",
        1,
        "binary",
        "infrastructure",
        ("高铁", "开通高铁"),
    ),
    _I(
        "gas_coverage",
        "燃气普及率",
        "gas coverage rate",
        "%",
        1,
        "rate",
        "infrastructure",
        ("城市燃气普及率", "gas coverage", "gas_penetration_rate"),
    ),
    _I(
        "pm25",
        "细颗粒物",
        "PM2.5 annual mean",
        "µg/m³",
        -1,
        "nonneg",
        "ecology",
        ("PM2.5", "PM2.5年均浓度", "细颗粒物(PM2.5)年均浓度", "pm2_5", "pm25 annual mean"),
    ),
    _I(
        "solid_waste_utilization",
        "一般工业固体废弃物综合利用率",
        "industrial solid waste utilisation rate",
        "%",
        1,
        "rate",
        "ecology",
        (
            "工业固体废物综合利用率",
            "固废综合利用率",
            "一般工业固体废物综合利用率",
            "solid waste utilization rate",
        ),
    ),
    _I(
        "garbage_treatment_rate",
        "生活垃圾无害化处理率",
        "household waste harmless treatment rate",
        "%",
        1,
        "rate",
        "ecology",
        (
            "垃圾无害化处理率",
            "生活垃圾无害化处理率",
            "garbage treatment rate",
            "harmless treatment rate of household garbage",
        ),
    ),
    _I(
        "education_spending_per_capita",
        "人均教育财政支出",
        "education spending per capita",
        "yuan/person",
        1,
        "nonneg",
        "public_services",
        ("人均教育支出",),
    ),
    _I(
        "hospital_beds_per_10k",
        "万人卫生机构床位数",
        "hospital beds per 10k",
        "beds/10k persons",
        1,
        "nonneg",
        "public_services",
        (
            "每万人医疗卫生机构床位数",
            "万人床位数",
            "beds per 10k",
            "hospital beds per 10,000 people",
        ),
    ),
    _I(
        "health_technicians_per_10k",
        "万人卫生技术人员数",
        "health technicians per 10k",
        "persons/10k persons",
        1,
        "nonneg",
        "public_services",
        ("每万人卫生技术人员数",),
    ),
    _I(
        "social_security_share",
        "社会保障和就业财政支出强度",
        "social security & employment share of fiscal expenditure",
        "%",
        1,
        "rate",
        "public_services",
        ("社保支出占比", "社会保障和就业支出占比"),
    ),
]

_AUX_LIST: list[Indicator] = [
    _I(
        "population",
        "常住人口",
        "resident population",
        "10k persons",
        0,
        "nonneg",
        None,
        ("年末常住人口", "常住人口(万人)", "resident population (10k)", "pop_resident"),
    ),
    _I(
        "gdp",
        "地区生产总值",
        "GDP",
        "100 million yuan",
        0,
        "nonneg",
        None,
        ("GDP", "生产总值", "地区生产总值(亿元)", "gross regional product"),
    ),
]

_EXTRA_LIST: list[Indicator] = [
    _I(
        "urban_disposable_income",
        "城镇居民人均可支配收入",
        "per capita disposable income of urban residents",
        "yuan/person",
        0,
        "nonneg",
        None,
        ("城镇居民可支配收入", "urban disposable income"),
    ),
    _I(
        "rural_disposable_income",
        "农村居民人均可支配收入",
        "per capita disposable income of rural residents",
        "yuan/person",
        0,
        "positive",
        None,
        ("农村居民可支配收入", "农村居民人均纯收入", "rural disposable income"),
    ),
    _I(
        "registered_population",
        "户籍人口",
        "registered (hukou) population",
        "10k persons",
        0,
        "nonneg",
        None,
        ("年末户籍人口", "户籍总人口", "registered population"),
    ),
    _I(
        "gdp_growth",
        "地区生产总值增长率",
        "GDP growth rate",
        "% per year",
        0,
        "any",
        None,
        ("GDP增长率", "gdp growth"),
    ),
    _I(
        "hospital_beds",
        "医院床位数",
        "hospital beds",
        "beds",
        0,
        "nonneg",
        None,
        ("医院、卫生院床位数", "hospital beds (count)"),
    ),
    _I(
        "sewage_treatment_rate",
        "污水处理厂集中处理率",
        "sewage treatment rate (treatment plants)",
        "%",
        0,
        "rate",
        None,
        ("污水集中处理率", "城市污水处理率"),
    ),
]

#: indicator id -> Indicator, the 19 index indicators in the paper's order
INDICATORS: dict[str, Indicator] = {i.id: i for i in _INDICATOR_LIST}
#: auxiliary id -> Indicator (resident population, GDP); sector employment is a separate long table
AUXILIARY: dict[str, Indicator] = {i.id: i for i in _AUX_LIST}
#: every variable a panel may hold
VARIABLES: dict[str, Indicator] = {**INDICATORS, **AUXILIARY}
#: yearbook variables the panel reader recognises, checks and keeps apart (``PanelResult.extras``)
#: because the index does not use them (urban and rural incomes behind the income ratio, ...)
EXTRA_VARIABLES: dict[str, Indicator] = {i.id: i for i in _EXTRA_LIST}
#: plausible magnitude of each unit (lowest, highest) for the panel's plausibility checks;
#: a value outside is flagged, a whole column outside suggests a scale error
UNIT_RANGES: dict[str, tuple[float, float]] = {
    "ratio": (1.0, 10.0),
    "yuan/person": (100.0, 1_000_000.0),
    "%": (0.0, 100.0),
    "yuan/year": (5_000.0, 1_000_000.0),
    "patents/10k persons": (0.0, 1_000.0),
    "index (0-2)": (0.0, 2.0),
    "km/100 km²": (1.0, 1_000.0),
    "0/1": (0.0, 1.0),
    "µg/m³": (1.0, 300.0),
    "beds/10k persons": (5.0, 300.0),
    "persons/10k persons": (5.0, 400.0),
    "10k persons": (20.0, 5_000.0),
    "100 million yuan": (10.0, 100_000.0),
    "beds": (100.0, 500_000.0),
}


def indicator_table() -> pd.DataFrame:
    """The registry as a DataFrame (one row per variable), e.g. for reports and ``agglo data info``.

    Examples
    --------
    >>> t = indicator_table()
    >>> int(t["dimension"].notna().sum()), int(t.groupby("dimension").size()["infrastructure"])
    (19, 3)
    """

    return pd.DataFrame(
        [
            {
                "id": v.id,
                "dimension": v.dimension,
                "name_zh": v.name_zh,
                "name_en": v.name_en,
                "unit": v.unit,
                "direction": v.direction,
                "kind": v.kind,
            }
            for v in VARIABLES.values()
        ]
    )
