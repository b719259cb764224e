"""OPTIMIZE end to end on both warehouses: the real search path (bars from the warehouse, Optuna
with its storage, walk-forward folds, gates, records) refuses noise and finds a planted edge."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.audit import read_events
from runner.config import Settings
from runner.dbt import run_dbt
from runner.engine_tables import OptimizationTask, insert_optimization_tasks
from runner.ingest import ingest_file
from runner.optimize import SearchOptions, optimize
from runner.optimize.versions import list_versions
from runner.warehouse import connect
from tests.python.markets import noise_market, trending_market, write_bars_csv
from tests.python.scenarios import (
    copy_dbt_project,
    copy_world,
    fresh_settings,
    open_warehouse,
    own_database,
)

pytestmark = pytest.mark.integration


def component(
    component_id: str,
    symbol: str,
    params: Mapping[str, Any] | None = None,
    strategy: str = "sma_cross",
) -> dict[str, Any]:
    return {
        "component_id": component_id,
        "initial_capital": 100000,
        "periods_per_year": 252,
        "strategy": strategy,
        "description": "optimize test",
        "symbol": symbol,
        "params": json.dumps(dict(params)) if params else "",
    }


def prepare(settings: Settings, workdir: Path, markets: Mapping[str, pd.DataFrame]) -> Settings:
    """Ingest each market's bars and build the components seed and the bars view."""
    with open_warehouse(settings) as wh:
        for symbol, frame in markets.items():
            path = write_bars_csv(frame, symbol, workdir / f"{symbol}.csv")
            assert ingest_file(wh, settings, "bars", path).rejected == 0
    run_dbt(settings, "seed", select="components")
    run_dbt(settings, "run", select="stg_raw__bars")
    return settings


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def built_markets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A warehouse with a noise market (NOISE, component noise_sma at defaults) and a trending
    market (TREND, component trend_sma running slow, lagging windows in production), built once
    per warehouse (on PostgreSQL in a database of its own: the template of the copies)."""
    root = tmp_path_factory.mktemp(f"markets_{request.param}")
    components = [
        component("noise_sma", "NOISE"),
        component("trend_sma", "TREND", {"fast": 60, "slow": 250, "allow_short": True}),
        component("trend_ml", "TREND", {"model_version": 1}, strategy="ml_signal"),
    ]
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with (
        own_database(pg_url) as url,
        markets_world(request.param, root, url, components) as settings,
    ):
        yield settings


@pytest.fixture
def market_settings(built_markets: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A private copy of the built markets."""
    with copy_world(built_markets, tmp_path) as settings:
        yield settings


@contextmanager
def markets_world(
    kind: str, root: Path, pg_url: str | None, components: list[dict[str, Any]]
) -> Iterator[Settings]:
    project = copy_dbt_project(root / "project", components)
    with fresh_settings(kind, root, project, pg_url) as settings:
        yield prepare(settings, root, {"NOISE": noise_market(), "TREND": trending_market()})


def run_row(settings: Settings, run_id: str) -> dict[str, Any]:
    columns = (
        "verdict",
        "dsr",
        "pbo",
        "min_trl",
        "holdout_p",
        "n_trials",
        "reasons",
        "candidate_version",
        "trial_returns_path",
        "best_params",
        "code_version",
    )
    with connect(settings) as wh:
        row = wh.fetchone(
            f"select {', '.join(columns)} from optimization_runs where run_id = %(r)s",
            {"r": run_id},
        )
    assert row is not None
    return dict(zip(columns, row, strict=True))


def test_noise_market_is_rejected(market_settings: Settings) -> None:
    [outcome] = optimize(
        market_settings, component="noise_sma", options=SearchOptions(trials=60, seed=1)
    )
    assert outcome.verdict == "rejected"
    assert outcome.candidate_version is None
    assert outcome.reasons  # in words
    row = run_row(market_settings, outcome.run_id)
    assert row["verdict"] == "rejected"
    assert row["dsr"] is not None and row["dsr"] < 0.95
    assert row["pbo"] is not None and 0.0 <= row["pbo"] <= 1.0
    assert json.loads(row["reasons"]) == list(outcome.reasons)
    assert row["n_trials"] == outcome.n_trials > 0
    trial_returns = pd.read_parquet(row["trial_returns_path"])
    assert trial_returns.shape[1] == outcome.n_trials + 1  # day + one column per complete trial
    with connect(market_settings) as wh:
        assert [v.status for v in list_versions(wh, "noise_sma")] == ["production"]
        kinds = [e.event_type for e in read_events(wh, component="noise_sma")]
    assert kinds == ["strategy_version_created", "optimization_started", "optimization_rejected"]


