"""Yearbook panel I/O (placeholder interface; the full reader is being written).

Contract used by the pipeline:

- ``DEMO_PANEL``: path of the bundled synthetic demo panel;
- ``read_panel(path, ...) -> PanelResult`` with ``panel`` (tidy ``adcode, year, indicator,
  value``), ``report`` (:class:`ValidationReport`) and ``synthetic`` (bool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from agglo.paths import data_path

DEMO_PANEL: Path = data_path("panel", "demo_panel_synthetic.csv")


@dataclass
class ValidationReport:
    """What reading a panel found and did."""

    source: str
    warnings: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        rows = [{"kind": "warning", "message": w} for w in self.warnings]
        rows += [{"kind": "action", "message": a} for a in self.actions]
        return pd.DataFrame(rows, columns=["kind", "message"]).assign(source=self.source)


@dataclass
class PanelResult:
    panel: pd.DataFrame
    report: ValidationReport
    synthetic: bool = False


def read_panel(path: str | Path) -> PanelResult:
    path = Path(path)
    df = pd.read_csv(path, dtype={"adcode": str})
    return PanelResult(df, ValidationReport(str(path)), synthetic="synthetic" in path.name)
