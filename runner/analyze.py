"""ANALYZE: build the analytics marts with dbt and read the latest performance back.

The metrics themselves are SQL (models/marts/analyze); this module only orchestrates and reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from runner.config import Settings
from runner.dbt import NodeResult, run_dbt
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

PERFORMANCE_COLUMNS = (
    "component_id",
    "as_of_date",
    "window_days",
    "n_trades",
    "n_days",
    "win_rate",
    "avg_trade_return",
    "profit_factor",
    "expectancy",
    "sharpe",
    "sortino",
    "max_drawdown",
    "annual_return",
    "calmar",
)


@dataclass(frozen=True)
class AnalysisResult:
    as_of: date | None
    nodes: list[NodeResult]
    performance: list[dict[str, Any]]


def build_analytics(settings: Settings, as_of: date | None = None) -> list[NodeResult]:
    """Migrate, then `dbt build` every model and test (seeds included) for the given as-of date."""
    with connect(settings) as wh:
        migrate(wh)
    # DuckDB admits one process-level holder of the file: our connection is closed before dbt runs.
    dbt_vars = {"as_of_date": as_of.isoformat() if as_of else None}
    return run_dbt(settings, "build", dbt_vars=dbt_vars)


def latest_performance(wh: Warehouse, component: str | None = None) -> list[dict[str, Any]]:
    """mart_performance rows, ordered by component and window, as plain dicts."""
    cols = ", ".join(PERFORMANCE_COLUMNS)
    sql = f"select {cols} from mart_performance"
    params: dict[str, Any] = {}
    if component:
        sql += " where component_id = %(component)s"
        params["component"] = component
    rows = wh.fetchall(sql + " order by component_id, window_days", params)
    return [dict(zip(PERFORMANCE_COLUMNS, row, strict=True)) for row in rows]


def analyze(
    settings: Settings, as_of: date | None = None, component: str | None = None
) -> AnalysisResult:
    nodes = build_analytics(settings, as_of)
    with connect(settings) as wh:
        performance = latest_performance(wh, component)
    return AnalysisResult(as_of=as_of, nodes=nodes, performance=performance)
