"""optimization_runs: one row per search, written when it starts and completed when it ends.

A finished run is never rewritten: the update only applies to a row still `running`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from runner.engine_tables import to_json_text
from runner.warehouse import Warehouse

RUN_COLUMNS = (
    "run_id",
    "component_id",
    "task_id",
    "recommendation_id",
    "trigger_reason",
    "study_name",
    "storage_kind",
    "strategy",
    "search_space",
    "objective",
    "seed",
    "incumbent_version",
    "candidate_version",
    "n_trials",
    "n_pruned",
    "n_failed",
    "best_trial",
    "best_params",
    "in_sample_metrics",
    "out_of_sample_metrics",
    "dsr",
    "pbo",
    "min_trl",
    "track_length",
    "holdout_p",
    "verdict",
    "reasons",
    "gates",
    "trial_returns_path",
    "trial_returns_sha256",
    "data_start",
    "data_end",
    "started_at",
    "finished_at",
    "duration_seconds",
    "code_version",
)
_JSON = {"search_space", "best_params", "in_sample_metrics", "out_of_sample_metrics", "gates"}


def _value(name: str, value: Any) -> Any:
    if name in _JSON and value is not None:
        return to_json_text(value)
    if name == "reasons":
        return json.dumps([str(reason) for reason in value or ()])
    return value


def start_run(wh: Warehouse, row: Mapping[str, Any]) -> None:
    values = {c: _value(c, row.get(c)) for c in RUN_COLUMNS}
    values["verdict"] = "running"
    values["reasons"] = "[]"
    values["gates"] = "{}"
    values["n_trials"] = values["n_trials"] or 0
    values["n_pruned"] = values["n_pruned"] or 0
    values["n_failed"] = values["n_failed"] or 0
    wh.execute(
        f"insert into optimization_runs ({', '.join(RUN_COLUMNS)}) values "
        f"({', '.join(f'%({c})s' for c in RUN_COLUMNS)})",
        values,
    )


def finish_run(
    wh: Warehouse, run_id: str, verdict: str, reasons: Sequence[str], fields: Mapping[str, Any]
) -> None:
    """Complete the run row: verdict, reasons and whatever numbers the run produced."""
    finished = datetime.now(UTC)
    values = {c: _value(c, v) for c, v in fields.items() if c in RUN_COLUMNS}
    values.update(verdict=verdict, reasons=_value("reasons", reasons), finished_at=finished)
    assignments = ", ".join(f"{c} = %({c})s" for c in values)
    wh.execute(
        f"update optimization_runs set {assignments}"
        " where run_id = %(run_id)s and verdict = 'running'",
        {**values, "run_id": run_id},
    )


def recent_runs(
    wh: Warehouse, component: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    columns = (
        "run_id",
        "component_id",
        "verdict",
        "n_trials",
        "dsr",
        "pbo",
        "holdout_p",
        "candidate_version",
        "started_at",
        "duration_seconds",
        "reasons",
    )
    sql = f"select {', '.join(columns)} from optimization_runs"
    params: dict[str, Any] = {"limit": limit}
    if component:
        sql += " where component_id = %(component)s"
        params["component"] = component
    sql += " order by started_at desc limit %(limit)s"
    rows = [dict(zip(columns, row, strict=True)) for row in wh.fetchall(sql, params)]
    for row in rows:
        row["reasons"] = json.loads(row["reasons"])
    return rows
