"""Named scenarios for the dbt marts, and a private copy of the dbt project to build them in.

It owns: copying the dbt project (so a test can write its own components seed), opening a fresh
warehouse of either kind for a whole module, the momentum world the cycle, crash and secrets
tests run the whole loop in (and cheap copies of it), and turning named return series into raw
trades. It asserts nothing about the engine; the test modules do.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pydantic import SecretStr

from runner.config import Settings
from runner.dbt import run_dbt
from runner.deploy.simulate import simulate
from runner.ingest import ingest_file
from runner.optimize.versions import add_candidate, read_components, seed_versions
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.deploy_strategies import momentum_market
from tests.python.markets import write_bars_csv

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROJECT_ENTRIES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")
COMPONENT_COLUMNS = (
    "component_id",
    "initial_capital",
    "periods_per_year",
    "strategy",
    "open_position_policy",
    "description",
)
LOADED_AT = datetime(2024, 1, 1, 0, 0, 0)


# -- the dbt project copy -----------------------------------------------------------------------
def copy_dbt_project(dest: Path, components: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Copy the dbt project into `dest` (no target/, logs/ or DuckDB file) and, when given,
    replace seeds/components.csv by `components` (dicts keyed by COMPONENT_COLUMNS; extra keys
    become extra columns). Returns `dest`, ready for Settings(project_dir=dest)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in PROJECT_ENTRIES:
        src = PROJECT_DIR / entry
        if src.is_dir():
            shutil.copytree(src, dest / entry, dirs_exist_ok=True)
        elif src.is_file():
            (dest / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / entry)
    if components is not None:
        write_components_seed(dest, components)
    return dest


def write_components_seed(project: Path, components: Sequence[Mapping[str, Any]]) -> None:
    columns = list(COMPONENT_COLUMNS)
    for row in components:
        columns += [key for key in row if key not in columns]
    with (project / "seeds" / "components.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in components:
            writer.writerow(["" if row.get(c) is None else str(row[c]) for c in columns])


def drop_pg_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        # The engine's schema and the Optuna storage schema beside it (runner/optimize/study.py).
        for name in (schema, f"{schema}_optuna"):
            con.execute(f'drop schema if exists "{name}" cascade'.encode())


@contextmanager
def fresh_settings(
    kind: str, workdir: Path, project: Path, pg_url: str | None = None
) -> Iterator[Settings]:
    """Settings for an empty warehouse (a DuckDB file in `workdir`, or a new PostgreSQL schema
    dropped afterwards) over the dbt project copy `project`. Usable at any fixture scope."""
    if kind == "duckdb":
        yield Settings(
            duckdb_path=workdir / "tradebase.duckdb",
            project_dir=project,
            database_url=None,
            dbt_artifacts_dir=workdir,
            artifact_dir=workdir / "artifacts",
        )
        return
    assert pg_url is not None
    schema = f"tb_test_{uuid.uuid4().hex[:10]}"
    try:
        yield Settings(
            database_url=pg_url,
            schema_name=schema,
            project_dir=project,
            dbt_artifacts_dir=workdir,
            artifact_dir=workdir / "artifacts",
        )
    finally:
        drop_pg_schema(pg_url, schema)


@contextmanager
def open_warehouse(settings: Settings) -> Iterator[Warehouse]:
    """A migrated warehouse; close it (leave the block) before dbt runs on DuckDB."""
    with connect(settings) as wh:
        migrate(wh)
        yield wh


# -- the momentum world -------------------------------------------------------------------------
MOMENTUM_STRATEGY = "tests.python.deploy_strategies:FollowLastBar"
MOMENTUM_BAR_DAYS = 400


@contextmanager
def momentum_world(kind: str, root: Path, pg_url: str | None, tasks: str) -> Iterator[Settings]:
    """The world `runner cycle` is tested in: one component `mom` following the last bar on
    MOMENTUM_BAR_DAYS of a momentum market (deploy_strategies.py), its version 1 in production
    with the simulator's paper trades up to the last bar, a candidate version 2 (a 30% stop)
    waiting for DEPLOY, and the task declarations `tasks` (CSV text). The project copy, tasks
    file, bars, logs and artifacts live under `root`; the warehouse is a DuckDB file there or a
    new schema in `pg_url`'s database."""
    component = {
        "component_id": "mom",
        "initial_capital": 100000,
        "periods_per_year": 252,
        "strategy": MOMENTUM_STRATEGY,
        "symbol": "MOM",
        "params": json.dumps({"follow": 1}),
        "description": "momentum follower",
    }
    project = copy_dbt_project(root / "project", [component])
    tasks_file = root / "tasks.csv"
    tasks_file.write_text(tasks)
    with fresh_settings(kind, root, project, pg_url) as base:
        settings = base.model_copy(
            update={
                "schedule_tasks_file": tasks_file,
                "log_dir": root / "logs",
                "risk_bootstrap_samples": 200,
            }
        )
        frame = momentum_market(days=MOMENTUM_BAR_DAYS)
        bars = write_bars_csv(frame, "MOM", root / "MOM.csv")
        with open_warehouse(settings) as wh:
            assert ingest_file(wh, settings, "bars", bars).rejected == 0
        run_dbt(settings, "seed", select="components")
        simulate(settings, "mom", until=frame["ts"].iloc[-1].to_pydatetime())
        with open_warehouse(settings) as wh, wh.transaction():
            seed_versions(wh, read_components(wh, "mom"))
            add_candidate(
                wh, "mom", MOMENTUM_STRATEGY, {"follow": 1, "stop_loss": 0.3}, 1, None, ""
            )
        yield settings


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@contextmanager
def fresh_pg_database(pg_url: str, template: str | None = None) -> Iterator[str]:
    """A new database on `pg_url`'s server, a copy of the database `template` when given (which
    nobody may be connected to meanwhile), dropped afterwards; yields its URL."""
    import psycopg

    name = f"tb_test_{uuid.uuid4().hex[:10]}"
    copy = f' template "{template}"' if template else ""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f'create database "{name}"{copy}'.encode())
    try:
        yield with_database(pg_url, name)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute(f'drop database if exists "{name}" with (force)'.encode())


