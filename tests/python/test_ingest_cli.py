"""`runner ingest` as a user runs it: summary table, --json, exit codes, one-sentence errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.cli import main
from runner.config import Settings
from runner.warehouse import connect
from tests.python.ingest_helpers import TRADE_COLUMNS, count, csv_file, make_project, trade

Invoke = Callable[..., int]


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def cli(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run `runner …` in-process against the test warehouse; returns the exit code."""
    monkeypatch.setenv("TRADEBASE_PROJECT_DIR", str(make_project(tmp_path)))
    if settings.dialect == "postgres":
        assert settings.database_url is not None
        monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
        monkeypatch.setenv("TRADEBASE_SCHEMA", settings.schema)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("TRADEBASE_DUCKDB_PATH", str(settings.duckdb_path))

    def invoke(*args: str) -> int:
        monkeypatch.setattr("sys.argv", ["runner", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code

    return invoke


def test_help_shows_an_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["runner", "ingest", "--help"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Example: runner ingest trades" in out and "--json" in out


def test_rejected_rows_print_a_summary_and_exit_1(
    cli: Invoke, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two good rows and two bad ones: the table shows counts and reasons, and the exit code is 1."""
    path = csv_file(
        tmp_path, "t.csv", TRADE_COLUMNS, trade("T1"), trade("T2", quantity="x"), trade("T3"), "T4"
    )
    assert cli("ingest", "trades", str(path)) == 1
    out, err = (_flat(t) for t in capsys.readouterr())
    assert "invalid_number" in out and "malformed_row" in out
    assert "Rejected rows by reason" in out
    assert "2 of 4 rows of" in err and "Traceback" not in err
    with connect(settings) as wh:
        assert count(wh, "raw_trades") == 2


def test_json_output_for_scripts(
    cli: Invoke, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = csv_file(tmp_path, "t.csv", TRADE_COLUMNS, trade("T1"), trade("T2"))
    assert cli("ingest", "trades", str(path), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["inserted"], result["loaded"], result["rejected"], result["rows_in_file"]) == (
        2,
        2,
        0,
        2,
    )
    assert cli("ingest", "trades", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == 2


def test_missing_file_is_one_sentence_and_exit_1(
    cli: Invoke, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("ingest", "bars", str(tmp_path / "missing.csv")) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert _flat(err).startswith("Error: ") and _flat(err).endswith(
        "missing.csv does not exist; give the path of a CSV or Parquet file."
    )
