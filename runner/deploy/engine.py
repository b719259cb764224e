"""The Python API of DEPLOY for a trading system or a notebook: one object, the CLI's verbs.

    from runner.deploy.engine import Engine
    engine = Engine("postgresql://…")      # or Engine("tradebase.duckdb"), Engine(Settings())
    engine.route("trend_spx", "trend_spx:SPX:2024-05-02T14:30:00")  # who trades this signal
    engine.deploy(component="trend_spx")   # one step of the rollout
    engine.rollback(deployment_id="dep_…", reason="desk asked")
    await engine.arollback(deployment_id="dep_…")   # the same, off the event loop

Each call opens its own connection (DuckDB allows one writing process; PostgreSQL pools are the
caller's business), so an Engine is cheap and holds no state between calls.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from runner.config import Settings
from runner.deploy import routing, state
from runner.deploy.rollout import RollbackResult, StepResult, deploy, rollback
from runner.deploy.simulate import SimulationReport, simulate
from runner.warehouse import connect
from runner.warehouse.migrations import migrate


class Engine:
    """`connection` is Settings, a PostgreSQL URL (`postgresql://…`) or a DuckDB file path."""

    def __init__(self, connection: Settings | str | Path) -> None:
        if isinstance(connection, Settings):
            self.settings = connection
        elif isinstance(connection, str) and connection.startswith(
            ("postgresql://", "postgres://")
        ):
            self.settings = Settings(database_url=SecretStr(connection))
        else:
            self.settings = Settings(database_url=None, duckdb_path=Path(connection))

    @classmethod
    def from_env(cls) -> Engine:
        return cls(Settings())

    def route(self, component_id: str, unit_key: str, *, record: bool = False) -> routing.Route:
        """Who trades `unit_key`; `record` logs the assignment for the sample-ratio check."""
        with connect(self.settings) as wh:
            migrate(wh)
            return routing.route(wh, component_id, unit_key, record=record)

    def allocation(self, component_id: str | None = None) -> list[state.AllocationRow]:
        with connect(self.settings) as wh:
            migrate(wh)
            return state.allocation(wh, component_id)

    def deploy(
        self,
        component: str | None = None,
        version: int | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
    ) -> list[StepResult]:
        return deploy(self.settings, component=component, version=version, now=now, dry_run=dry_run)

    def simulate(
        self, component_id: str, *, until: datetime, bars_path: Path | None = None
    ) -> SimulationReport:
        """Paper-trade the component's allocation on bars up to `until` (docs/simulator.md)."""
        return simulate(self.settings, component_id, until=until, bars_path=bars_path)

    def rollback(self, deployment_id: str, reason: str = "") -> RollbackResult:
        return rollback(self.settings, deployment_id, reason)

    async def arollback(self, deployment_id: str, reason: str = "") -> RollbackResult:
        return await asyncio.to_thread(self.rollback, deployment_id, reason)

    async def adeploy(
        self, component: str | None = None, version: int | None = None
    ) -> list[StepResult]:
        return await asyncio.to_thread(self.deploy, component, version)

    async def aroute(
        self, component_id: str, unit_key: str, *, record: bool = False
    ) -> routing.Route:
        return await asyncio.to_thread(self.route, component_id, unit_key, record=record)
