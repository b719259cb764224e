"""The staging smoke tests on both warehouses: a healthy version passes all five; parameters
tampered out of bounds, a strategy that peeks one bar ahead, a window without trades, a drawdown
at the critical threshold, and an altered or missing model each fail their own check, in words
and numbers, without raising and without hiding the other checks."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runner.config import Settings
from runner.dbt import run_dbt
from runner.deploy.smoke import (
    CHECK_NAMES,
    DEFAULT_CRITICAL_DRAWDOWN,
    critical_drawdown,
    export_config,
    import_config,
    run_smoke_tests,
)
from runner.deploy.state import Check
from runner.engine_tables import to_json_text
from runner.errors import ConfigError
from runner.ingest import ingest_file
from runner.optimize import models
from runner.optimize.features import load_features
from runner.optimize.retrain import RetrainConfig, retrain
from runner.optimize.versions import (
    Component,
    StrategyVersion,
    add_candidate,
    get_version,
    production_version,
    read_components,
    seed_versions,
)
from runner.strategies import Bars, Param
from runner.warehouse import Warehouse, connect
from tests.python.markets import bars_from_returns, trending_market, write_bars_csv
from tests.python.scenarios import copy_dbt_project, fresh_settings, open_warehouse

pytestmark = pytest.mark.integration

TIGHT_CRITICAL = 0.001  # tight_sma's override row: any losing stretch reaches it


class Peeking:
    """Long on a bar whose next bar closes higher, short otherwise: it reads one bar ahead."""

    name = "peeking"

    def parameters(self) -> Sequence[Param]:
        return ()

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> np.ndarray:
        out = np.zeros(len(bars))
        out[:-1] = np.where(bars.close[1:] > bars.close[:-1], 1.0, -1.0)
        return out


class Exploding:
    """A strategy whose signal code fails on any data."""

    name = "exploding"

    def parameters(self) -> Sequence[Param]:
        return ()

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> np.ndarray:
        raise RuntimeError(f"division by zero on bar {len(bars) - 1}")


def rising_market(days: int = 1300, seed: int = 3) -> pd.DataFrame:
    """Noise for all but the last 500 days, then a steady rise without noise: moving averages
    cross early on and never again."""
    rng = np.random.default_rng(seed)
    returns = np.r_[rng.normal(0.0, 0.01, days - 500), np.full(500, 0.001)]
    return bars_from_returns(returns, seed)


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
        "description": "smoke test",
        "symbol": symbol,
        "params": json.dumps(dict(params)) if params else "",
    }


@dataclass(frozen=True)
class World:
    settings: Settings
    components: Mapping[str, Component]


def add_threshold_override(project: Path, component_id: str, critical: float) -> None:
    path = project / "seeds" / "alert_thresholds.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    default = next(r for r in rows if r["metric"] == "max_drawdown" and not r["component_id"])
    rows.append(
        {
            **default,
            "component_id": component_id,
            "warning_value": str(critical / 2),
            "target_value": str(critical / 2),
            "critical_value": str(critical),
        }
    )
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """TREND (regimes of 40 days) and RISE (a steady rise over its last 500 days) with:
    trend_sma (a fast cross that rides the trends), tight_sma (the same, with a critical drawdown
    of 0.1%), rise_sma (at defaults on RISE), and trend_ml (ml_signal on model trend_ml_model,
    whose versions 1 and 2 are the same retrained model)."""
    tmp = tmp_path_factory.mktemp(f"smoke_{request.param}")
    project = copy_dbt_project(
        tmp / "project",
        [
            component("trend_sma", "TREND", {"fast": 5, "slow": 20, "allow_short": True}),
            component("tight_sma", "TREND", {"fast": 5, "slow": 20, "allow_short": True}),
            component("rise_sma", "RISE"),
            component("trend_ml", "TREND", {"model_version": 1}, strategy="ml_signal"),
        ],
    )
    add_threshold_override(project, "tight_sma", TIGHT_CRITICAL)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp, project, url) as settings:
        with open_warehouse(settings) as wh:
            for symbol, frame in {"TREND": trending_market(), "RISE": rising_market()}.items():
                path = write_bars_csv(frame, symbol, tmp / f"{symbol}.csv")
                assert ingest_file(wh, settings, "bars", path).rejected == 0
        run_dbt(settings, "seed", select="components alert_thresholds")
        run_dbt(settings, "run", select="+fct_bar_features")
        with open_warehouse(settings) as wh:
            components = {c.component_id: c for c in read_components(wh)}
            seed_versions(wh, list(components.values()))
            result = retrain(
                load_features(wh, "TREND"), config=RetrainConfig(num_threads=1, window=None)
            )
            assert result.model_text is not None  # the trends are learnable: features chosen
            for _ in range(2):
                models.register_version(
                    wh,
                    settings.artifacts,
                    model_id="trend_ml_model",
                    result=result,
                    component_id="trend_ml",
                    code_version="0.1.0+test",
                )
        yield World(settings, components)


def smoke(
    world: World, component_id: str, version: StrategyVersion | None = None, **options: int
) -> dict[str, Check]:
    with connect(world.settings) as wh:
        chosen = version or production_version(wh, component_id)
        checks = run_smoke_tests(
            wh, world.settings, world.components[component_id], chosen, **options
        )
    assert [c.name for c in checks] == list(CHECK_NAMES)
    for check in checks:
        json.dumps(check.metrics, allow_nan=False)  # JSON-ready
        assert check.detail and check.detail.count(". ") == 0  # one sentence
    return {c.name: c for c in checks}


def failed(checks: Mapping[str, Check]) -> set[str]:
    return {name for name, check in checks.items() if not check.passed}


def variant(world: World, component_id: str, **changes: Any) -> StrategyVersion:
    with connect(world.settings) as wh:
        return replace(production_version(wh, component_id), **changes)


# -- the five checks on a healthy version ----------------------------------------------------
def test_a_healthy_sma_cross_version_passes_all_five_checks(world: World) -> None:
    checks = smoke(world, "trend_sma")
    assert failed(checks) == set(), {n: c.detail for n, c in checks.items()}
    assert checks["model_artifact"].detail == "not applicable: sma_cross trades no model"
    backtest = checks["recent_backtest"].metrics
    assert backtest["n_trades"] > 0 and backtest["recent_days"] == 180
    assert backtest["warmup_bars"] > 400  # two years before the window warm the averages
    assert 0 <= backtest["max_drawdown"] < backtest["critical_drawdown"] == 0.15
    assert backtest["trade_return_sd"] > 0  # the rollout's A/B margin starts from it
    assert checks["lookahead"].metrics["cuts"] == 8
    assert checks["lookahead"].metrics["differing_cuts"] == 0


def test_the_critical_drawdown_is_the_components_override_else_the_default(world: World) -> None:
    with connect(world.settings) as wh:
        assert critical_drawdown(wh, "tight_sma") == pytest.approx(TIGHT_CRITICAL)
        assert critical_drawdown(wh, "trend_sma") == pytest.approx(0.15)


def test_without_alert_thresholds_the_critical_drawdown_is_fifteen_percent(
    warehouse: Warehouse,
) -> None:
    assert not warehouse.table_exists("alert_thresholds")
    assert critical_drawdown(warehouse, "any") == DEFAULT_CRITICAL_DRAWDOWN == 0.15


# -- each failure fails its own check ---------------------------------------------------------
def test_stored_parameters_tampered_out_of_bounds_fail_params_in_bounds(world: World) -> None:
    with connect(world.settings) as wh:
        healthy = production_version(wh, "trend_sma")
        candidate = add_candidate(
            wh, "trend_sma", "sma_cross", healthy.params, healthy.version, "run_test", "tampered"
        )
        tampered = {**healthy.params, "fast": 500, "stop_loss": 0.9, "leverage": 3}
        wh.execute(
            "update strategy_versions set params = %(p)s"
            " where component_id = 'trend_sma' and version = %(v)s",
            {"p": to_json_text(tampered), "v": candidate.version},
        )
        stored = get_version(wh, "trend_sma", candidate.version)
    checks = smoke(world, "trend_sma", stored)
    check = checks["params_in_bounds"]
    assert not check.passed and check.detail.startswith("4 problem(s) with the stored parameters")
    for problem in (
        "unknown parameter 'leverage'",
        "fast = 500 is above its maximum 100",
        "stop_loss = 0.9 is above its maximum 0.5",
        "fast must be < slow (got fast=500, slow=20)",
    ):
        assert problem in check.detail
        assert any(p.startswith(problem) for p in check.metrics["problems"])
    assert checks["model_artifact"].passed  # not applicable, still reported
    assert failed(checks) == {
        "params_in_bounds",
        "recent_backtest",
        "config_roundtrip",
        "lookahead",
    }


def test_a_version_missing_a_parameter_fails_params_in_bounds(world: World) -> None:
    partial = variant(world, "trend_sma", params={"fast": 5, "slow": 20, "allow_short": True})
    check = smoke(world, "trend_sma", partial)["params_in_bounds"]
    assert not check.passed and check.metrics["missing"] == ["stop_loss", "take_profit"]


def test_a_strategy_that_peeks_one_bar_ahead_fails_lookahead_and_the_rest_still_report(
    world: World,
) -> None:
    peeking = variant(world, "trend_sma", strategy="tests.python.test_smoke:Peeking", params={})
    checks = smoke(world, "trend_sma", peeking)
    assert failed(checks) == {"lookahead"}
    lookahead = checks["lookahead"]
    assert lookahead.metrics["differing_cuts"] == lookahead.metrics["cuts"] == 8
    assert lookahead.metrics["first_difference_at"] in lookahead.detail
    assert checks["recent_backtest"].metrics["n_trades"] > 0


def test_a_version_without_a_trade_in_the_recent_window_fails_recent_backtest(
    world: World,
) -> None:
    checks = smoke(world, "rise_sma")
    assert failed(checks) == {"recent_backtest"}
    check = checks["recent_backtest"]
    assert check.metrics["n_trades"] == 0 and check.metrics["bars"] > 100
    assert "no trade in the last 180 days" in check.detail


def test_a_drawdown_at_the_components_critical_threshold_fails_recent_backtest(
    world: World,
) -> None:
    checks = smoke(world, "tight_sma")
    assert failed(checks) == {"recent_backtest"}
    check = checks["recent_backtest"]
    assert check.metrics["critical_drawdown"] == pytest.approx(TIGHT_CRITICAL)
    assert check.metrics["max_drawdown"] >= TIGHT_CRITICAL and check.metrics["n_trades"] > 0
    assert "at or above the critical 0.1%" in check.detail


def test_strategy_code_that_raises_fails_the_checks_that_run_it(world: World) -> None:
    exploding = variant(world, "trend_sma", strategy="tests.python.test_smoke:Exploding", params={})
    checks = smoke(world, "trend_sma", exploding)
    assert failed(checks) == {"recent_backtest", "lookahead"}
    for name in ("recent_backtest", "lookahead"):
        assert checks[name].detail.startswith("RuntimeError: division by zero on bar")
        assert checks[name].metrics == {"error": "RuntimeError"}


def test_a_strategy_that_cannot_be_loaded_fails_every_check(world: World) -> None:
    missing = variant(world, "trend_sma", strategy="tests.python.nowhere:Nothing")
    checks = smoke(world, "trend_sma", missing)
    assert failed(checks) == set(CHECK_NAMES)
    for check in checks.values():
        assert "module 'tests.python.nowhere' not found" in check.detail
        assert check.metrics == {"error": "StrategyError"}


# -- the model artifact ---------------------------------------------------------------------
def test_an_ml_signal_version_with_its_registered_model_passes_model_artifact(
    world: World,
) -> None:
    checks = smoke(world, "trend_ml")
    check = checks["model_artifact"]
    assert check.passed, check.detail
    assert check.metrics["model_id"] == "trend_ml_model" and check.metrics["model_version"] == 1
    assert check.metrics["rows"] == 200 and check.metrics["n_invalid"] == 0
    assert 0.0 <= check.metrics["p_min"] <= check.metrics["p_max"] <= 1.0
    assert failed(checks) == set(), {n: c.detail for n, c in checks.items()}


def test_an_altered_model_artifact_fails_model_artifact_on_its_hash(world: World) -> None:
    with connect(world.settings) as wh:
        second = models.get_version(wh, "trend_ml_model", 2)
    assert second.artifact_path is not None
    path = Path(second.artifact_path)
    path.write_text(path.read_text() + "\n")  # one byte more: another file
    version = variant(
        world, "trend_ml", params={**variant(world, "trend_ml").params, "model_version": 2}
    )
    checks = smoke(world, "trend_ml", version)
    assert "model_artifact" in failed(checks)
    check = checks["model_artifact"]
    assert "does not match its registered SHA-256" in check.detail
    assert check.metrics["error"] == "ModelArtifactError" and check.metrics["model_version"] == 2
    assert checks["params_in_bounds"].passed and checks["config_roundtrip"].passed


def test_a_model_version_that_does_not_exist_fails_model_artifact(world: World) -> None:
    version = variant(
        world, "trend_ml", params={**variant(world, "trend_ml").params, "model_version": 9}
    )
    checks = smoke(world, "trend_ml", version)
    check = checks["model_artifact"]
    assert not check.passed
    assert check.detail == "Model 'trend_ml_model' has no version 9 in model_versions."
    # Without its model the version cannot be backtested either: each check says so.
    assert {"recent_backtest", "lookahead"} <= failed(checks)
    assert "not in model_versions" in checks["recent_backtest"].detail
    assert checks["lookahead"].metrics == {"error": "ConfigError"}


# -- the exported configuration -------------------------------------------------------------
def test_the_exported_configuration_round_trips_through_json(world: World) -> None:
    sma, ml = variant(world, "trend_sma"), variant(world, "trend_ml")
    exported = export_config(world.components["trend_sma"], sma)
    assert exported == {
        "component_id": "trend_sma",
        "version": 1,
        "strategy": "sma_cross",
        "symbol": "TREND",
        "params": dict(sma.params),
    }
    strategy, params = import_config(json.loads(json.dumps(exported)))
    assert strategy.name == "sma_cross" and params == sma.params
    ml_exported = export_config(world.components["trend_ml"], ml, model_id="trend_ml_model")
    assert ml_exported["model"] == {"model_id": "trend_ml_model", "version": 1}
    strategy, params = import_config(json.loads(json.dumps(ml_exported)))
    assert strategy.name == "ml_signal" and params == ml.params
    check = smoke(world, "trend_sma")["config_roundtrip"]
    assert check.passed and check.metrics["differing_params"] == []


@pytest.mark.parametrize(
    "garbage",
    [
        "not a mapping",
        ["sma_cross"],
        {},
        {"strategy": ""},
        {"strategy": "no_such_strategy", "params": {}},
        {"strategy": "sma_cross", "params": "fast=5"},
        {"strategy": "sma_cross", "params": {"fast": 50, "slow": 10}},
        {"strategy": "sma_cross", "params": {}, "version": "one"},
        {"strategy": "sma_cross", "params": {}, "model": {"model_id": "m", "version": 1}},
        {"strategy": "ml_signal", "params": {"model_version": 2}, "model": {"version": 2}},
    ],
)
def test_import_config_refuses_garbage_with_a_config_error(garbage: Any) -> None:
    with pytest.raises(ConfigError):
        import_config(garbage)
