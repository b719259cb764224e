"""Shared fixtures: a fresh warehouse of each kind per test, and the scenario builders.

PostgreSQL comes from TEST_DATABASE_URL or the local server at 127.0.0.1:5432; each fixture makes
its own schema and drops it. Under CI=true a missing PostgreSQL fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.config import Settings
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.scenarios import PROJECT_DIR, fresh_settings

__all__ = ["PROJECT_DIR", "postgres_url"]

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL


def _postgres_reachable(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = postgres_url()
    problem = _postgres_reachable(url)
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    return url


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a new, empty warehouse: a DuckDB file in tmp_path, or a fresh PostgreSQL schema."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, PROJECT_DIR, url) as settings:
        yield settings


@pytest.fixture
def warehouse(settings: Settings) -> Iterator[Warehouse]:
    """An open, migrated warehouse of each kind."""
    with connect(settings) as wh:
        migrate(wh)
        yield wh
