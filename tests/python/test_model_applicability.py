"""Retrain and feature-selection tasks only for components that trade a model.

A recommendation (say, a regime loss → feature_selection) can name a component running a plain
rule such as sma_cross. Training a model it would never trade is wasted work that could even
"pass": the task is recorded as rejected with the reason, nothing is trained or registered.
Once the component is mapped to a model, the same task trains it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.config import Settings
from runner.engine_tables import OptimizationTask, insert_optimization_tasks
from runner.optimize import SearchOptions, optimize
from runner.warehouse import connect
from tests.python.markets import trending_market
from tests.python.scenarios import copy_dbt_project, fresh_settings, open_warehouse
from tests.python.test_optimize import component, prepare

pytestmark = pytest.mark.integration


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def rule_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    project = copy_dbt_project(tmp_path / "project", [component("trend_sma", "TREND")])
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, project, url) as settings:
        prepare(settings, tmp_path, {"TREND": trending_market()})
        with open_warehouse(settings) as wh:
            insert_optimization_tasks(
                wh,
                [
                    OptimizationTask(
                        task_id=f"{kind}_trend",
                        task_type=kind,
                        component_id="trend_sma",
                        frequency="weekly",
                        next_run_at=datetime.now(UTC),
                    )
                    for kind in ("retrain", "feature_selection")
                ],
            )
        yield settings


@pytest.mark.parametrize("kind", ["retrain", "feature_selection"])
def test_a_component_without_a_model_gets_a_reasoned_refusal_and_no_model(
    rule_only: Settings, kind: str
) -> None:
    [outcome] = optimize(rule_only, task_id=f"{kind}_trend", options=SearchOptions(seed=1))
    assert outcome.verdict == "rejected" and outcome.n_trials == 0
    assert "sma_cross, which trades no model" in outcome.reasons[0]
    with connect(rule_only) as wh:
        assert wh.fetchall("select * from model_versions") == []
        row = wh.fetchone(
            "select verdict, reasons, finished_at from optimization_runs where run_id = %(r)s",
            {"r": outcome.run_id},
        )
        assert row is not None and row[0] == "rejected" and row[2] is not None
        assert "component_models.csv" in row[1]
        [event] = wh.fetchall(
            "select event_type from improvement_events where run_id = %(r)s", {"r": outcome.run_id}
        )
        assert event == ("optimization_rejected",)


def test_a_component_mapped_to_a_model_is_retrained(rule_only: Settings) -> None:
    from runner.dbt import run_dbt

    with open_warehouse(rule_only) as wh:
        wh.execute("create table component_models (component_id text, model_id text)")
        wh.execute("insert into component_models values ('trend_sma', 'trend_clf')")
    run_dbt(rule_only, "run", select="+fct_bar_features")
    [outcome] = optimize(rule_only, task_id="retrain_trend", options=SearchOptions(seed=1))
    assert outcome.n_trials > 0 and outcome.gates["model_id"] == "trend_clf"
    with connect(rule_only) as wh:
        assert wh.fetchall("select model_id, version from model_versions") == [("trend_clf", 1)]
