"""`runner report`: one self-contained HTML file (opens offline) and its PNG charts, from what
the warehouse holds: equity, rolling metrics against the thresholds, regimes, optimization runs
and their studies, A/B tests' confidence sequences and the engine's event timeline.

It only reads: no migration, no event, no dbt. `data.py` reads, `charts.py` draws, `html.py`
writes; this module ties them together and picks the charts the cycle attaches to Discord.

    from runner.report import build_report, key_charts
    result = build_report(Settings(), out_dir=Path("report"))
    result.html_path, result.chart_paths["equity"], key_charts(result)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.config import Settings
from runner.errors import ConfigError

__all__ = [
    "HTML_NAME",
    "KEY_CHARTS",
    "ReportResult",
    "build_report",
    "default_out_dir",
    "key_charts",
]

HTML_NAME = "report.html"
CHARTS_DIR = "charts"
# What the cycle's Discord summary attaches, in order, when drawn: the equity curves, the A/B
# tests' confidence sequences, the gates of the latest optimization runs.
KEY_CHARTS = ("equity", "ab_tests", "optimization_gates")
# The charts this module writes (an older report's charts of a component gone are removed).
_OWN_PNG = re.compile(
    r"^(equity|regimes|importances|ab_tests|optimization_gates|optimization_history|rolling_.+)\.png$"
)


@dataclass(frozen=True)
class ReportResult:
    html_path: Path
    chart_paths: dict[str, Path]  # chart name -> PNG, in the report's order
    notes: list[str] = field(default_factory=list)  # the sections without data, and why
    data_start: str | None = None
    data_end: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html_path),
            "charts": {name: str(path) for name, path in self.chart_paths.items()},
            "key_charts": [str(p) for p in key_charts(self)],
            "data_start": self.data_start,
            "data_end": self.data_end,
            "notes": list(self.notes),
        }


def default_out_dir(settings: Settings) -> Path:
    """Where `runner report` writes without --out: report/ under the artifacts directory."""
    return settings.artifacts / "report"


def build_report(
    settings: Settings,
    *,
    out_dir: Path,
    component: str | None = None,
    days: int | None = None,
    now: datetime | None = None,
) -> ReportResult:
    """Read the warehouse, draw the charts into out_dir/charts/*.png and write
    out_dir/report.html with every chart embedded. A section without data says why; only an
    unreachable warehouse (or a DuckDB file that does not exist) raises."""
    from runner.report.charts import draw_charts
    from runner.report.data import read_report_data
    from runner.report.html import render_html
    from runner.warehouse import connect

    if days is not None and days < 1:
        raise ConfigError("--days must be at least 1.")
    if settings.dialect == "duckdb" and not settings.duckdb_file.is_file():
        raise ConfigError(
            f"No warehouse at {settings.duckdb_file}: ingest data first (`runner ingest`), "
            "run `runner demo`, or point --duckdb-path at the file."
        )
    with connect(settings) as wh:
        data = read_report_data(wh, settings, component=component, days=days, now=now)
    out_dir = out_dir.expanduser().resolve()
    charts_dir = out_dir / CHARTS_DIR
    charts_dir.mkdir(parents=True, exist_ok=True)
    for old in charts_dir.glob("*.png"):
        if _OWN_PNG.match(old.name):
            old.unlink()
    charts = draw_charts(data, charts_dir)
    html_path = out_dir / HTML_NAME
    html_path.write_text(render_html(data, charts), encoding="utf-8")
    return ReportResult(
        html_path=html_path,
        chart_paths={chart.name: chart.path for chart in charts},
        notes=list(data.notes),
        data_start=None if data.data_start is None else data.data_start.isoformat(),
        data_end=None if data.data_end is None else data.data_end.isoformat(),
    )


def key_charts(result: ReportResult) -> list[Path]:
    """The 2–3 charts the cycle attaches to its Discord summary (those that were drawn)."""
    return [result.chart_paths[name] for name in KEY_CHARTS if name in result.chart_paths]
