"""DEPLOY's state machine on both warehouses, driven by trades written straight into raw_trades:
staging, smoke tests, the ramp 10 → 50 → 100, automatic and manual rollback, the allocation a
trading system reads, and a SIGKILL between any two steps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.audit import read_events
from runner.config import Settings
from runner.dbt import run_dbt
from runner.deploy import routing, state
from runner.deploy.engine import Engine
from runner.deploy.rollout import deploy, rollback
from runner.ingest import ingest_file
from runner.optimize.versions import add_candidate, list_versions, read_components, seed_versions
from runner.trace import trace
from runner.warehouse import connect
from tests.python.deploy_strategies import momentum_market
from tests.python.markets import write_bars_csv
from tests.python.scenarios import copy_dbt_project, fresh_settings, open_warehouse

pytestmark = pytest.mark.integration

STRATEGY = "tests.python.deploy_strategies:FollowLastBar"
COMPONENT = {
    "component_id": "mom",
    "initial_capital": 100000,
    "periods_per_year": 252,
    "strategy": STRATEGY,
    "symbol": "MOM",
    "params": json.dumps({"follow": 1}),
    "description": "deploy test",
}


def build(settings: Settings, workdir: Path) -> Settings:
    with open_warehouse(settings) as wh:
        path = write_bars_csv(momentum_market(), "MOM", workdir / "MOM.csv")
        assert ingest_file(wh, settings, "bars", path).rejected == 0
    run_dbt(settings, "seed", select="components alert_thresholds")
    run_dbt(settings, "run", select="stg_raw__bars")
    with open_warehouse(settings) as wh, wh.transaction():
        seed_versions(wh, read_components(wh, "mom"))
        add_candidate(
            wh,
            "mom",
            STRATEGY,
            {"follow": 1, "stop_loss": 0.2},
            parent_version=1,
            run_id=None,
            note="test candidate",
        )
    return settings


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def deploy_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    project = copy_dbt_project(tmp_path / "project", [COMPONENT])
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, project, url) as settings:
        yield build(settings.model_copy(update={"deploy_min_trades_per_arm": 30}), tmp_path)


_counter = {"n": 0}


def write_trades(
    settings: Settings, arm: str, version: int, returns: np.ndarray, quantity: float = 10
) -> None:
    """Trades of one arm with the given net returns, entered after the last bar (data time)."""
    _counter["n"] += 1
    batch = _counter["n"]
    start = datetime(2019, 1, 4) + timedelta(days=batch)
    lines = [
        "trade_id,component_id,symbol,side,quantity,entry_ts,exit_ts,entry_price,exit_price,fees,strategy_version,variant"
    ]
    for i, r in enumerate(returns):
        entry = start + timedelta(minutes=7 * i)
        lines.append(
            f"t{batch}_{arm}_{i},mom,MOM,long,{quantity},{entry:%Y-%m-%d %H:%M:%S},"
            f"{entry + timedelta(minutes=5):%Y-%m-%d %H:%M:%S},100,{100 * (1 + r):.8f},0,{version},{arm}"
        )
    path = settings.artifacts.parent / f"trades_{batch}.csv"
    path.write_text("\n".join(lines) + "\n")
    with open_warehouse(settings) as wh:
        result = ingest_file(wh, settings, "trades", path)
    assert result.rejected == 0, result.rejects_by_reason


def events(settings: Settings) -> list[str]:
    with connect(settings) as wh:
        return [e.event_type for e in read_events(wh, component="mom")]


def statuses(settings: Settings) -> dict[int, str]:
    with connect(settings) as wh:
        return {v.version: v.status for v in list_versions(wh, "mom")}


def allocation(settings: Settings) -> list[tuple[int, str, float]]:
    with connect(settings) as wh:
        return [(r.version, r.arm, round(r.traffic_share, 4)) for r in state.allocation(wh, "mom")]


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_a_better_candidate_ramps_10_50_100_and_becomes_production(
    deploy_settings: Settings,
) -> None:
    s = deploy_settings
    [first] = deploy(s, component="mom")
    assert first.action == "test_started", first.summary
    assert allocation(s) == [(1, "control", 0.9), (2, "treatment", 0.1)]
    with connect(s) as wh:
        checks = state.read_checks(wh, first.deployment_id or "")
    assert {c.name for c in checks} >= {"params_in_bounds", "recent_backtest", "lookahead"}
    assert all(c.passed for c in checks)

    [hold] = deploy(s, component="mom")
    assert hold.action == "hold" and "Collecting" in hold.summary

    write_trades(s, "control", 1, rng(1).normal(0.0, 0.01, 400))
    write_trades(s, "treatment", 2, rng(2).normal(0.006, 0.01, 400))
    [advance] = deploy(s, component="mom")
    assert advance.action == "advance", advance.summary
    assert allocation(s) == [(1, "control", 0.5), (2, "treatment", 0.5)]

    write_trades(s, "control", 1, rng(3).normal(0.0, 0.01, 400))
    write_trades(s, "treatment", 2, rng(4).normal(0.006, 0.01, 400))
    [promote] = deploy(s, component="mom")
    assert promote.action == "promote", promote.summary
    assert allocation(s) == [(2, "production", 1.0)]
    assert statuses(s) == {1: "superseded", 2: "production"}
    with connect(s) as wh:
        [test] = state.tests(wh, "mom")
        deployments = {(d.environment, d.version): d.status for d in state.deployments(wh, "mom")}
    assert test.status == "promoted" and test.current_stage == 100
    assert test.cs_lower is not None and test.cs_lower > 0 and test.improvement_percent is not None
    assert deployments == {
        ("production", 1): "superseded",
        ("staging", 2): "promoted",
        ("production", 2): "active",
    }
    kinds = events(s)
    for kind in (
        "deployment_created",
        "deployment_staged",
        "smoke_tests_passed",
        "ab_test_started",
        "ab_stage_advanced",
        "ab_test_promoted",
    ):
        assert kinds.count(kind) == 1, (kind, kinds)
    [nothing] = deploy(s, component="mom")
    assert nothing.action == "nothing"
    with connect(s) as wh:
        history = trace(wh, "mom")
    assert history.version == 2 and history.status == "production"
    assert [e.event_type for e in history.events] == [
        "deployment_staged",
        "smoke_tests_passed",
        "ab_test_started",
        "ab_stage_advanced",
        "ab_test_promoted",
    ]


def test_a_worse_candidate_is_rolled_back_at_the_first_stage_with_evidence(
    deploy_settings: Settings,
) -> None:
    s = deploy_settings
    deploy(s, component="mom")
    write_trades(s, "control", 1, rng(5).normal(0.003, 0.01, 300))
    write_trades(s, "treatment", 2, rng(6).normal(-0.004, 0.01, 300))
    [result] = deploy(s, component="mom")
    assert result.action == "rollback" and result.stage == 10, result.summary
    assert allocation(s) == [(1, "production", 1.0)]
    assert statuses(s) == {1: "production", 2: "rolled_back"}
    assert events(s).count("ab_test_rolled_back") == 1


def test_a_guardrail_breach_rolls_back_at_once(deploy_settings: Settings) -> None:
    s = deploy_settings
    deploy(s, component="mom")
    # Three trades only (far from the minimum sample), each losing half of a 20% position:
    # 30% of the capital, over the 15% critical drawdown.
    write_trades(s, "treatment", 2, np.full(3, -0.5), quantity=200)
    [result] = deploy(s, component="mom")
    assert result.action == "rollback" and "Guardrail" in result.summary


def test_manual_rollback_returns_all_traffic_and_is_harmless_twice(
    deploy_settings: Settings,
) -> None:
    s = deploy_settings
    [started] = deploy(s, component="mom")
    assert started.deployment_id is not None
    first = Engine(s).rollback(started.deployment_id, "desk request")
    assert first.rolled_back and first.restored_version == 1
    second = rollback(s, started.deployment_id, "again")
    assert not second.rolled_back and "nothing to roll back" in second.summary
    assert allocation(s) == [(1, "production", 1.0)]
    with connect(s) as wh:
        [test] = state.tests(wh, "mom")
    assert test.status == "rolled_back"
    assert events(s).count("deployment_rolled_back") == 1


def test_a_smoke_test_failure_never_starts_an_ab_test(deploy_settings: Settings) -> None:
    s = deploy_settings
    with connect(s) as wh:
        # Version 2 as stored breaks its own bounds (follow = 5): an edited row, caught in staging.
        wh.execute(
            "update strategy_versions set params = %(p)s where version = 2", {"p": '{"follow": 5}'}
        )
    [result] = deploy(s, component="mom")
    assert result.action == "smoke_failed" and "params_in_bounds" in result.summary
    with connect(s) as wh:
        assert state.tests(wh, "mom") == []
    assert allocation(s) == [(1, "production", 1.0)]
    assert statuses(s)[2] == "retired"
    assert "smoke_tests_failed" in events(s) and "ab_test_started" not in events(s)


def test_route_agrees_with_the_hash_and_the_cli(deploy_settings: Settings) -> None:
    s = deploy_settings
    [started] = deploy(s, component="mom")
    keys = [f"mom:MOM:2016-02-{d:02d}T10:00:00" for d in range(1, 29)]
    routes = [Engine(s).route("mom", k, record=True) for k in keys]
    Engine(s).route("mom", keys[0], record=True)  # asked twice, logged once
    for key, r in zip(keys, routes, strict=True):
        assert r.arm == routing.assign(started.test_id or "", key, 0.1)
        assert r.version == (2 if r.arm == "treatment" else 1)
    env = {**os.environ, **_env(s)}
    out = subprocess.run(
        [sys.executable, "-m", "runner.cli", "route", "mom", keys[0], "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(out.stdout)["arm"] == routes[0].arm
    # What the trading system loads: each arm's version, share and parameters.
    out = subprocess.run(
        [sys.executable, "-m", "runner.cli", "allocation", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    exported = {r["arm"]: r for r in json.loads(out.stdout)["allocation"]}
    with connect(s) as wh:
        versions = {
            int(v): json.loads(p)
            for v, p in wh.fetchall("select version, params from strategy_versions")
        }
    assert {a: (r["version"], r["traffic_share"]) for a, r in exported.items()} == {
        "control": (1, 0.9),
        "treatment": (2, 0.1),
    }
    assert all(r["params"] == versions[r["version"]] and r["strategy"] for r in exported.values())
    # The logged assignments feed the sample-ratio check of the next evaluation.
    with connect(s) as wh:
        logged = wh.fetchall("select arm, count(*) from ab_assignments group by arm order by arm")
    treated = sum(r.arm == "treatment" for r in routes)
    expected = {"control": len(keys) - treated, "treatment": treated}
    assert dict(logged) == {arm: n for arm, n in expected.items() if n}
    deploy(s, component="mom")
    with connect(s) as wh:
        [test] = state.tests(wh, "mom")
    assert test.srm_p is not None and test.srm_p > 0.001


def _env(s: Settings) -> dict[str, str]:
    env = {
        "TRADEBASE_PROJECT_DIR": str(s.project),
        "TRADEBASE_ARTIFACT_DIR": str(s.artifacts),
        "TRADEBASE_DBT_ARTIFACTS_DIR": str(s.dbt_artifacts_dir) if s.dbt_artifacts_dir else "",
        "TRADEBASE_DEPLOY_MIN_TRADES_PER_ARM": str(s.deploy_min_trades_per_arm),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    if s.database_url is not None:
        env["DATABASE_URL"] = s.database_url.get_secret_value()
        env["TRADEBASE_SCHEMA"] = s.schema
    else:
        env["TRADEBASE_DUCKDB_PATH"] = str(s.duckdb_file)
        env["DATABASE_URL"] = ""
    return env


KILLER = """
import os, signal, sys
from contextlib import contextmanager
import runner.warehouse as w

