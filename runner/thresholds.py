"""The alert thresholds a component is held to (the alert_thresholds seed), for Python callers.

A row with the component's id overrides the default row (empty component_id), as in IDENTIFY's
SQL. OPTIMIZE's risk adjustment reads the drawdown warning; DEPLOY's guardrails the critical
values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.warehouse import Warehouse

Level = Literal["warning_value", "critical_value"]

# The seed's defaults, used when the seed is not in the warehouse.
DEFAULTS: dict[tuple[str, Level], float] = {
    ("max_drawdown", "warning_value"): 0.10,
    ("max_drawdown", "critical_value"): 0.15,
    ("win_rate", "warning_value"): 0.50,
    ("win_rate", "critical_value"): 0.45,
}


@dataclass(frozen=True)
class Threshold:
    value: float | None
    min_trades: int | None


def threshold(wh: Warehouse, component_id: str, metric: str, level: Level) -> Threshold:
    """The component's `level` value of `metric` and the trades it needs before it counts."""
    if not wh.table_exists("alert_thresholds"):
        return Threshold(DEFAULTS.get((metric, level)), None)
    # `level` is one of two literal column names, never user input.
    row = wh.fetchone(
        f"select {level}, min_trades from alert_thresholds where metric = %(m)s"
        " and (component_id = %(c)s or component_id is null or component_id = '')"
        " order by case when component_id = %(c)s then 0 else 1 end limit 1",
        {"m": metric, "c": component_id},
    )
    if row is None:
        return Threshold(DEFAULTS.get((metric, level)), None)
    return Threshold(
        None if row[0] is None else float(row[0]), None if row[1] is None else int(row[1])
    )