@contextmanager
def own_database(pg_url: str | None) -> Iterator[str | None]:
    """Where a world that copy_world will copy is built: a new PostgreSQL database of its own
    (yields its URL), or nothing to make for DuckDB (`pg_url` None; yields None)."""
    if pg_url is None:
        yield None
        return
    with fresh_pg_database(pg_url) as url:
        yield url


@contextmanager
def copy_world(world: Settings, dest: Path) -> Iterator[Settings]:
    """A private copy of a built world for one test, in a second instead of a build: the DuckDB
    file, or a PostgreSQL database made with the world's as its template (so the world must have
    a database of its own, see fresh_pg_database), and the project copy, logs and artifacts
    under `dest`. The world itself is left as it was."""
    project = dest / "project"
    shutil.copytree(world.project, project)
    if world.artifacts.exists():
        shutil.copytree(world.artifacts, dest / "artifacts")
    update: dict[str, Any] = {
        "project_dir": project,
        "dbt_artifacts_dir": dest,
        "artifact_dir": dest / "artifacts",
        "log_dir": dest / "logs",
    }
    if world.dialect == "duckdb":
        update["duckdb_path"] = dest / world.duckdb_file.name  # the file's stem is the catalog
        shutil.copyfile(world.duckdb_file, update["duckdb_path"])
        for beside in world.duckdb_file.parent.glob(f"{world.duckdb_file.name}.*"):
            if beside.suffix != ".lock":  # its WAL, the Optuna storage
                shutil.copyfile(beside, dest / beside.name)
        yield world.model_copy(update=update)
        return
    assert world.database_url is not None
    url = world.database_url.get_secret_value()
    template = urlsplit(url).path.lstrip("/")
    with fresh_pg_database(url, template=template) as copy:
        yield world.model_copy(update={**update, "database_url": SecretStr(copy)})