target = int(sys.argv[1])
seen = {"n": 0}
for cls in {getattr(w, n) for n in dir(w) if n.endswith("Warehouse")}:
    if not isinstance(cls, type) or "transaction" not in cls.__dict__:
        continue
    original = cls.transaction

    @contextmanager
    def patched(self, _original=original):
        with _original(self):
            yield
        seen["n"] += 1
        if seen["n"] == target:
            os.kill(os.getpid(), signal.SIGKILL)

    cls.transaction = patched
sys.argv = ["runner", "deploy", "--component", "mom"]
from runner.cli import main
main()
"""


def _state_rows(s: Settings) -> dict[str, Any]:
    with connect(s) as wh:
        deployments = state.deployments(wh, "mom")
        tests = state.tests(wh, "mom")
        kinds = [e.event_type for e in read_events(wh, component="mom")]
    return {"deployments": deployments, "tests": tests, "events": kinds}


def test_sigkill_between_any_two_steps_is_resumed_without_duplicates(
    deploy_settings: Settings, tmp_path: Path
) -> None:
    s = deploy_settings
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    base = None
    if s.database_url is None:
        base = tmp_path / "base.duckdb"
        shutil.copy(s.duckdb_file, base)
    kill_points = range(1, 7) if base is not None else (3, 4)
    for k in kill_points:
        if base is not None:
            shutil.copy(base, s.duckdb_file)
        else:  # PostgreSQL: undo what the previous round wrote
            with connect(s) as wh, wh.transaction():
                for table in ("deployments", "deployment_checks", "ab_tests", "improvement_events"):
                    wh.execute(f"delete from {table}")  # noqa: S608 - fixed table names
                wh.execute("update strategy_versions set status = 'candidate' where version = 2")
        env = {**os.environ, **_env(s)}
        killed = subprocess.run(
            [sys.executable, str(script), str(k)], env=env, capture_output=True, text=True
        )
        assert killed.returncode in (0, -signal.SIGKILL), killed.stderr
        again = subprocess.run(
            [sys.executable, "-m", "runner.cli", "deploy", "--component", "mom", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert again.returncode == 0, again.stderr
        rows = _state_rows(s)
        staging = [d for d in rows["deployments"] if d.environment == "staging"]
        assert len(staging) == 1, (k, staging)
        assert sum(t.status == "running" for t in rows["tests"]) == 1, k
        for kind in (
            "deployment_staged",
            "smoke_tests_passed",
            "ab_test_started",
            "deployment_created",
        ):
            assert rows["events"].count(kind) == 1, (k, kind, rows["events"])
        # Killed after staging committed and before the smoke tests were recorded (the third
        # commit: migrate, production deployment, staging): the audit trail says so, once.
        assert rows["events"].count("deployment_resumed") == (1 if k == 3 else 0), (k, rows)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def ml_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    from runner.engine_tables import OptimizationTask, insert_optimization_tasks
    from runner.optimize import SearchOptions, optimize
    from tests.python.markets import trending_market

    component = {
        **COMPONENT,
        "component_id": "mom",
        "strategy": "ml_signal",
        "symbol": "TREND",
        "params": json.dumps({"model_version": 1}),
    }
    project = copy_dbt_project(tmp_path / "project", [component])
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, project, url) as settings:
        with open_warehouse(settings) as wh:
            path = write_bars_csv(trending_market(), "TREND", tmp_path / "TREND.csv")
            assert ingest_file(wh, settings, "bars", path).rejected == 0
        run_dbt(settings, "seed", select="components alert_thresholds")
        run_dbt(settings, "run", select="+fct_bar_features")
        with open_warehouse(settings) as wh:
            insert_optimization_tasks(
                wh,
                [
                    OptimizationTask(
                        task_id="retrain_mom",
                        task_type="retrain",
                        component_id="mom",
                        frequency="weekly",
                        next_run_at=datetime(2026, 1, 1),
                    )
                ],
            )
        for _ in range(2):  # model versions 1 and 2
            optimize(settings, task_id="retrain_mom", options=SearchOptions(seed=1))
        yield settings


def test_a_new_model_reaches_production_only_as_a_strategy_version_through_its_test(
    ml_settings: Settings,
) -> None:
    from runner.optimize import models

    s = ml_settings
    with connect(s) as wh:
        models.set_status(wh, "mom_model", 1, "production")
        models.set_status(wh, "mom_model", 2, "candidate")
    [started] = deploy(s, component="mom")
    assert started.action == "test_started", started.summary
    with connect(s) as wh:
        [v1, v2] = list_versions(wh, "mom")
        checks = {c.name: c.passed for c in state.read_checks(wh, started.deployment_id or "")}
    assert v2.params["model_version"] == 2 and v2.parent_version == 1
    assert checks["model_artifact"]
    assert "strategy_version_created" in events(s)

    write_trades(s, "control", 1, rng(7).normal(0.0, 0.01, 400))
    write_trades(s, "treatment", 2, rng(8).normal(0.006, 0.01, 400))
    assert deploy(s, component="mom")[0].action == "advance"
    write_trades(s, "control", 1, rng(9).normal(0.0, 0.01, 400))
    write_trades(s, "treatment", 2, rng(10).normal(0.006, 0.01, 400))
    assert deploy(s, component="mom")[0].action == "promote"
    with connect(s) as wh:
        status = {m.version: m.status for m in models.list_versions(wh, "mom_model")}
    assert status == {1: "retired", 2: "production"}
    # Rolling the promoted version back restores model 1 with strategy version 1.
    with connect(s) as wh:
        current = state.production(wh, "mom")
    assert current is not None and current.version == 2
    assert rollback(s, current.deployment_id, "model misbehaves").restored_version == 1
    with connect(s) as wh:
        status = {m.version: m.status for m in models.list_versions(wh, "mom_model")}
    assert status == {1: "production", 2: "retired"}
    assert allocation(s) == [(1, "production", 1.0)]


def test_a_dry_run_decides_like_a_real_run_and_writes_nothing(deploy_settings: Settings) -> None:
    s = deploy_settings
    [would] = deploy(s, component="mom", dry_run=True)
    assert would.action == "stage" and would.version == 2
    assert events(s) == [] and allocation(s) == []
    deploy(s, component="mom")
    write_trades(s, "control", 1, rng(11).normal(0.0, 0.01, 400))
    write_trades(s, "treatment", 2, rng(12).normal(0.006, 0.01, 400))
    before = events(s)
    [preview] = deploy(s, component="mom", dry_run=True)
    assert preview.action == "advance" and preview.summary.startswith("(dry run)")
    assert events(s) == before and allocation(s) == [(1, "control", 0.9), (2, "treatment", 0.1)]
    assert deploy(s, component="mom")[0].action == "advance"
