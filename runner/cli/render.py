"""Rich rendering of engine results: number formats and the performance tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from rich.table import Table

# How each metric reads best: fractions as percentages, ratios with two decimals.
_PERCENT = {"win_rate", "avg_trade_return", "expectancy", "max_drawdown", "annual_return"}
_RATIO = {"profit_factor", "sharpe", "sortino", "calmar"}
_LABELS = {
    "window_days": "window",
    "n_trades": "trades",
    "n_days": "days",
    "win_rate": "win rate",
    "avg_trade_return": "avg trade",
    "profit_factor": "profit factor",
    "expectancy": "expectancy",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "max DD",
    "annual_return": "CAGR",
    "calmar": "Calmar",
}


def fmt(metric: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "[dim]—[/]"
    if metric in _PERCENT:
        return f"{float(value) * 100:.2f}%"
    if metric in _RATIO:
        return f"{float(value):.2f}"
    if metric == "window_days":
        return f"{value}d"
    return str(value)


def performance_tables(rows: Iterable[Mapping[str, Any]]) -> list[Table]:
    """One table per component: a row per metric, a column per window (fits 80 columns)."""
    by_component: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_component.setdefault(str(row["component_id"]), []).append(row)
    tables = []
    for component, windows in by_component.items():
        table = Table(
            title=f"{component} — windows ending {windows[0]['as_of_date']}", title_justify="left"
        )
        table.add_column("metric")
        for window in windows:
            table.add_column(f"{window['window_days']} days", justify="right")
        for metric, label in _LABELS.items():
            if metric != "window_days":
                table.add_row(label, *(fmt(metric, window[metric]) for window in windows))
        tables.append(table)
    return tables


def to_json(value: Any) -> str:
    def default(obj: object) -> str:
        if isinstance(obj, date | datetime):
            return obj.isoformat()
        return str(obj)

    return json.dumps(value, default=default, indent=2)
