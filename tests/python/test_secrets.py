"""The database password and the Discord webhook URL (and its token alone) never leave the
process: full `runner cycle` runs on DuckDB and PostgreSQL with deliveries failing every way
(500s, a refused token, garbage answers, Discord down), a warehouse URL pointing at a closed
port and a PostgreSQL server that goes away mid-cycle; then every file written under the test's
directory (cycle logs, dbt logs and artifacts, the HTML report), every column of every table in
the schema (events, audit, outbox, queue...), stdout, stderr and every log record are searched.

The local PostgreSQL server trusts 127.0.0.1, so the password in DATABASE_URL is sent and ignored.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from runner.audit import AuditTrail, Event
from runner.cli import main
from runner.config import Settings
from runner.cycle import run_cycle
from runner.errors import WarehouseUnavailable
from runner.warehouse import connect
from runner.warehouse.migrations import migrate
from tests.python.fake_discord import FakeDiscord
from tests.python.scenarios import (
    PROJECT_DIR,
    fresh_settings,
    momentum_world,
    runner_environment,
)

pytestmark = pytest.mark.integration

PASSWORD = "S3cretPw-XYZ"
TOKEN = "WHtok3n-S3CRET_abcdefghijklmnopqrstuvwxyz0123456789"
TASKS = "task_id,task_type,component_id,frequency,priority,config\n"  # OPTIMIZE: none due


def with_password(url: str, port: int | None = None) -> str:
    """`url` with PASSWORD as its password (and another port, when given)."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{port or parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{PASSWORD}@{host}"))


@dataclass
class World:
    settings: Settings
    root: Path
    env: dict[str, str]
    discord: FakeDiscord

    @property
    def secrets(self) -> list[str]:
        # The configured token, its URL, and the token of a wrong URL tried once (401).
        found = [TOKEN, TOKEN[::-1], self.discord.url, self.discord.url.replace("http://", "")]
        if self.settings.database_url is not None:
            found += [PASSWORD, self.settings.database_url.get_secret_value()]
        return found


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The cycle test's world (scenarios.py: a momentum component with production trades and a
    candidate), its warehouse URL carrying the password, and a local Discord whose token is the
    secret."""
    root = tmp_path_factory.mktemp(f"secrets_{request.param}")
    url = with_password(request.getfixturevalue("pg_url")) if request.param == "postgres" else None
    discord = FakeDiscord(token=TOKEN).start()
    try:
        with momentum_world(request.param, root, url, TASKS) as settings:
            env = {
                **runner_environment(settings),
                "TRADEBASE_SCHEMA": settings.schema,
                "DISCORD_WEBHOOK_URL": discord.url,
                "TRADEBASE_NOTIFY_TIMEOUT_SECONDS": "0.5",
                "TRADEBASE_NOTIFY_BUDGET_SECONDS": "3",
                "TRADEBASE_NOTIFY_BACKOFF_SECONDS": "0.05",
                "TRADEBASE_NOTIFY_MAX_ATTEMPTS": "2",
            }
            yield World(settings, root, env, discord)
    finally:
        discord.stop()


@dataclass
class Seen:
    """Everything a run let out: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


def invoke(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secrets: list[str],
    *args: str,
) -> Seen:
    """`runner ARGS` in-process through `main()` (its error mapping included), in the
    environment `monkeypatch` set; stdout and stderr are searched for `secrets`."""
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["runner", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    assert_clean(secrets, f"output of runner {' '.join(args)}", out + err)
    return Seen(code, out, err)


@pytest.fixture
def runner(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Any]:
    """`runner ARGS` against the world, every log record at DEBUG captured and searched after
    the test; `env=` changes variables for one run."""
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.DEBUG)

    def run(*args: str, env: dict[str, str] | None = None) -> Seen:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        try:
            return invoke(monkeypatch, capsys, world.secrets, *args)
        finally:
            for key in env or {}:
                monkeypatch.setenv(key, world.env[key])

    yield run
    assert_clean(world.secrets, "log records", caplog.text)


def assert_clean(secrets: list[str], where: str, text: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret[:12]}… leaked in {where}"


def assert_nothing_leaked(secrets: list[str], root: Path, settings: Settings) -> int:
    """Search every file under `root` (binary ones too: their text parts) and every row of every
    table of the warehouse; returns the number of files read."""
    files = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            files += 1
            text = path.read_bytes().decode(errors="replace")
            assert_clean(secrets, str(path.relative_to(root)), text)
    with connect(settings) as wh:
        tables = [
            str(r[0])
            for r in wh.fetchall(
                "select table_name from information_schema.tables where table_schema = %(s)s",
                {"s": wh.schema},
            )
        ]
        for table in tables:
            rows = wh.fetchall(f'select * from "{table}"')  # noqa: S608 - names from the catalog
            assert_clean(secrets, f"table {table}", repr(rows))
    assert {"improvement_events", "notification_outbox"} <= set(tables)
    return files


def leaky_events(world: World) -> None:
    """Events whose text quotes both secrets, as an error message from a library might."""
    dsn = world.settings.database_url
    where = dsn.get_secret_value() if dsn is not None else str(world.settings.duckdb_file)
    known = world.settings.model_copy(update={"discord_webhook_url": SecretStr(world.discord.url)})
    with connect(world.settings) as wh, wh.transaction():
        AuditTrail(wh, secrets=known.secrets()).record(
            [
                Event(
                    "circuit_breaker_opened",
                    f"Posting to {world.discord.url} failed; warehouse {where}",
                    {"url": world.discord.url, "dsn": where, "token": TOKEN},
                    component_id="mom",
                )
            ]
        )


