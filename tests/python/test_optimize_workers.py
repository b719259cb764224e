"""Several processes on one study (PostgreSQL storage): they share the trial budget, and a
worker killed in the middle of a trial leaves the study consistent (its trial FAIL, not RUNNING)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import Settings
from runner.optimize import SearchOptions, optimize
from runner.optimize.study import open_storage, storage_config
from runner.warehouse import connect
from tests.python.markets import noise_market
from tests.python.scenarios import (
    PROJECT_DIR,
    copy_dbt_project,
    copy_world,
    fresh_settings,
    own_database,
)
from tests.python.test_optimize import component, prepare

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(scope="module")
def built_pg_market(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Settings]:
    """The noise market with a fast and a slow strategy, built once in a database of its own."""
    root = tmp_path_factory.mktemp("pg_market")
    slow = {**component("slow_sma", "NOISE"), "strategy": "tests.python.slow_strategy:SlowSmaCross"}
    project = copy_dbt_project(root / "project", [component("noise_sma", "NOISE"), slow])
    with (
        own_database(pg_url) as url,
        fresh_settings("postgres", root, project, url) as settings,
    ):
        yield prepare(
            settings.model_copy(
                update={"optimize_heartbeat_seconds": 1, "optimize_grace_seconds": 3}
            ),
            root,
            {"NOISE": noise_market()},
        )


@pytest.fixture
def pg_market(built_pg_market: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A private copy of the built market (its own database)."""
    with copy_world(built_pg_market, tmp_path) as settings:
        yield settings


def trials_of(settings: Settings, study_name: str) -> list[object]:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_config(settings)))
    return list(study.get_trials(deepcopy=False))


def test_two_worker_processes_share_one_study(pg_market: Settings) -> None:
    [outcome] = optimize(
        pg_market, component="noise_sma", options=SearchOptions(trials=24, workers=2, seed=4)
    )
    trials = trials_of(pg_market, outcome.study_name)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]  # type: ignore[attr-defined]
    # Two workers may each start a trial while the total is one short (Optuna's
    # MaxTrialsCallback checks before a trial, not atomically): at most workers - 1 extra.
    assert 24 <= len(finished) <= 25 and not [t for t in trials if t.state.name == "RUNNING"]  # type: ignore[attr-defined]
    workers = {t.user_attrs["worker"] for t in trials}  # type: ignore[attr-defined]
    assert len(workers) == 2  # both processes ran trials
    assert outcome.verdict == "rejected" and outcome.n_trials + outcome.n_pruned <= 25


def _runner_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TRADEBASE_SCHEMA": settings.schema,
        "TRADEBASE_PROJECT_DIR": str(settings.project),
        "TRADEBASE_ARTIFACT_DIR": str(settings.artifacts),
        "TRADEBASE_OPTIMIZE_HEARTBEAT_SECONDS": "1",
        "TRADEBASE_OPTIMIZE_GRACE_SECONDS": "3",
        "PYTHONPATH": str(PROJECT_DIR),
    }


def _wait_for(condition: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(pg_market: Settings) -> None:
    env = _runner_env(pg_market)
    runner = [sys.executable, "-m", "runner.cli"]
    coordinator = subprocess.Popen(
        [*runner, "optimize", "--component", "slow_sma", "--trials", "40", "--seed", "5", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def running_study() -> str | None:
            if coordinator.poll() is not None:
                raise AssertionError(f"the coordinator exited: {coordinator.communicate()[1]}")
            with connect(pg_market) as wh:
                row = wh.fetchone("select study_name from optimization_runs")
            if row is None:
                return None
            try:  # the run row is written just before the study is created
                trials_of(pg_market, str(row[0]))
            except KeyError:
                return None
            return str(row[0])

        study_name = str(_wait_for(running_study, 60, "the coordinator's study"))
        joiner = subprocess.Popen(
            [*runner, "optimize", "--join", study_name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        mark = f":{joiner.pid}"

        def joiner_mid_trial() -> bool:
            return any(
                t.state.name == "RUNNING" and str(t.user_attrs.get("worker", "")).endswith(mark)  # type: ignore[attr-defined]
                for t in trials_of(pg_market, study_name)
            )

        _wait_for(joiner_mid_trial, 60, "the joining worker to start a trial")
        joiner.send_signal(signal.SIGKILL)
        joiner.wait(10)
        out, err = coordinator.communicate(timeout=120)
    finally:
        coordinator.kill()
    assert coordinator.returncode == 0, err
    trials = trials_of(pg_market, study_name)
    states = [t.state.name for t in trials]  # type: ignore[attr-defined]
    assert "RUNNING" not in states
    killed = [t for t in trials if str(t.user_attrs.get("worker", "")).endswith(mark)]  # type: ignore[attr-defined]
    assert killed and killed[-1].state.name == "FAIL"  # type: ignore[attr-defined]
    assert 40 <= states.count("COMPLETE") + states.count("PRUNED") <= 41
    with connect(pg_market) as wh:
        row = wh.fetchone(
            "select verdict, n_failed from optimization_runs where study_name = %(s)s",
            {"s": study_name},
        )
    assert row is not None and row[0] in ("candidate", "rejected") and row[1] >= 1


def _open(url: str, results: Any) -> None:
    from runner.optimize.study import StorageConfig

    try:
        open_storage(StorageConfig(url, "postgres", 5, 15))
        results.put("ok")
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_the_storage_at_once_all_succeed(pg_url: str) -> None:
    """A coordinator and joining workers can start together on a new schema: creating Optuna's
    tables and enum types concurrently collides in the catalog, and open_storage retries."""
    import multiprocessing
    import uuid

    import psycopg

    schema = f"tb_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f'create schema "{schema}"'.encode())
    try:
        base = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}?options=-csearch_path%3D{schema}"
        spawn = multiprocessing.get_context("spawn")
        results = spawn.Queue()
        processes = [spawn.Process(target=_open, args=(url, results)) for _ in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [results.get(timeout=5) for _ in processes] == ["ok"] * 3
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute(f'drop schema if exists "{schema}" cascade'.encode())
