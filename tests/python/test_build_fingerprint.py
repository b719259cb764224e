"""A build knows which project files its schema was built with (table analytics_builds): with the
same files the hourly build leaves the views and the seeds as they are; with other files (an
edited threshold, an upgrade) the next build is a full one, from the raw tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from runner.analyze import build_analytics, project_fingerprint
from runner.config import Settings
from runner.dbt import NodeResult
from runner.warehouse import connect
from tests.python.scenarios import copy_dbt_project, fresh_settings

AS_OF = date(2024, 6, 28)
VIEWS = {"stg_raw__trades", "stg_raw__predictions", "int_trades_enriched_with_regime"}


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """An empty warehouse over a copy of the dbt project this test may edit."""
    project = copy_dbt_project(tmp_path / "project")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, project, url) as settings:
        yield settings


def names(nodes: list[NodeResult], resource_type: str) -> set[str]:
    return {n.name for n in nodes if n.resource_type == resource_type}


def built_with(settings: Settings) -> str | None:
    with connect(settings) as wh:
        row = wh.fetchone("select max(fingerprint) from analytics_builds")
    return None if row is None else row[0]


def test_same_files_keep_views_and_seeds_other_files_rebuild_everything(
    own_project: Settings,
) -> None:
    settings = own_project
    assert settings.project_dir is not None
    first = build_analytics(settings, AS_OF)
    seeds = names(first, "seed")
    assert {"components", "alert_thresholds"} <= seeds
    assert VIEWS <= names(first, "model")
    assert built_with(settings) == project_fingerprint(settings.project_dir)

    hour = build_analytics(settings, AS_OF)
    assert names(hour, "seed") == set()
    assert names(hour, "model") & VIEWS == set()
    assert {"mart_performance", "fct_trades", "mart_recommendations"} <= names(hour, "model")
    tests = names(hour, "test")
    # A rebuilt model's test against a seed stays; the tests of a seed alone go with it.
    assert any(t.startswith("relationships_int_trades_aggregated_to_daily") for t in tests)
    assert not any(t.startswith("unique_components_component_id") for t in tests)

    thresholds = settings.project_dir / "seeds" / "alert_thresholds.csv"
    thresholds.write_text(thresholds.read_text().replace("0.55,0.50,0.45", "0.56,0.50,0.45"))
    edited = build_analytics(settings, AS_OF)
    assert names(edited, "seed") == seeds
    assert VIEWS <= names(edited, "model")
    assert built_with(settings) == project_fingerprint(settings.project_dir)
    with connect(settings) as wh:
        row = wh.fetchone(
            "select target_value from alert_thresholds"
            " where metric = 'win_rate' and component_id is null"
        )
    assert row is not None and float(row[0]) == pytest.approx(0.56)


@pytest.mark.postgres
def test_incremental_builds_on_postgres_run_without_jit(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incremental build's dbt sessions turn PostgreSQL's JIT off (PGOPTIONS), keeping what
    the user set; a full build leaves the server's setting alone."""
    from types import SimpleNamespace

    import dbt.cli.main

    seen: list[str | None] = []

    class RecordingRunner:
        def invoke(self, args: list[str]) -> SimpleNamespace:
            seen.append(os.environ.get("PGOPTIONS"))
            return SimpleNamespace(success=True, exception=None, result=SimpleNamespace(results=()))

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", RecordingRunner)
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=0")
    project = copy_dbt_project(tmp_path / "project")
    with fresh_settings("postgres", tmp_path, project, pg_url) as settings:
        build_analytics(settings, AS_OF)  # never built: a full build
        build_analytics(settings, AS_OF)  # same files: incremental
        build_analytics(settings, AS_OF, full_refresh=True)
    assert seen == [
        "-c statement_timeout=0",
        "-c statement_timeout=0 -c jit=off",
        "-c statement_timeout=0",
    ]
    assert os.environ["PGOPTIONS"] == "-c statement_timeout=0"
