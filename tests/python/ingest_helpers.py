"""Builders for ingest tests: a project whose seed declares our components, and small input files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.config import Settings
from runner.ingest import IngestResult, Kind, ingest_file
from runner.warehouse import Warehouse
from tests.python.scenarios import copy_dbt_project

COMPONENTS = ("comp_a", "comp_b")

TRADE_COLUMNS = (
    "trade_id,component_id,symbol,side,quantity,entry_ts,exit_ts,entry_price,exit_price,fees"
)
PREDICTION_COLUMNS = (
    "prediction_id,model_id,model_version,symbol,ts,predicted_label,predicted_proba,actual_label"
)
BAR_COLUMNS = "symbol,ts,open,high,low,close,volume"


def make_project(root: Path, components: tuple[str, ...] = COMPONENTS) -> Path:
    """A copy of the dbt project (dbt_project.yml, seeds/) whose components.csv lists `components`."""
    rows = [
        {"component_id": c, "initial_capital": 100000, "periods_per_year": 252,
         "strategy": "sma_cross", "description": f"test component {c}"}
        for c in components
    ]  # fmt: skip
    return copy_dbt_project(root / "project", rows)


def with_project(settings: Settings, project: Path) -> Settings:
    """The same warehouse settings, reading seeds from `project`."""
    return Settings(
        duckdb_path=settings.duckdb_path,
        database_url=settings.database_url,
        schema_name=settings.schema_name,
        project_dir=project,
    )


def trade(
    trade_id: str = "T1",
    component_id: str = "comp_a",
    symbol: str = "SPY",
    side: str = "long",
    quantity: str = "10",
    entry_ts: str = "2024-01-02T10:00:00",
    exit_ts: str = "2024-01-02T15:30:00",
    entry_price: str = "100.5",
    exit_price: str = "101.25",
    fees: str = "1",
) -> str:
    """One CSV line of a valid trade unless a field says otherwise (fields must not need quoting)."""
    return ",".join(
        (
            trade_id,
            component_id,
            symbol,
            side,
            quantity,
            entry_ts,
            exit_ts,
            entry_price,
            exit_price,
            fees,
        )
    )


def csv_file(tmp_path: Path, name: str, header: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join((header, *lines)) + "\n", encoding="utf-8")
    return path


def run(wh: Warehouse, settings: Settings, kind: str, path: Path) -> IngestResult:
    """Ingest and check the invariant every result must hold."""
    result = ingest_file(wh, settings, Kind(kind), path)
    assert result.loaded + result.rejected == result.rows_in_file
    assert sum(r.rows for r in result.rejects_by_reason) == result.rejected
    return result


def rejects(wh: Warehouse) -> list[tuple[Any, ...]]:
    """(row_number, reason, message, raw_row) of every stored reject, in file order."""
    return wh.fetchall(
        "select row_number, reason, message, raw_row from ingest_rejects order by row_number, reason"
    )


def count(wh: Warehouse, table: str) -> int:
    row = wh.fetchone(f"select count(*) from {table}")
    assert row is not None
    return int(row[0])