def test_a_full_cycle_with_failing_deliveries_leaks_no_secret(
    world: World, runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """ANALYZE → IDENTIFY → OPTIMIZE → DEPLOY with Discord answering 500s, then the outbox flushed
    into every other failure (a refused token, garbage answers, Discord down); the report and
    the status are read as a user would."""
    leaky_events(world)
    world.discord.script("500", "500")  # the cycle's one delivery run: 2 attempts, both 500
    first = runner("cycle", "--budget", "900")
    assert first.code == 0, first.out + first.err
    assert "Log:" in first.out
    assert [seen.status for seen in world.discord.seen] == [500, 500]

    wrong = world.discord.url.replace(TOKEN, TOKEN[::-1])  # Discord answers 401 to it
    refused = runner("notify", "flush", "--json", env={"DISCORD_WEBHOOK_URL": wrong})
    assert refused.code == 1 and TOKEN[::-1] not in refused.out + refused.err

    with world.discord.down():
        assert runner("notify", "flush", "--json").code == 1
        assert runner("notify", "test").code == 1
    world.discord.script(*["garbage"] * 40)
    assert runner("notify", "flush").code in (0, 1)

    report = runner("report", "--json")
    assert report.code == 0 and Path(json.loads(report.out)["html"]).is_file()
    assert runner("status", "--json").code == 0
    logs = list((world.root / "logs").glob("improvement_cycle_*.log"))
    assert len(logs) == 1
    assert assert_nothing_leaked(world.secrets, world.root, world.settings) > len(logs)
    assert "HTTP Request: POST ***?wait=true" in caplog.text  # httpx logged each, redacted
    assert world.discord.accepted  # the garbage answers came after posting
    payloads = json.dumps([a.payload for a in world.discord.accepted])
    assert_clean(world.secrets, "the messages Discord received", payloads)
    assert_clean(world.secrets, "repr(Settings())", repr(Settings()))


@pytest.fixture
def pg_world(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, list[str]]]:
    """A fresh PostgreSQL schema reached with the password, no components, no declared tasks."""
    tasks = tmp_path / "tasks.csv"
    tasks.write_text("task_id,task_type,component_id,frequency,priority,config\n")
    url = with_password(pg_url)
    with fresh_settings("postgres", tmp_path, PROJECT_DIR, url) as base:
        settings = base.model_copy(
            update={"schedule_tasks_file": tasks, "log_dir": tmp_path / "logs"}
        )
        for key, value in {
            "TRADEBASE_PROJECT_DIR": str(PROJECT_DIR),
            "TRADEBASE_ARTIFACT_DIR": str(settings.artifacts),
            "TRADEBASE_DBT_ARTIFACTS_DIR": str(tmp_path),
            "TRADEBASE_SCHEDULE_TASKS_FILE": str(tasks),
            "TRADEBASE_LOG_DIR": str(tmp_path / "logs"),
            "TRADEBASE_SCHEMA": settings.schema,
            "DATABASE_URL": url,
        }.items():
            monkeypatch.setenv(key, value)
        with connect(settings) as wh:
            migrate(wh)
        yield settings, [PASSWORD, url]


def test_an_unreachable_warehouse_leaks_no_password(
    pg_world: tuple[Settings, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DATABASE_URL at a closed port, password in it: one sentence, exit 1, nothing leaked."""
    settings, secrets = pg_world
    assert settings.database_url is not None
    closed = with_password(settings.database_url.get_secret_value(), port=_closed_port())
    monkeypatch.setenv("DATABASE_URL", closed)
    caplog.set_level(logging.DEBUG)
    secrets = [*secrets, closed]
    for args in (("cycle",), ("status",), ("ingest", "bars", str(tmp_path / "none.csv"))):
        seen = invoke(monkeypatch, capsys, secrets, *args)
        assert seen.code == 1 and seen.err.startswith("Error: "), seen.err
    assert "Cannot connect to PostgreSQL at 127.0.0.1" in seen.err or "does not exist" in seen.err
    assert_clean(secrets, "log records", caplog.text)
    assert assert_nothing_leaked(secrets, tmp_path, settings) >= 1  # the cycle's log


def test_a_warehouse_that_goes_away_mid_cycle_leaks_no_password(
    pg_world: tuple[Settings, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warehouse (reached through a local TCP relay) vanishes after OPTIMIZE: the cycle
    stops with WarehouseUnavailable, and neither its message nor anything written leaks."""
    settings, secrets = pg_world
    assert settings.database_url is not None
    target = urlsplit(settings.database_url.get_secret_value())
    relay = Relay(target.hostname or "127.0.0.1", target.port or 5432)
    url = with_password(settings.database_url.get_secret_value(), port=relay.port)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(WarehouseUnavailable) as gone:
            run_cycle(
                settings.model_copy(update={"database_url": SecretStr(url)}),
                steps=("optimize", "deploy"),
                on_step=lambda outcome: relay.close() if outcome.name == "optimize" else None,
            )
    finally:
        relay.close()
    message = str(gone.value)
    assert "Cannot connect to PostgreSQL" in message
    secrets = [*secrets, url]
    assert_clean(secrets, "the exception and log records", message + caplog.text)
    logs = list((tmp_path / "logs").glob("improvement_cycle_*.log"))
    assert len(logs) == 1 and "optimize" in logs[0].read_text()
    assert_nothing_leaked(secrets, tmp_path, settings)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


class Relay:
    """A TCP relay on 127.0.0.1 to the PostgreSQL server; `close()` drops every connection and
    stops listening, as a server that goes away does."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
