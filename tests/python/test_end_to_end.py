"""The whole ANALYZE path on the bundled sample data (real S&P 500 / NASDAQ bars), as users run it."""

from __future__ import annotations

import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runner.analyze import analyze
from runner.cli import app
from runner.config import Settings
from runner.demo import SAMPLE_AS_OF, sample_file
from runner.ingest import Kind, ingest_file
from runner.warehouse import connect
from runner.warehouse.migrations import migrate
from tests.python.conftest import PROJECT_DIR
from tests.python.scenarios import drop_pg_schema

pytestmark = pytest.mark.integration


def _flat(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Demo:
    output: str  # what `runner demo --sample` printed
    database: Path  # the DuckDB file it built; tests change copies of it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`runner demo --sample` on a fresh file, once for the module (each run is a full build)."""
    root = tmp_path_factory.mktemp("demo")
    database = root / "demo.duckdb"
    result = CliRunner().invoke(
        app,
        ["demo", "--sample", "--database", str(database)],
        env={"DATABASE_URL": "", "TRADEBASE_DBT_ARTIFACTS_DIR": str(root)},
    )
    assert result.exit_code == 0, result.output
    return Demo(result.output, database)


def copy_of(demo: Demo, tmp_path: Path) -> Path:
    copy = tmp_path / demo.database.name  # the file's stem is the catalog's name
    shutil.copyfile(demo.database, copy)
    return copy


def test_demo_builds_the_marts_and_calls_out_the_degrading_component(demo: Demo) -> None:
    """`runner demo` on a fresh file: every row loads, dbt builds, trend_spx is flagged as losing."""
    out = _flat(demo.output)
    assert "trades 2020 rows: 2020 loaded, 0 rejected" in out
    assert "trend_spx: losing" in out
    assert "meanrev_ndx: healthy" in out
    assert "breakout_spx: only" in out and "too few to judge" in out
    assert demo.database.is_file()


def test_analyze_without_as_of_ends_the_windows_today_in_utc(demo: Demo, tmp_path: Path) -> None:
    """With no --as-of the windows end today (UTC); components idle since 2018 show flat windows."""
    import json
    from datetime import UTC, datetime

    database = copy_of(demo, tmp_path)
    env = {"DATABASE_URL": "", "TRADEBASE_DBT_ARTIFACTS_DIR": str(tmp_path)}
    result = CliRunner().invoke(app, ["--duckdb-path", str(database), "analyze", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["performance"]
    today = datetime.now(UTC).date().isoformat()
    assert {r["as_of_date"] for r in rows} == {today}
    for row in rows:
        assert row["n_trades"] == 0 and row["n_days"] == row["window_days"]
        assert row["sharpe"] is None and row["win_rate"] is None
        assert row["max_drawdown"] == 0.0


def test_dbt_docs_generate_documents_every_mart(demo: Demo, tmp_path: Path) -> None:
    """`dbt docs generate` runs on a built warehouse and its catalog lists every mart."""
    import json

    from runner.dbt import run_dbt

    settings = Settings(
        duckdb_path=copy_of(demo, tmp_path),
        project_dir=PROJECT_DIR,
        database_url=None,
        dbt_artifacts_dir=tmp_path,
    )
    run_dbt(settings, "docs generate")
    catalog = json.loads((tmp_path / "target" / "catalog.json").read_text())
    names = {node.split(".")[-1] for node in catalog["nodes"]}
    for mart in ("mart_performance", "mart_metric_alerts", "mart_recommendations", "fct_trades"):
        assert mart in names


def _sample_marts(settings: Settings) -> list[dict[str, Any]]:
    with connect(settings) as wh:
        migrate(wh)
        for kind in (Kind.bars, Kind.trades, Kind.predictions):
            assert ingest_file(wh, settings, kind, sample_file(kind)).rejected == 0
    return analyze(settings, SAMPLE_AS_OF).performance


@pytest.mark.postgres
def test_sample_data_gives_the_same_marts_on_duckdb_and_postgres(
    tmp_path: Path, pg_url: str
) -> None:
    """One model, two warehouses: every metric of mart_performance agrees to 1e-12."""
    duck = _sample_marts(
        Settings(
            duckdb_path=tmp_path / "s.duckdb",
            project_dir=PROJECT_DIR,
            database_url=None,
            dbt_artifacts_dir=tmp_path / "duck",
        )
    )
    schema = f"tb_test_{uuid.uuid4().hex[:10]}"
    try:
        pg = _sample_marts(
            Settings(
                database_url=pg_url,
                schema_name=schema,
                project_dir=PROJECT_DIR,
                dbt_artifacts_dir=tmp_path / "pg",
            )
        )
    finally:
        drop_pg_schema(pg_url, schema)
    assert len(duck) == len(pg) == 9  # 3 components x 3 windows
    for d, p in zip(duck, pg, strict=True):
        assert d.keys() == p.keys()
        for column, value in d.items():
            other = p[column]
            if isinstance(value, float) or isinstance(other, float):
                if value is None or other is None:
                    assert value is other, (d["component_id"], column)
                else:
                    assert math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-15), (
                        d["component_id"],
                        d["window_days"],
                        column,
                    )
            else:
                assert value == other, (d["component_id"], column)
