"""`runner backtest STRATEGY --bars FILE`: one backtest of one parameter set on a bars file.

Thin: parse the options, call runner.strategies and runner.backtest, print the trades and metrics
as rich tables or as JSON. Errors are ConfigError/StrategyError and reach the user as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console
from runner.cli.render import to_json

if TYPE_CHECKING:
    from runner.strategies import Bars

_PERCENT = {"win_rate", "total_return", "max_drawdown", "expectancy", "exposure"}
# Short labels keep an intraday trade on one 80-column line; the JSON has the full names.
_REASON_LABEL = {
    "signal": "signal",
    "stop_loss": "[red]stop[/]",
    "take_profit": "[green]target[/]",
    "end_of_data": "[dim]end[/]",
    "daily_loss_limit": "[red]day limit[/]",
}


def parse_params(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise typer.BadParameter('must be a JSON object, e.g. {"fast": 10, "slow": 30}.')
    return value


def backtest_command(
    strategy: Annotated[
        str,
        typer.Argument(
            help="A built-in (sma_cross, donchian_breakout) or an import path package.module:Class.",
            show_default=False,
        ),
    ],
    bars: Annotated[
        Path,
        typer.Option(
            "--bars",
            help="CSV or Parquet file of bars: ts (or a time index), open, high, low, close[, volume].",
            show_default=False,
        ),
    ],
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            help='Parameters as a JSON object, e.g. \'{"fast": 10, "slow": 30}\'; the rest default.',
        ),
    ] = None,
    fees_bps: Annotated[
        float, typer.Option("--fees-bps", help="Fees per fill, in basis points of notional.")
    ] = 0.0,
    slippage_bps: Annotated[
        float, typer.Option("--slippage-bps", help="Slippage per fill, in basis points of price.")
    ] = 0.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print every trade and the metrics as JSON.")
    ] = False,
    symbol: Annotated[
        str | None,
        typer.Option(
            "--symbol", help="Which symbol, when the file has a symbol column with several."
        ),
    ] = None,
) -> None:
    """Backtest one parameter set on a bars file: trades and metrics.

    Fills at the next bar's open; stop-loss/take-profit from the entry bar (docs/backtesting.md).

    Example: [bold]runner backtest sma_cross --bars goog.csv --params '{"fast": 10, "slow": 30, "stop_loss": 0.02}'[/bold]
    """
    from runner.backtest import Costs, backtest
    from runner.strategies import Bars, load_strategy, resolve_params

    given = parse_params(params)
    loaded = load_strategy(strategy)
    resolved = resolve_params(loaded, given)  # errors before the file is read
    costs = Costs(fees_bps=fees_bps, slippage_bps=slippage_bps)
    data = Bars.read(bars, symbol or "")
    result = backtest(loaded, data, resolved, costs=costs)
    trades = result.trades.to_records(data)
    metrics = result.metrics(data)
    if json_output:
        typer.echo(
            to_json(
                {
                    "strategy": strategy,
                    "params": resolved,
                    "bars": {
                        "path": str(bars),
                        "symbol": data.symbol or None,
                        "n_bars": len(data),
                        "first": _iso(data, 0),
                        "last": _iso(data, len(data) - 1),
                    },
                    "costs": {"fees_bps": fees_bps, "slippage_bps": slippage_bps},
                    "trades": trades,
                    "metrics": metrics,
                }
            )
        )
        return
    where = escape(data.symbol or bars.name)
    span = f"{_iso(data, 0)} → {_iso(data, len(data) - 1)}" if len(data) else "no bars"
    console.print(
        f"[bold]{escape(loaded.name)}[/] on {where}: {len(data)} bars, {span}", highlight=False
    )
    console.print(
        "params: " + ", ".join(f"{k}={v}" for k, v in resolved.items()) + f"; fees {fees_bps:g} "
        f"bps, slippage {slippage_bps:g} bps per fill",
        highlight=False,
    )
    console.print(_trades_table(trades) if trades else "[dim]No trades.[/]")
    console.print(_metrics_table(metrics))


def _iso(data: Bars, i: int) -> str | None:
    if i < 0:
        return None
    return str(data.time[i].astype("datetime64[s]"))


def _trades_table(trades: list[dict[str, Any]]) -> Table:
    # A light box without the outer padding so intraday trades fit in 80 columns.
    table = Table(
        title=f"Trades ({len(trades)})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="stop: stop-loss · target: take-profit · end: closed at the last close",
        caption_justify="left",
    )
    for column in ("entry time", "exit time", "side", "entry", "exit", "return", "exit by"):
        numeric = column in ("entry", "exit", "return")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    # Daily bars read best as dates; intraday ones to the minute (the JSON keeps seconds).
    daily = all(t[k].endswith("T00:00:00") for t in trades for k in ("entry_time", "exit_time"))

    def when(text: str) -> str:
        return text[:10] if daily else text[:16].replace("T", " ")

    for t in trades:
        table.add_row(
            when(t["entry_time"]),
            when(t["exit_time"]),
            t["side"],
            f"{t['entry_price']:.6g}",
            f"{t['exit_price']:.6g}",
            f"{t['return'] * 100:+.2f}%",
            _REASON_LABEL[t["exit_reason"]],
        )
    return table


def _metrics_table(metrics: dict[str, float | int | None]) -> Table:
    table = Table(title="Metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if value is None:
            text = "[dim]—[/]"
        elif name in _PERCENT:
            text = f"{float(value) * 100:.2f}%"
        elif isinstance(value, float):
            text = f"{value:.2f}"
        else:
            text = str(value)
        table.add_row(name.replace("_", " "), text)
    return table
