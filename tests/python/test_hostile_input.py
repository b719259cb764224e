"""Hostile text in every string a user controls, through the real CLI on DuckDB and PostgreSQL:
quotes, SQL, placeholders ($1, %s, %(x)s), backslashes, rich markup, control characters,
newlines, bidirectional overrides and emoji, and a 10,000-character string.

What must hold: nothing executes (every table is still there, counts change only as the command
says), no traceback is printed (exit 0, or 1 with one `Error:` sentence), and a value is stored
verbatim where it is legitimately accepted, or refused with a message where it is not.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.config import Settings
from runner.deploy import state
from runner.optimize.versions import Component, add_candidate, seed_versions
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.ingest_helpers import BAR_COLUMNS, PREDICTION_COLUMNS, TRADE_COLUMNS
from tests.python.scenarios import copy_dbt_project, fresh_settings

HOSTILE: dict[str, str] = {
    "quote": "O'Brien",
    "double_quote": 'say "hi", then leave',
    "sql": "'; DROP TABLE raw_trades; --",
    "sql_paren": "x'); drop table improvement_events cascade; --",
    "dollar": "$1 $$ $tag$",
    "percent": "%s %(name)s %%",
    "backslash": "C:\\new\\table\\",
    "markup": "[bold]x[/] [/] [red]",
    "html": "<script>alert('x')</script> &amp; <b>",
    "control": "a\tb\x07c\x1b[31md\x7f",
    "newline": "line1\nline2\r\nline3",
    "unicode": "\u202eevil\u202c \u200f📈🚀 ünï",
    "long": "L" * 10_000,
}
NUL = "nul\x00byte"
# As command-line arguments: every short hostile value in one string (one invocation tries them
# all; a CLI argument cannot hold NUL), and the 10,000-character one.
ARGS = {
    "all": " ".join(v for k, v in HOSTILE.items() if k != "long"),
    "long": HOSTILE["long"],
}
# Every engine table a DROP would aim at; each must still be there after every command.
TABLES = (
    "raw_trades",
    "raw_predictions",
    "raw_bars",
    "ingest_runs",
    "ingest_rejects",
    "improvement_events",
    "optimization_queue",
    "deployments",
    "strategy_versions",
    "notification_outbox",
)
DEPLOYED = HOSTILE["sql"]  # the component with a deployment to roll back


@dataclass
class World:
    settings: Settings
    root: Path
    env: dict[str, str]


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A warehouse whose components seed declares every hostile value as a component id, and
    one deployment (of the component named like an SQL injection) waiting to be rolled back."""
    root = tmp_path_factory.mktemp(f"hostile_{request.param}")
    components = [
        {"component_id": v, "initial_capital": 100000, "periods_per_year": 252,
         "strategy": "sma_cross", "description": v}
        for v in HOSTILE.values()
    ]  # fmt: skip
    project = copy_dbt_project(root / "project", components)
    tasks = root / "tasks.csv"
    tasks.write_text("task_id,task_type,component_id,frequency,priority,config\n")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, root, project, url) as settings:
        env = {
            "TRADEBASE_PROJECT_DIR": str(project),
            "TRADEBASE_ARTIFACT_DIR": str(root / "artifacts"),
            "TRADEBASE_DBT_ARTIFACTS_DIR": str(root),
            "TRADEBASE_LOG_DIR": str(root / "logs"),
            "TRADEBASE_SCHEDULE_TASKS_FILE": str(tasks),
            "DATABASE_URL": "",
            "TRADEBASE_DUCKDB_PATH": str(settings.duckdb_file),
        }
        if settings.database_url is not None:
            env["DATABASE_URL"] = settings.database_url.get_secret_value()
            env["TRADEBASE_SCHEMA"] = settings.schema
        with connect(settings) as wh:
            migrate(wh)
            _deployment_to_roll_back(wh)
        yield World(settings, root, env)


def _deployment_to_roll_back(wh: Warehouse) -> None:
    now = datetime.now(UTC)
    with wh.transaction():
        seed_versions(wh, [Component(DEPLOYED, "sma_cross", "SPX", {}, 252)])
        add_candidate(wh, DEPLOYED, "sma_cross", {"fast": 5, "slow": 20}, 1, None, "")
        state.insert_deployment(
            wh,
            state.Deployment(
                deployment_id="dep_hostile",
                component_id=DEPLOYED,
                version=2,
                environment="staging",
                status="smoke_testing",
                traffic_share=0.0,
                test_id=None,
                previous_version=1,
                open_position_policy="finish",
                created_at=now,
                updated_at=now,
                ended_at=None,
                reason="",
            ),
        )


