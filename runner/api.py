"""The Python API: one object with the CLI's verbs, for a trading system, a notebook or a scheduler.

    from runner.api import Engine
    engine = Engine("tradebase.duckdb")          # or Engine("postgresql://…"), Engine(Settings())
    engine.ingest("trades", "trades.csv")        # IngestResult: loaded, rejected and why
    result = engine.analyze(as_of=date(2026, 10, 23))   # marts, alerts, recommendations
    engine.cycle(steps=("optimize", "deploy"))   # one improvement cycle (CycleReport)
    engine.allocation("trend_spx")               # versions, shares, parameters to trade
    engine.route("trend_spx", signal_id)         # who trades this signal
    engine.report(out_dir=Path("report"))        # the HTML report and its charts

Each call opens its own connection and returns plain dataclasses; nothing is printed. The
deploy verbs (`route`, `allocation`, `deploy`, `simulate`, `rollback` and their async forms)
come from `runner.deploy.engine.Engine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from runner.analyze import AnalysisResult, analyze
from runner.cycle import STEPS, CycleReport, run_cycle
from runner.deploy.engine import Engine as DeployEngine
from runner.ingest import ingest_file
from runner.ingest.result import IngestResult
from runner.ingest.specs import Kind
from runner.report import ReportResult, build_report
from runner.status import StatusReport, status_report
from runner.trace import Trace, trace
from runner.warehouse import connect
from runner.warehouse.migrations import migrate

__all__ = ["Engine"]


class Engine(DeployEngine):
    """The engine's verbs on one warehouse (`connection`: Settings, a PostgreSQL URL or a DuckDB
    file path)."""

    def ingest(self, kind: Kind, path: str | Path) -> IngestResult:
        """Validate a trades/predictions/bars file and load its valid rows (rejects are kept)."""
        with connect(self.settings) as wh:
            migrate(wh)
            return ingest_file(wh, self.settings, kind, Path(path))

    def analyze(self, as_of: date | None = None, component: str | None = None) -> AnalysisResult:
        """Build the marts (dbt) and record alerts and recommendations, like `runner analyze`."""
        with connect(self.settings) as wh:
            migrate(wh)
        return analyze(self.settings, as_of, component)

    def cycle(
        self,
        steps: Sequence[str] = STEPS,
        component: str | None = None,
        as_of: date | None = None,
        dry_run: bool = False,
        budget_seconds: float | None = None,
    ) -> CycleReport:
        """One improvement cycle; a failed step is in the report, never raised."""
        return run_cycle(
            self.settings,
            steps=steps,
            component=component,
            as_of=as_of,
            dry_run=dry_run,
            budget_seconds=budget_seconds,
        )

    def status(self, component: str | None = None) -> StatusReport:
        with connect(self.settings) as wh:
            migrate(wh)
            return status_report(wh, component)

    def trace(self, component_id: str, version: int | None = None) -> Trace:
        with connect(self.settings) as wh:
            migrate(wh)
            return trace(wh, component_id, version)

    def report(self, out_dir: str | Path, component: str | None = None) -> ReportResult:
        return build_report(self.settings, out_dir=Path(out_dir), component=component)