def runner_environment(settings: Settings) -> dict[str, str]:
    """The environment a `runner` process needs to open the world of `settings` (its settings
    as the CLI reads them), complete: a process started with only these finds everything."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TRADEBASE_PROJECT_DIR": str(settings.project),
        "TRADEBASE_ARTIFACT_DIR": str(settings.artifacts),
        "TRADEBASE_DBT_ARTIFACTS_DIR": str(settings.dbt_artifacts_dir or settings.project),
        "TRADEBASE_LOG_DIR": str(settings.logs),
        "TRADEBASE_RISK_BOOTSTRAP_SAMPLES": str(settings.risk_bootstrap_samples),
        "TRADEBASE_NOTIFY_TIMEOUT_SECONDS": str(settings.notify_timeout_seconds),
        "TRADEBASE_NOTIFY_BACKOFF_SECONDS": str(settings.notify_backoff_seconds),
        "DATABASE_URL": "",
    }
    if settings.optimize_seed is not None:
        env["TRADEBASE_OPTIMIZE_SEED"] = str(settings.optimize_seed)
    if settings.schedule_tasks_file is not None:
        env["TRADEBASE_SCHEDULE_TASKS_FILE"] = str(settings.schedule_tasks_file)
    if settings.discord_webhook_url is not None:
        env["DISCORD_WEBHOOK_URL"] = settings.discord_webhook_url.get_secret_value()
    if settings.dialect == "postgres":
        assert settings.database_url is not None
        env["DATABASE_URL"] = settings.database_url.get_secret_value()
        env["TRADEBASE_SCHEMA"] = settings.schema
    else:
        env["TRADEBASE_DUCKDB_PATH"] = str(settings.duckdb_file)
    return env


# -- raw rows -----------------------------------------------------------------------------------
@dataclass
class Trade:
    trade_id: str
    component_id: str
    symbol: str
    side: str
    quantity: float
    entry_ts: datetime
    exit_ts: datetime
    entry_price: float
    exit_price: float
    fees: float = 0.0
    strategy_version: str | None = "v1"
    variant: str | None = "champion"
    model_version: str | None = None


@dataclass
class Prediction:
    prediction_id: str
    model_id: str
    model_version: str
    symbol: str
    ts: datetime
    predicted_label: int
    predicted_proba: float | None
    actual_label: int | None


@dataclass
class Bar:
    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass
class Dataset:
    """Everything one build needs: the seed rows and the raw rows."""

    components: list[dict[str, Any]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    # component_id -> {date: daily return} as constructed (for expected values)
    daily_returns: dict[str, dict[date, float]] = field(default_factory=dict)

    def add_component(
        self, component_id: str, initial_capital: float, periods_per_year: int | None = 252
    ) -> None:
        self.components.append(
            {
                "component_id": component_id,
                "initial_capital": initial_capital,
                "periods_per_year": periods_per_year,
                "strategy": "scenario",
                "description": component_id.replace("_", " "),
            }
        )

    def add_daily_return_trades(
        self,
        component_id: str,
        returns: Mapping[date, float],
        initial_capital: float,
        symbol: str = "SCN",
        periods_per_year: int | None = 252,
    ) -> None:
        """One long trade of quantity 1 per listed date, entry_price = that day's equity_start
        and exit_price = equity_start * (1 + r), so the day's return is r; unlisted dates between
        them are days on which nothing closed."""
        self.add_component(component_id, initial_capital, periods_per_year)
        equity = float(initial_capital)
        realised: dict[date, float] = {}
        for i, (day, r) in enumerate(sorted(returns.items())):
            entry, exit_ = equity, equity * (1.0 + r)
            self.trades.append(
                Trade(
                    trade_id=f"{component_id}-{i:05d}",
                    component_id=component_id,
                    symbol=symbol,
                    side="long",
                    quantity=1.0,
                    entry_ts=datetime.combine(day, time(9, 30)),
                    exit_ts=datetime.combine(day, time(16, 0)),
                    entry_price=entry,
                    exit_price=exit_,
                )
            )
            realised[day] = r
            equity += exit_ - entry
        self.daily_returns[component_id] = realised

    def add_pnl_trades(
        self,
        component_id: str,
        pnls_by_day: Mapping[date, Sequence[float]],
        symbol: str = "SCN",
        entry_price: float = 100.0,
        quantity: float = 10.0,
    ) -> None:
        """Trades of an existing component: for each date, one long trade per listed net P&L
        (entry at `entry_price`, exit so that (exit - entry) * quantity is the P&L, no fees),
        entered and exited that day. Trade ids continue the component's existing ones."""
        n = sum(1 for t in self.trades if t.component_id == component_id)
        for day, pnls in sorted(pnls_by_day.items()):
            for pnl in pnls:
                self.trades.append(
                    Trade(
                        trade_id=f"{component_id}-{n:05d}",
                        component_id=component_id,
                        symbol=symbol,
                        side="long",
                        quantity=quantity,
                        entry_ts=datetime.combine(day, time(9, 30)),
                        exit_ts=datetime.combine(day, time(16, 0)),
                        entry_price=entry_price,
                        exit_price=entry_price + pnl / quantity,
                    )
                )
                n += 1

    def load(self, wh: Warehouse) -> None:
        import pyarrow as pa

        def table(rows: list[Any], schema: pa.Schema, extra: dict[str, Any]) -> pa.Table:
            cols: dict[str, list[Any]] = {f.name: [] for f in schema}
            for n, row in enumerate(rows):
                values = {**row.__dict__, **extra, "source_row": n + 1}
                for name in cols:
                    cols[name].append(values[name])
            return pa.table(cols, schema=schema)

        common = [
            pa.field("ingest_id", pa.string()),
            pa.field("source_row", pa.int64()),
            pa.field("loaded_at", pa.timestamp("us")),
        ]
        extra = {"ingest_id": "scenario", "loaded_at": LOADED_AT}
        ts = pa.timestamp("us")
        if self.trades:
            schema = pa.schema(
                [
                    ("trade_id", pa.string()),
                    ("component_id", pa.string()),
                    ("symbol", pa.string()),
                    ("side", pa.string()),
                    ("quantity", pa.float64()),
                    ("entry_ts", ts),
                    ("exit_ts", ts),
                    ("entry_price", pa.float64()),
                    ("exit_price", pa.float64()),
                    ("fees", pa.float64()),
                    ("strategy_version", pa.string()),
                    ("variant", pa.string()),
                    ("model_version", pa.string()),
                    *common,
                ]
            )
            wh.load_arrow("raw_trades", table(self.trades, schema, extra))
        if self.predictions:
            schema = pa.schema(
                [
                    ("prediction_id", pa.string()),
                    ("model_id", pa.string()),
                    ("model_version", pa.string()),
                    ("symbol", pa.string()),
                    ("ts", ts),
                    ("predicted_label", pa.int32()),
                    ("predicted_proba", pa.float64()),
                    ("actual_label", pa.int32()),
                    *common,
                    ("labelled_at", ts),
                ]
            )
            wh.load_arrow(
                "raw_predictions", table(self.predictions, schema, {**extra, "labelled_at": None})
            )
        if self.bars:
            schema = pa.schema(
                [
                    ("symbol", pa.string()),
                    ("ts", ts),
                    ("open", pa.float64()),
                    ("high", pa.float64()),
                    ("low", pa.float64()),
                    ("close", pa.float64()),
                    ("volume", pa.float64()),
                    *common,
                ]
            )
            wh.load_arrow("raw_bars", table(self.bars, schema, extra))


# -- real series --------------------------------------------------------------------------------
def consecutive_days(values: Sequence[float], last_day: date) -> dict[date, float]:
    """Put a series on consecutive calendar days ending on `last_day`."""
    start = last_day - timedelta(days=len(values) - 1)
    return {start + timedelta(days=i): float(v) for i, v in enumerate(values)}


def sp500_closes() -> np.ndarray:
    from arch.data import sp500

    return sp500.load()["Adj Close"].to_numpy(dtype=float)


def goog_closes() -> np.ndarray:
    from backtesting.test import GOOG

    return GOOG["Close"].to_numpy(dtype=float)


def close_to_close_returns(closes: np.ndarray) -> np.ndarray:
    return closes[1:] / closes[:-1] - 1.0


def window_returns(daily: Mapping[date, float], as_of: date, window_days: int) -> np.ndarray:
    """The daily returns a window sees: every calendar date in (as_of - w, as_of] from the
    first trade date on, zero where nothing closed (metrics.md)."""
    if not daily:
        return np.array([])
    first = min(daily)
    start = max(first, as_of - timedelta(days=window_days - 1))
    n = (as_of - start).days + 1
    return np.array([daily.get(start + timedelta(days=i), 0.0) for i in range(max(n, 0))])
