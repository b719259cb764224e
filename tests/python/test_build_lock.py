"""One `dbt build` of a PostgreSQL schema at a time, whoever starts it: `runner analyze` beside a
running cycle waits for the cycle's build instead of failing it (dbt rebuilds the marts through
temporary relations of fixed names)."""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import pytest

from runner import analyze
from runner.config import Settings
from runner.dbt import DbtSession, NodeResult
from runner.warehouse import connect
from tests.python.scenarios import PROJECT_DIR, fresh_settings

pytestmark = pytest.mark.postgres


def test_a_build_waits_while_another_holds_the_schemas_build_lock(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[float] = []

    def fake_build(
        s: Settings, as_of: date | None, full_refresh: bool, session: DbtSession | None
    ) -> list[NodeResult]:
        built.append(time.monotonic())
        return []

    monkeypatch.setattr(analyze, "_build", fake_build)
    with fresh_settings("postgres", tmp_path, PROJECT_DIR, pg_url) as settings:
        with analyze.one_build_at_a_time(settings):  # another process's build, in effect
            waiting = threading.Thread(target=analyze.build_analytics, args=(settings,))
            waiting.start()
            time.sleep(1.0)
            assert built == [] and waiting.is_alive()
            released = time.monotonic()
        waiting.join(timeout=30)
        assert not waiting.is_alive() and len(built) == 1 and built[0] >= released
        with connect(settings) as wh:  # the lock went with the build's connection
            assert wh.fetchone(
                "select pg_try_advisory_lock(hashtext(%(k)s))", {"k": f"tb:dbt:{settings.schema}"}
            ) == (True,)