def test_planted_edge_becomes_a_candidate_in_its_region(market_settings: Settings) -> None:
    [outcome] = optimize(
        market_settings, component="trend_sma", options=SearchOptions(trials=80, seed=2)
    )
    assert outcome.verdict == "candidate", outcome.reasons
    params = outcome.best_params
    assert params["slow"] <= 80 and params["fast"] < params["slow"]  # the planted region
    assert outcome.gates["dsr"] >= 0.95 and outcome.gates["pbo"] <= 0.3
    assert outcome.gates["holdout_p"] < 0.05
    with connect(market_settings) as wh:
        versions = list_versions(wh, "trend_sma")
        kinds = [e.event_type for e in read_events(wh, component="trend_sma")]
    assert [(v.version, v.status, v.parent_version) for v in versions] == [
        (1, "production", None),
        (2, "candidate", 1),
    ]
    assert versions[1].params == params and versions[1].optimization_run_id == outcome.run_id
    assert kinds[-1] == "optimization_completed"
    assert run_row(market_settings, outcome.run_id)["candidate_version"] == 2


@pytest.fixture(scope="module")
def built_duckdb_market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("duckdb_market")
    components = [
        component("noise_sma", "NOISE", {"stop_loss": 0.05}),
        component("trend_sma", "TREND"),
    ]
    with markets_world("duckdb", root, None, components) as settings:
        yield settings