@pytest.fixture
def cli(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    yield Cli(world, monkeypatch, capsys)


class Cli:
    """`runner ARGS` in-process through `main()` (its error mapping included), checked for a
    clean outcome and intact tables."""

    def __init__(
        self, world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.world, self.monkeypatch, self.capsys = world, monkeypatch, capsys

    def __call__(self, *args: str, changes: dict[str, int] | None = None) -> tuple[int, str, str]:
        before = self.counts()
        self.capsys.readouterr()
        self.monkeypatch.setattr("sys.argv", ["runner", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        shown = f"runner {args!r} exited {code}:\n{out[-3000:]}\n{err[-3000:]}"
        assert "Traceback" not in out + err, shown
        if code == 1 and err:  # a handled failure: one `Error:` sentence
            assert err.startswith("Error: ") and err.count("Error:") == 1, shown
        elif code == 2:  # a usage error (click's own), never a crash
            assert "Usage:" in err and "Unexpected error" not in err, shown
        else:
            assert code in (0, 1), shown
        after = self.counts()
        expected = {t: before[t] + (changes or {}).get(t, 0) for t in TABLES}
        if changes is not None:
            assert after == expected, shown
        return code, out, err

    def counts(self) -> dict[str, int]:
        with connect(self.world.settings) as wh:
            present = {
                str(r[0])
                for r in wh.fetchall(
                    "select table_name from information_schema.tables where table_schema = %(s)s",
                    {"s": wh.schema},
                )
            }
            assert set(TABLES) <= present, f"tables gone: {set(TABLES) - present}"
            out = {}
            for table in TABLES:
                row = wh.fetchone(f"select count(*) from {table}")  # noqa: S608 - fixed names
                out[table] = int(row[0]) if row else -1
            return out


def fetch(world: World, sql: str, params: dict[str, object] | None = None) -> list[tuple[Any, ...]]:
    with connect(world.settings) as wh:
        return wh.fetchall(sql, params)


ARG_IDS = list(ARGS)


def filename(value: str, limit: int = 200) -> str:
    """`value` as one file name: no slash, at most `limit` bytes (the file system allows 255)."""
    return value.replace("/", "_").encode()[:limit].decode(errors="ignore")


# -- files: hostile values in every text field, stored verbatim -------------------------------
def _write(path: Path, header: str, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def test_hostile_text_in_every_field_of_an_ingested_file_is_stored_verbatim(
    cli: Cli, world: World
) -> None:
    """One trade, prediction and bar per hostile value, that value in every text field: each
    loads with the value intact; the row with a NUL byte is rejected (exit 1), nothing else."""
    values = [*HOSTILE.values(), NUL]
    trades = [
        [v, v if v != NUL else HOSTILE["quote"], v, "long", "1", "2024-01-02", "2024-01-03",
         "10", "11", "0", v, v, v]
        for v in values
    ]  # fmt: skip
    header = TRADE_COLUMNS + ",strategy_version,variant,model_version"
    path = _write(world.root / "hostile_trades.csv", header, trades)
    code, _, err = cli(
        "ingest",
        "trades",
        str(path),
        changes={"raw_trades": len(HOSTILE), "ingest_runs": 1, "ingest_rejects": 1},
    )
    assert code == 1 and f"1 of {len(values)} rows" in err
    stored = fetch(
        world,
        "select trade_id, component_id, symbol, strategy_version, variant, model_version"
        " from raw_trades",
    )
    assert sorted(stored) == sorted((v,) * 6 for v in HOSTILE.values())
    [(reason, raw)] = fetch(world, "select reason, raw_row from ingest_rejects")
    assert reason == "invalid_encoding" and "nulbyte" in raw

    predictions = [[v, v, v, v, "2024-01-02T10:00:00Z", "1", "0.7", ""] for v in HOSTILE.values()]
    path = _write(world.root / "hostile_predictions.csv", PREDICTION_COLUMNS, predictions)
    assert (
        cli(
            "ingest",
            "predictions",
            str(path),
            changes={"raw_predictions": len(HOSTILE), "ingest_runs": 1},
        )[0]
        == 0
    )
    stored = fetch(
        world, "select prediction_id, model_id, model_version, symbol from raw_predictions"
    )
    assert sorted(stored) == sorted((v,) * 4 for v in HOSTILE.values())

    bars = [[v, "2024-01-02", "10", "11", "9", "10.5", "100"] for v in HOSTILE.values()]
    path = _write(world.root / "hostile_bars.csv", BAR_COLUMNS, bars)
    assert (
        cli("ingest", "bars", str(path), changes={"raw_bars": len(HOSTILE), "ingest_runs": 1})[0]
        == 0
    )
    assert sorted(r[0] for r in fetch(world, "select symbol from raw_bars")) == sorted(
        HOSTILE.values()
    )


@pytest.mark.parametrize("name", ["quote", "markup", "all"])
def test_a_hostile_file_name_is_read_and_recorded_verbatim(
    cli: Cli, world: World, name: str
) -> None:
    path = world.root / f"{filename((HOSTILE | ARGS)[name])}.csv"
    _write(path, TRADE_COLUMNS, [[f"F_{name}", "O'Brien", "SPY", "long", "1", "2024-01-02",
                                  "2024-01-03", "10", "11", "0"]])  # fmt: skip
    code, out, _ = cli(
        "ingest", "trades", str(path), "--json", changes={"raw_trades": 1, "ingest_runs": 1}
    )
    assert code == 0 and json.loads(out)["source_file"] == str(path)
    recorded = fetch(
        world, "select source_file from ingest_runs where source_file = %(p)s", {"p": str(path)}
    )
    assert recorded == [(str(path),)]


def test_an_impossible_path_is_one_sentence(cli: Cli, world: World) -> None:
    for path in (world.root / HOSTILE["long"], world.root / "missing" / HOSTILE["markup"]):
        code, _, err = cli("ingest", "bars", str(path), changes={})
        assert code == 1 and "Error:" in err


# -- component ids, unit keys, task and deployment ids given as arguments ----------------------
@pytest.mark.parametrize("name", ARG_IDS)
def test_hostile_component_ids_are_data_in_every_command_that_takes_one(
    cli: Cli, world: World, name: str
) -> None:
    value = ARGS[name]
    for args in (
        ("status", "--component", value),
        ("status", "--component", value, "--json"),
        ("trace", value),
        ("deploy", "--component", value, "--dry-run"),
        ("schedule", "list", "--component", value),
        ("route", value, value),
        ("optimize", "--component", value),
        ("cycle", "--steps", value),
    ):
        cli(*args, changes={})
    code, out, _ = cli("route", value, HOSTILE["sql_paren"], "--record", "--json", changes={})
    if code == 0:
        assert json.loads(out)["component_id"] == value


def test_schedule_add_stores_a_hostile_component_and_config_verbatim(
    cli: Cli, world: World
) -> None:
    """Each hostile value as the component and inside the JSON config: stored as given, then
    the task is disabled and enabled again by its (hostile) id."""
    for name, value in ARGS.items():
        # json.dumps writes the NUL as \u0000: an argument a shell can pass.
        config = {"note": value, "params": [value], name: [value, {"nested": value}], "nul": NUL}
        code, out, _ = cli(
            "schedule", "add", "--type", "risk_adjustment", "--component", value,
            "--frequency", "daily", "--config", json.dumps(config), "--json",
            changes={"optimization_queue": 1, "improvement_events": 1},
        )  # fmt: skip
        assert code == 0
        task = json.loads(out)
        assert task["component_id"] == value and task["config"] == config
        [(component, stored)] = fetch(
            world,
            "select component_id, config from optimization_queue where task_id = %(t)s",
            {"t": task["task_id"]},
        )
        assert component == value
        assert (json.loads(stored) if isinstance(stored, str) else stored) == config
        for verb in ("disable", "enable"):
            code, out, _ = cli("schedule", verb, task["task_id"], "--json")
            assert code == 0 and json.loads(out)["task_id"] == task["task_id"]
    assert fetch(world, "select count(*) from optimization_queue where component_id = %(c)s",
                 {"c": HOSTILE["long"]}) == [(1,)]  # fmt: skip


@pytest.mark.parametrize("name", ARG_IDS)
def test_hostile_values_where_a_name_or_number_is_expected_are_refused_with_a_message(
    cli: Cli, name: str
) -> None:
    """A task type, frequency, config or priority, an unknown task or deployment id: refused
    with exit 1 and a sentence quoting what was given (2 for click's own usage error)."""
    value = ARGS[name]
    quoted = "Brien" if name == "all" else "LLLLLLLL"
    base = {"--type": "retrain", "--frequency": "daily", "--config": "{}", "--priority": "1"}
    for option, code_wanted in (
        ("--type", 1),
        ("--frequency", 1),
        ("--config", 1),
        ("--priority", 2),
    ):
        args = [x for pair in (base | {option: value}).items() for x in pair]
        code, _, err = cli("schedule", "add", "--component", "O'Brien", *args, changes={})
        assert code == code_wanted, (option, err[-500:])
        if code == 1:
            assert quoted in err or option == "--config", (option, err[-500:])
    for args in (
        ("schedule", "enable", value),
        ("schedule", "disable", value),
        ("rollback", value, "--reason", value),
        ("trace", value),
    ):
        code, _, err = cli(*args, changes={})
        assert code == 1 and quoted in err, (args[:2], err[-500:])


def test_a_hostile_rollback_reason_is_recorded_verbatim(cli: Cli, world: World) -> None:
    reason = " | ".join(HOSTILE.values())
    code, out, _ = cli(
        "rollback", "dep_hostile", "--reason", reason, "--json",
        changes={"improvement_events": 1, "notification_outbox": 1},
    )  # fmt: skip
    assert code == 0 and json.loads(out)["rolled_back"]
    assert fetch(
        world, "select component_id, reason from deployments where deployment_id = 'dep_hostile'"
    ) == [(DEPLOYED, reason)]
    [(why,)] = fetch(
        world, "select trigger_reason from improvement_events where deployment_id = 'dep_hostile'"
    )
    assert reason in why


# -- the declared tasks seed and the paths of backtest and report -----------------------------
def test_hostile_values_in_the_declared_tasks_seed_are_synced_verbatim(
    cli: Cli, world: World
) -> None:
    path = Path(world.env["TRADEBASE_SCHEDULE_TASKS_FILE"])
    rows = [
        [f"seed_{name}", "hyperparameter", value, "weekly", "2", json.dumps({"note": value})]
        for name, value in HOSTILE.items()
    ]
    _write(path, "task_id,task_type,component_id,frequency,priority,config", rows)
    code, out, _ = cli("schedule", "list", "--json")
    assert code == 0
    tasks = {t["task_id"]: t for t in json.loads(out)["tasks"]}
    for name, value in HOSTILE.items():
        assert tasks[f"seed_{name}"]["component_id"] == value
        assert tasks[f"seed_{name}"]["config"] == {"note": value}
    path.write_text("task_id,task_type,component_id,frequency,priority,config\n")


def test_backtest_and_report_take_hostile_paths(cli: Cli, world: World) -> None:
    weird = filename(ARGS["all"], 120)
    directory = world.root / weird
    directory.mkdir(exist_ok=True)
    bars = directory / f"{filename(ARGS['all'], 100)}.csv"
    rows = [[f"2024-01-{d:02d}", str(100 + d), str(101 + d), str(99 + d), str(100.5 + d)]
            for d in range(1, 29)]  # fmt: skip
    _write(bars, "ts,open,high,low,close", rows)
    code, out, _ = cli(
        "backtest", "sma_cross", "--bars", str(bars), "--params", '{"fast": 2, "slow": 5}', "--json"
    )
    assert code == 0 and json.loads(out)["bars"]["path"] == str(bars)
    code, _, err = cli(
        "backtest",
        "sma_cross",
        "--bars",
        str(bars),
        "--params",
        json.dumps({"fast": HOSTILE["sql"]}),
    )
    assert code in (1, 2) and "Error" in err
    code, _, _ = cli("backtest", "sma_cross", "--bars", str(bars), "--symbol", HOSTILE["markup"])
    out_dir = directory / "report"
    component = ARGS["all"]
    code, out, _ = cli("report", "--out", str(out_dir), "--component", component, "--json")
    assert code == 0
    html = Path(json.loads(out)["html"])
    assert html == out_dir / "report.html" and html.is_file()
    page = html.read_text(encoding="utf-8")
    assert "<script>alert(" not in page  # the component, if shown, is escaped
