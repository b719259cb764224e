"""Configuration, redaction, migrations and the CLI's error contract."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.config import PostgresParams, Settings
from runner.dbt import dbt_env
from runner.errors import ConfigError
from runner.redact import redact
from runner.warehouse import connect
from runner.warehouse.migrations import LATEST, current_version, migrate
from tests.python.conftest import PROJECT_DIR


def test_no_database_url_means_duckdb_file_and_main_schema(tmp_path: Path) -> None:
    s = Settings(duckdb_path=tmp_path / "x.duckdb", database_url=None)
    assert s.dialect == "duckdb" and s.schema == "main"
    assert s.duckdb_file == (tmp_path / "x.duckdb").resolve()


def test_database_url_selects_postgres_and_decodes_the_password() -> None:
    s = Settings(database_url="postgresql://alice:p%40ss%3Aword@db.example:6543/prod")
    assert s.dialect == "postgres" and s.schema == "public"
    pg = s.postgres
    assert (pg.host, pg.port, pg.user, pg.password, pg.dbname) == (
        "db.example", 6543, "alice", "p@ss:word", "prod",
    )  # fmt: skip
    assert "p@ss" not in repr(pg) and "p@ss" not in repr(s)


def test_a_url_that_is_not_postgres_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="postgresql://user:password@host:5432/dbname"):
        PostgresParams.from_url("mysql://u@h/db")


def test_dbt_gets_the_password_only_through_a_secret_variable() -> None:
    s = Settings(database_url="postgresql://u:s3cret@h:5432/d", schema_name="x")
    env = dbt_env(s)
    assert env["DBT_ENV_SECRET_PG_PASSWORD"] == "s3cret"
    assert env["TRADEBASE_SCHEMA"] == "x"


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("could not connect postgresql://bob:hunter2@10.0.0.1/db", "hunter2"),
        ("POST https://discord.com/api/webhooks/123/AbC-tok_en.x failed", "AbC-tok_en.x"),
        ("password=hunter2 host=x", "hunter2"),
    ],
)
def test_secrets_are_redacted_from_messages(text: str, leak: str) -> None:
    out = redact(text)
    assert leak not in out and "***" in out


def test_literal_secrets_are_redacted_too() -> None:
    assert redact("auth failed for pw9", ("pw9",)) == "auth failed for ***"


def test_migrations_are_idempotent(settings: Settings) -> None:
    with connect(settings) as wh:
        assert migrate(wh) == list(range(1, LATEST + 1))
        assert migrate(wh) == []
        assert current_version(wh) == LATEST
        (count,) = wh.fetchone("select count(*) from schema_migrations") or (0,)
        assert count == LATEST


@pytest.mark.postgres
def test_two_migrations_at_once_on_postgres_apply_each_version_once(pg_url: str) -> None:
    """Two runners start on an empty schema at the same instant: one applies, one waits and skips."""
    import uuid

    from tests.python.scenarios import drop_pg_schema

    settings = Settings(database_url=pg_url, schema_name=f"tb_test_{uuid.uuid4().hex[:10]}")
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            with connect(settings) as wh:
                barrier.wait()
                results.append(migrate(wh))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(results, key=len) == [[], list(range(1, LATEST + 1))]
    finally:
        drop_pg_schema(pg_url, settings.schema)


COMMANDS = (
    "init",
    "ingest",
    "analyze",
    "backtest",
    "optimize",
    "score",
    "deploy",
    "rollback",
    "route",
    "allocation",
    "simulate",
    "cycle",
    "schedule",
    "notify",
    "status",
    "trace",
    "report",
    "demo",
)


def test_help_lists_every_command_with_one_line() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for command in COMMANDS:
        (line,) = [x for x in lines if x.strip("│ ").startswith(command + " ")]
        following = lines[lines.index(line) + 1].strip("│ ")
        assert following.split(" ")[0] in (*COMMANDS, "╰──") or following.startswith("╰"), line


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


def test_the_configuration_page_lists_every_setting_as_the_code_declares_it() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "settings_reference.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert all(f.description for f in Settings.model_fields.values())


def test_a_bad_database_url_is_one_sentence_without_traceback_or_password(tmp_path: Path) -> None:
    """The installed console script: exit 1, one clear message, the password masked."""
    env = {
        "DATABASE_URL": "postgresql://u:topsecret@127.0.0.1:1/nodb",
        "PATH": str(Path(sys.executable).parent),
        "TRADEBASE_PROJECT_DIR": str(PROJECT_DIR),
    }
    runner = Path(sys.executable).parent / "runner"
    proc = subprocess.run(
        [str(runner), "init"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "topsecret" not in proc.stderr + proc.stdout
    assert "check DATABASE_URL" in " ".join(proc.stderr.split())


def test_init_twice_on_duckdb_reports_up_to_date(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    runner = CliRunner()
    first = runner.invoke(app, ["--duckdb-path", str(db), "init"], env={"DATABASE_URL": ""})
    second = runner.invoke(app, ["--duckdb-path", str(db), "init"], env={"DATABASE_URL": ""})
    assert first.exit_code == 0 and "Applied migrations" in first.output
    assert second.exit_code == 0 and "up to date" in " ".join(second.output.split())


def test_two_runners_at_once_on_one_duckdb_file_both_succeed(tmp_path: Path) -> None:
    """DuckDB lets one process hold the file: the second `runner init` waits for it, then finds
    the schema up to date; neither fails and each migration is recorded once."""
    db = tmp_path / "shared.duckdb"
    runner = Path(sys.executable).parent / "runner"
    env = {"PATH": str(Path(sys.executable).parent), "TRADEBASE_PROJECT_DIR": str(PROJECT_DIR)}
    procs = [
        subprocess.Popen(
            [str(runner), "--duckdb-path", str(db), "init"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with connect(Settings(duckdb_path=db, database_url=None)) as wh:
        versions = wh.fetchall("select version from schema_migrations order by version")
        assert versions == [(v,) for v in range(1, LATEST + 1)]