@pytest.fixture
def duckdb_market(built_duckdb_market: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A private copy of the noise and trend markets on DuckDB (a 5% stop on noise_sma)."""
    with copy_world(built_duckdb_market, tmp_path) as settings:
        yield settings


def test_a_task_searches_only_the_parameters_it_names(duckdb_market: Settings) -> None:
    with open_warehouse(duckdb_market) as wh:
        insert_optimization_tasks(
            wh,
            [
                OptimizationTask(
                    task_id="exits_noise",
                    task_type="hyperparameter",
                    component_id="noise_sma",
                    frequency="daily",
                    next_run_at=datetime.now(UTC),
                    config={"params": ["stop_loss", "take_profit"]},
                )
            ],
        )
    [outcome] = optimize(
        duckdb_market, task_id="exits_noise", options=SearchOptions(trials=20, seed=3)
    )
    assert {k: outcome.best_params[k] for k in ("fast", "slow", "allow_short")} == {
        "fast": 10,
        "slow": 30,
        "allow_short": False,
    }
    with connect(duckdb_market) as wh:
        events = read_events(wh, event_types=["optimization_started"])
    assert events[0].task_id == "exits_noise" and events[0].metrics["search"] == [
        "stop_loss",
        "take_profit",
    ]


def test_same_seed_same_search(duckdb_market: Settings) -> None:
    first, second = (
        optimize(duckdb_market, component="noise_sma", options=SearchOptions(trials=15, seed=9))[0]
        for _ in range(2)
    )
    assert first.best_params == second.best_params and first.in_sample == second.in_sample
    assert first.study_name != second.study_name


def test_a_component_without_a_recommendation_has_nothing_to_do(duckdb_market: Settings) -> None:
    assert optimize(duckdb_market, options=SearchOptions(trials=5)) == []


def test_the_cli_prints_the_verdict_with_its_gates_and_reasons(
    duckdb_market: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runner.cli import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRADEBASE_DUCKDB_PATH", str(duckdb_market.duckdb_path))
    monkeypatch.setenv("TRADEBASE_PROJECT_DIR", str(duckdb_market.project))
    monkeypatch.setenv("TRADEBASE_ARTIFACT_DIR", str(duckdb_market.artifacts))

    def run(*args: str) -> str:
        monkeypatch.setattr("sys.argv", ["runner", *args])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        return capsys.readouterr().out

    text = " ".join(
        run("optimize", "--component", "noise_sma", "--trials", "12", "--seed", "1").split()
    )
    assert (
        "noise_sma (hyperparameter): rejected" in text
        and "deflated Sharpe" in text
        and "PBO" in text
    )
    assert "•" in text  # the reasons, one per line
    doc = json.loads(run("optimize", "--component", "noise_sma", "--trials", "12", "--json"))
    [run_doc] = doc["runs"]
    assert run_doc["verdict"] == "rejected" and run_doc["reasons"]
    assert set(run_doc["gates"]) >= {"dsr", "pbo", "min_trl", "holdout_p", "track_length"}
    nothing = " ".join(run("optimize").split())
    assert "Nothing to optimize" in nothing


def test_an_unknown_component_or_task_is_a_one_line_error(duckdb_market: Settings) -> None:
    from runner.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown component 'nope'"):
        optimize(duckdb_market, component="nope", options=SearchOptions(trials=5))
    with pytest.raises(ConfigError, match="No task 'nope'"):
        optimize(duckdb_market, task_id="nope", options=SearchOptions(trials=5))


def test_status_lists_the_runs_with_their_gates(duckdb_market: Settings) -> None:
    from runner.status import status_report

    [outcome] = optimize(duckdb_market, component="noise_sma", options=SearchOptions(trials=10))
    with connect(duckdb_market) as wh:
        [row] = status_report(wh, "noise_sma").optimization_runs
        assert status_report(wh, "trend_sma").optimization_runs == []
    assert row["run_id"] == outcome.run_id and row["verdict"] == "rejected"
    assert row["reasons"] == list(outcome.reasons) and row["n_trials"] == outcome.n_trials


def test_a_risk_task_sizes_down_a_volatile_strategy_within_its_bounds(
    duckdb_market: Settings,
) -> None:
    settings = duckdb_market.model_copy(update={"risk_max_position_min": 0.1})
    with open_warehouse(settings) as wh:
        insert_optimization_tasks(
            wh,
            [
                OptimizationTask(
                    task_id="risk_noise",
                    task_type="risk_adjustment",
                    component_id="noise_sma",
                    frequency="weekly",
                    next_run_at=datetime.now(UTC),
                )
            ],
        )
    [outcome] = optimize(settings, task_id="risk_noise", options=SearchOptions(seed=1))
    assert outcome.task_type == "risk_adjustment"
    assert outcome.verdict == "candidate", outcome.reasons
    risk = outcome.gates["risk_params"]
    assert 0.1 <= risk["max_position"] <= 1.0 and 0.0 <= risk["vol_target"] <= 0.4
    assert (
        outcome.in_sample["after"]["drawdown_quantile"]
        < 0.10
        < outcome.in_sample["before"]["drawdown_quantile"]
    )
    assert (
        outcome.out_of_sample["candidate"]["max_drawdown"]
        <= outcome.out_of_sample["incumbent"]["max_drawdown"]
    )
    with connect(settings) as wh:
        versions = list_versions(wh, "noise_sma")
        [done] = read_events(wh, event_types=["optimization_completed"])
    assert (
        versions[-1].status == "candidate"
        and versions[-1].params["max_position"] == risk["max_position"]
    )
    assert versions[-1].params["fast"] == versions[0].params["fast"]  # only risk moved
    assert done.task_id == "risk_noise" and done.metrics["task_type"] == "risk_adjustment"


def test_a_retrain_task_trains_from_the_feature_mart_and_registers_the_version(
    market_settings: Settings,
) -> None:
    from runner.optimize import models

    run_dbt(market_settings, "run", select="+fct_bar_features")
    with open_warehouse(market_settings) as wh:
        # The component trades a model (its system's own, as seeds/component_models.csv says);
        # without one a retrain task is refused (test_model_applicability).
        wh.execute("create table component_models (component_id text, model_id text)")
        wh.execute("insert into component_models values ('noise_sma', 'noise_sma_model')")
        insert_optimization_tasks(
            wh,
            [
                OptimizationTask(
                    task_id="retrain_noise",
                    task_type="retrain",
                    component_id="noise_sma",
                    frequency="weekly",
                    next_run_at=datetime.now(UTC),
                )
            ],
        )
    [outcome] = optimize(market_settings, task_id="retrain_noise", options=SearchOptions(seed=1))
    assert outcome.task_type == "retrain"
    assert outcome.verdict == "rejected" and outcome.reasons  # noise: nothing to learn
    assert 0.4 < outcome.out_of_sample["candidate"]["auc"] < 0.6
    with connect(market_settings) as wh:
        [version] = models.list_versions(wh, "noise_sma_model")
        importances = models.read_importances(wh, "noise_sma_model", version.version)
        kinds = [e.event_type for e in read_events(wh, component="noise_sma")]
        row = run_row(market_settings, outcome.run_id)
    assert version.status == "rejected" and version.optimization_run_id == outcome.run_id
    assert version.features and all(f.startswith("f_") for f in version.features)
    assert {i.feature for i in importances} >= set(version.features)
    assert kinds[-3:] == ["optimization_started", "model_version_created", "optimization_rejected"]
    assert row["verdict"] == "rejected"


def test_ml_signal_tunes_its_thresholds_on_out_of_sample_probabilities_of_its_model(
    market_settings: Settings,
) -> None:
    import numpy as np

    from runner.optimize import models
    from runner.optimize.probabilities import probabilities_for

    run_dbt(market_settings, "run", select="+fct_bar_features")
    with open_warehouse(market_settings) as wh:
        insert_optimization_tasks(
            wh,
            [
                OptimizationTask(
                    task_id="retrain_trend_ml",
                    task_type="retrain",
                    component_id="trend_ml",
                    frequency="weekly",
                    next_run_at=datetime.now(UTC),
                )
            ],
        )
    optimize(market_settings, task_id="retrain_trend_ml", options=SearchOptions(seed=1))
    [outcome] = optimize(
        market_settings, component="trend_ml", options=SearchOptions(trials=30, seed=1)
    )
    assert outcome.n_trials > 0 and outcome.in_sample["n_trades"] > 0
    assert outcome.best_params["model_version"] == 1  # the model is fixed, never searched
    with connect(market_settings) as wh:
        version = models.get_version(wh, "trend_ml_model", 1)
        probabilities = probabilities_for(wh, "trend_ml_model", 1, "TREND")
    # No in-sample prediction reaches the backtest: every value's model ended training before
    # its bar, and the registered model itself speaks only after its training window.
    known = ~np.isnan(probabilities.value)
    assert known.sum() > 500
    assert np.all(probabilities.trained_until[known] < probabilities.time[known])
    assert version.training_end is not None
    end = np.datetime64(version.training_end.replace(tzinfo=None), "us")
    assert np.all(probabilities.trained_until[known] <= end)
    if outcome.verdict == "candidate":
        with connect(market_settings) as wh:
            [_, candidate] = list_versions(wh, "trend_ml")
        assert candidate.params["model_version"] == 1
