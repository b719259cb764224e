"""`runner backtest` as a user runs it on a CSV of GOOG's daily bars: tables, --json, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backtesting.test import GOOG
from typer.testing import CliRunner

from runner.backtest import Costs, backtest
from runner.cli import app, main
from runner.strategies import Bars, load_strategy

PARAMS = {"fast": 10, "slow": 30, "stop_loss": 0.02, "take_profit": 0.04, "allow_short": True}


def run(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["backtest", *args], terminal_width=100)
    return result.exit_code, result.output, result.exception


@pytest.fixture(scope="module")
def goog_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bars") / "goog.csv"
    GOOG.to_csv(path, index_label="ts")
    return path


def test_text_output_lists_the_trades_and_the_metrics(goog_csv: Path) -> None:
    code, out, _ = run("sma_cross", "--bars", str(goog_csv), "--params", json.dumps(PARAMS))
    assert code == 0, out
    assert "sma_cross on goog.csv: 2148 bars, 2004-08-19T00:00:00 → 2013-03-01T00:00:00" in out
    assert "stop_loss=0.02, take_profit=0.04, allow_short=True" in out
    assert "Trades (66)" in out
    first_trade = out.split("Trades (66)")[1].splitlines()[4].split()
    assert first_trade[:5] == ["2004-11-29", "2004-12-07", "short", "180.36", "173.146"]
    assert first_trade[5:] == ["+4.00%", "target"]
    for metric in ("n trades", "win rate", "total return", "sharpe", "max drawdown", "exposure"):
        assert metric in out


def test_json_lists_every_trade_and_the_metrics(goog_csv: Path) -> None:
    code, out, _ = run(
        "sma_cross",
        "--bars",
        str(goog_csv),
        "--params",
        json.dumps(PARAMS),
        "--fees-bps",
        "5",
        "--slippage-bps",
        "2",
        "--json",
    )
    assert code == 0, out
    doc = json.loads(out)
    assert doc["params"] == PARAMS
    assert doc["costs"] == {"fees_bps": 5.0, "slippage_bps": 2.0}
    assert doc["bars"]["n_bars"] == 2148
    bars = Bars.from_frame(GOOG)
    expected = backtest(load_strategy("sma_cross"), bars, PARAMS, costs=Costs(5.0, 2.0))
    assert doc["trades"] == json.loads(json.dumps(expected.trades.to_records(bars)))
    assert doc["metrics"] == pytest.approx(expected.metrics(bars))
    assert set(doc["trades"][0]) == {
        "entry_time",
        "exit_time",
        "side",
        "entry_price",
        "exit_price",
        "return",
        "exit_reason",
        "bars_held",
    }
    assert {t["exit_reason"] for t in doc["trades"]} == {"stop_loss", "take_profit"}


def test_defaults_apply_when_params_are_omitted(goog_csv: Path) -> None:
    code, out, _ = run("donchian_breakout", "--bars", str(goog_csv), "--json")
    assert code == 0, out
    assert json.loads(out)["params"]["lookback"] == 20


def test_params_that_are_not_a_json_object_are_a_usage_error(goog_csv: Path) -> None:
    code, out, _ = run("sma_cross", "--bars", str(goog_csv), "--params", "fast=10")
    assert code == 2 and "not valid JSON" in " ".join(out.split())
    code, out, _ = run("sma_cross", "--bars", str(goog_csv), "--params", "[10, 30]")
    assert code == 2 and "must be a JSON object" in " ".join(out.split())


def test_bad_strategies_params_and_files_are_one_line_errors(
    goog_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(*args: str) -> str:
        monkeypatch.setattr("sys.argv", ["runner", "backtest", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error: ") and "Traceback" not in err
        return " ".join(err.split())

    assert "sma_kross" in fails("sma_kross", "--bars", str(goog_csv))
    assert "fast must be < slow" in fails(
        "sma_cross", "--bars", str(goog_csv), "--params", '{"fast": 40}'
    )
    assert "does not exist" in fails("sma_cross", "--bars", str(tmp_path / "none.csv"))
