"""The bars a study runs on, read from the warehouse's staging view of raw bars."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from runner.errors import ConfigError
from runner.strategies import Bars
from runner.warehouse import Warehouse

BARS_RELATION = "stg_raw__bars"


def load_bars(
    wh: Warehouse,
    symbol: str,
    *,
    as_of: date | None,
    lookback_days: int,
) -> Bars:
    """Bars of `symbol` in the `lookback_days` calendar days up to the end of `as_of` (default:
    the last bar loaded), oldest first."""
    if not wh.table_exists(BARS_RELATION):
        raise ConfigError(
            f"{BARS_RELATION} is not in the warehouse yet: ingest bars and run `runner analyze` first."
        )
    if as_of is None:
        row = wh.fetchone(
            f"select max(bar_at) from {BARS_RELATION} where symbol = %(s)s", {"s": symbol}
        )
        if row is None or row[0] is None:
            raise ConfigError(
                f"No bars for symbol {symbol!r}: ingest them with `runner ingest bars FILE`."
            )
        end = row[0] if isinstance(row[0], datetime) else datetime.combine(row[0], time())
    else:
        end = datetime.combine(as_of, time.max)
    start = end - timedelta(days=lookback_days)
    frame = wh.fetch_df(
        "select bar_at as ts, open_price as open, high_price as high, low_price as low,"
        f" close_price as close, volume from {BARS_RELATION}"
        " where symbol = %(s)s and bar_at > %(start)s and bar_at <= %(end)s order by bar_at",
        {"s": symbol, "start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)},
    )
    if frame.empty:
        raise ConfigError(
            f"No bars for symbol {symbol!r} between {start:%Y-%m-%d} and {end:%Y-%m-%d}."
        )
    return Bars.from_frame(frame, symbol=symbol)


def load_bars_between(wh: Warehouse, symbol: str, first: str, last: str) -> Bars:
    """Exactly the bars a study was created on (first and last bar times inclusive)."""
    if not wh.table_exists(BARS_RELATION):
        raise ConfigError(f"{BARS_RELATION} is not in this warehouse: run `runner analyze` first.")
    frame = wh.fetch_df(
        "select bar_at as ts, open_price as open, high_price as high, low_price as low,"
        f" close_price as close, volume from {BARS_RELATION}"
        " where symbol = %(s)s and bar_at >= %(first)s and bar_at <= %(last)s order by bar_at",
        {"s": symbol, "first": _timestamp(first), "last": _timestamp(last)},
    )
    if frame.empty:
        raise ConfigError(f"No bars for symbol {symbol!r} between {first} and {last}.")
    return Bars.from_frame(frame, symbol=symbol)


def _timestamp(text: str) -> datetime:
    import numpy as np

    value = np.datetime64(text, "us").item()
    assert isinstance(value, datetime)
    return value
