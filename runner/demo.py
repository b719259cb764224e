"""The demo: a fresh DuckDB file, the bundled sample data ingested, the analytics built.

Every step is the engine's own code path (ingest_file, dbt build); nothing is precomputed.
The sample data (runner/sample_data, made by scripts/make_sample_data.py) ends on 2018-12-31.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from runner.analyze import AnalysisResult, analyze
from runner.config import Settings
from runner.ingest import IngestResult, Kind, ingest_file
from runner.optimize import Outcome, SearchOptions, optimize
from runner.warehouse import connect
from runner.warehouse.migrations import migrate

SAMPLE_AS_OF = date(2018, 12, 31)
DEFAULT_DEMO_DB = Path("tradebase-demo.duckdb")
# Enough trials for the gates to mean something, few enough for a demo; seeded: same story each run.
DEMO_TRIALS = 60
DEMO_SEED = 7


@dataclass(frozen=True)
class DemoResult:
    database: Path
    as_of: date
    ingests: list[IngestResult]
    analysis: AnalysisResult
    optimizations: list[Outcome]

    @property
    def performance(self) -> list[dict[str, Any]]:
        return self.analysis.performance


def sample_file(kind: Kind) -> Path:
    return Path(str(resources.files("runner") / "sample_data" / f"{kind.value}.csv"))


def demo_settings(settings: Settings, database: Path) -> Settings:
    """The demo always runs on its own DuckDB file, whatever DATABASE_URL says."""
    return settings.model_copy(update={"database_url": None, "duckdb_path": database})


def run_demo(settings: Settings, database: Path = DEFAULT_DEMO_DB) -> DemoResult:
    """Recreate `database`, ingest the sample bars, trades and predictions, then ANALYZE and
    IDENTIFY exactly as `runner analyze` does (marts built, alerts and recommendations recorded),
    then OPTIMIZE what the recommendations ask for, exactly as `runner optimize` does."""
    demo = demo_settings(settings, database)
    for suffix in ("", ".wal", ".optuna.sqlite"):
        demo.duckdb_file.with_name(demo.duckdb_file.name + suffix).unlink(missing_ok=True)
    with connect(demo) as wh:
        migrate(wh)
        ingests = [
            ingest_file(wh, demo, kind, sample_file(kind))
            for kind in (Kind.bars, Kind.trades, Kind.predictions)
        ]
    analysis = analyze(demo, SAMPLE_AS_OF)
    options = SearchOptions(trials=DEMO_TRIALS, seed=DEMO_SEED, as_of=SAMPLE_AS_OF)
    return DemoResult(
        demo.duckdb_file, SAMPLE_AS_OF, ingests, analysis, optimize(demo, options=options)
    )
