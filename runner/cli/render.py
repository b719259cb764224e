"""Rich rendering of engine results: number formats, the performance tables, and the alert,
recommendation, event, queue and A/B test tables of `runner analyze` and `runner status`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from runner.audit import StoredEvent
from runner.identify import Alert, Recommendation

# How each metric reads best: fractions as percentages, ratios with two decimals.
_PERCENT = {
    "win_rate",
    "avg_trade_return",
    "expectancy",
    "max_drawdown",
    "annual_return",
    "model_accuracy",
}
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


STATUS_STYLE = {"critical": "bold red", "warning": "yellow"}


def _text(value: Any) -> str:
    """Data shown in a table cell: markup escaped, missing values as a dim dash."""
    return "[dim]—[/]" if value is None else escape(str(value))


def _when(value: datetime | None) -> str:
    return "[dim]—[/]" if value is None else f"{value:%Y-%m-%d %H:%M}"


def status_cell(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{escape(status)}[/]" if style else escape(status)


def alerts_table(alerts: Iterable[Alert]) -> Table:
    """Open alerts, critical (red) before warning (yellow)."""
    table = Table(title="Open alerts", title_justify="left")
    for column in ("status", "subject", "metric", "window", "value", "threshold", "evidence"):
        table.add_column(
            column,
            justify="right" if column in ("value", "threshold") else "left",
            no_wrap=column in ("status", "metric"),
        )
    for a in alerts:
        subject = a.subject_id if a.subject_type == "component" else f"model {a.subject_id}"
        if a.subject_type == "model" and a.model_version:
            subject += f" {a.model_version}"
        table.add_row(
            status_cell(a.status),
            _text(subject),
            _text(a.metric),
            f"{a.window_days}d",
            fmt(a.metric, a.value),
            fmt(a.metric, a.threshold_value),
            f"{a.evidence_count}/{a.min_evidence}",
        )
    return table


def recommendations_table(recommendations: Iterable[Recommendation]) -> Table:
    """Recommendations by priority (1 = most urgent)."""
    table = Table(title="Recommendations", title_justify="left")
    for column in ("priority", "component", "action", "reason"):
        table.add_column(column, justify="right" if column == "priority" else "left")
    for r in recommendations:
        table.add_row(
            str(r.priority), _text(r.component_id), _text(r.recommendation_type), _text(r.reason)
        )
    return table


def events_table(events: Iterable[StoredEvent], days: int) -> Table:
    """Audit events, newest first."""
    table = Table(title=f"Improvement events, last {days} days", title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("component")
    table.add_column("reason")
    for e in events:
        table.add_row(
            _when(e.event_timestamp),
            _text(e.event_type),
            _text(e.component_id),
            _text(e.trigger_reason),
        )
    return table


def queue_table(tasks: Iterable[Mapping[str, Any]]) -> Table:
    """Enabled optimization tasks by next run."""
    table = Table(title="Pending optimizations", title_justify="left")
    table.add_column("next run (UTC)", no_wrap=True)
    table.add_column("task", no_wrap=True)
    for column in ("component", "frequency", "prio", "status"):
        table.add_column(column, overflow="fold")
    for t in tasks:
        table.add_row(
            _when(t["next_run_at"]),
            _text(t["task_type"]),
            _text(t["component_id"]),
            _text(t["frequency"]),
            str(t["priority"]),
            _text(t["status"]),
        )
    return table


def ab_tests_table(tests: Iterable[Mapping[str, Any]]) -> Table:
    """Running A/B tests: versions, ramp stage, trades per arm and the latest look."""
    table = Table(title="Running A/B tests", title_justify="left")
    right = {"stage", "trades c/t", "improvement", "confidence sequence", "p"}
    for column in (
        "test",
        "component",
        "versions",
        "stage",
        "trades c/t",
        "improvement",
        "confidence sequence",
        "p",
    ):
        table.add_column(
            column, justify="right" if column in right else "left", no_wrap=column == "test"
        )
    for t in tests:
        improvement = t["improvement_percent"]
        low, high, p = t.get("cs_lower"), t.get("cs_upper"), t.get("always_valid_p")
        stage = f"{t['current_stage']}%" + (" [yellow]paused[/]" if t.get("paused") else "")
        table.add_row(
            _text(t["test_name"]),
            _text(t["component_id"]),
            f"{_text(t['control_version'])} → {_text(t['treatment_version'])}",
            stage,
            f"{t.get('n_control', 0)}/{t.get('n_treatment', 0)}",
            "[dim]—[/]" if improvement is None else f"{float(improvement):+.2f}%",
            "[dim]—[/]" if low is None or high is None else f"[{low:+.5f}, {high:+.5f}]",
            "[dim]—[/]" if p is None else f"{float(p):.3g}",
        )
    return table


def allocation_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    """active_allocation: each component's versions and their share of signals."""
    table = Table(title="Active allocation", title_justify="left")
    for column in ("component", "version", "arm", "share", "test", "strategy", "params"):
        table.add_column(column, justify="right" if column in ("version", "share") else "left")
    for r in rows:
        table.add_row(
            _text(r["component_id"]),
            str(r["version"]),
            _text(r["arm"]),
            f"{float(r['traffic_share']):.0%}",
            _text(r["test_id"] or ""),
            _text(r.get("strategy") or ""),
            _text(json.dumps(r.get("params") or {}, sort_keys=True)),
        )
    return table


def runs_table(runs: Iterable[Mapping[str, Any]]) -> Table:
    """Latest optimization runs: verdict, the gate values and the candidate they produced."""
    table = Table(title="Optimization runs (UTC)", title_justify="left")
    table.add_column("started", no_wrap=True)
    table.add_column("component", overflow="fold")
    table.add_column("verdict", no_wrap=True)
    for column in ("trials", "DSR", "PBO", "holdout p", "new"):
        table.add_column(column, justify="right")
    colours = {"candidate": "green", "rejected": "red", "failed": "bold red", "running": "cyan"}
    for r in runs:
        verdict = _text(r["verdict"])
        table.add_row(
            f"{r['started_at']:%m-%d %H:%M}",
            _text(r["component_id"]),
            f"[{colours.get(r['verdict'], 'white')}]{verdict}[/]",
            str(r["n_trials"]),
            *(
                "[dim]—[/]" if r[k] is None else f"{float(r[k]):.2f}"
                for k in ("dsr", "pbo", "holdout_p")
            ),
            "[dim]—[/]" if r["candidate_version"] is None else f"v{r['candidate_version']}",
        )
    return table


def section(
    rows: Sequence[Any], table: Callable[[Sequence[Any]], Table], empty: str
) -> Table | str:
    """The table of `rows`, or the one line saying the section is empty."""
    return table(rows) if rows else f"[dim]{escape(empty)}[/]"


def to_json(value: Any, indent: int | None = 2) -> str:
    def default(obj: object) -> str:
        if isinstance(obj, date | datetime):
            return obj.isoformat()
        return str(obj)

    return json.dumps(value, default=default, indent=indent)
