"""Synthetic trade and bar sets at benchmark scale, from a fixed seed.

Bars: one geometric random walk per symbol with a volatility regime switch halfway, daily, with
enough history before the first trade for the regime model (272 days). Trades: each component
trades one symbol; returns are normal with a per-component drift, so some components earn and some
lose. Built column-wise with numpy/pyarrow: no Python loop over rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FIRST_BAR = np.datetime64("2016-01-01")
FIRST_TRADE_DAY = 400  # days after FIRST_BAR
N_DAYS = 1130  # bars through early 2019
N_SYMBOLS = 50


def bars(seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    days = FIRST_BAR + np.arange(N_DAYS).astype("timedelta64[D]")
    vol = np.where(np.arange(N_DAYS) < N_DAYS // 2, 0.01, 0.02)
    rets = rng.normal(0.0003, vol, size=(N_SYMBOLS, N_DAYS))
    close = 100 * np.exp(np.cumsum(rets, axis=1))
    open_ = close * np.exp(rng.normal(0, 0.002, close.shape))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.003, close.shape)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.003, close.shape)))
    symbols = np.repeat([f"S{i:03d}" for i in range(N_SYMBOLS)], N_DAYS)
    return pa.table(
        {
            "symbol": symbols,
            "ts": np.tile(days.astype("datetime64[us]"), N_SYMBOLS),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": rng.integers(1_000, 1_000_000, close.size).astype(float),
        }
    )


def trades(n_trades: int, n_components: int = 500, seed: int = 11) -> pa.Table:
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    component = np.sort(rng.integers(0, n_components, n_trades))
    drift = rng.normal(0.0002, 0.001, n_components)[component]
    trade_days = N_DAYS - FIRST_TRADE_DAY
    day = rng.integers(FIRST_TRADE_DAY, FIRST_TRADE_DAY + trade_days, n_trades)
    entry = (FIRST_BAR + day.astype("timedelta64[D]")).astype("datetime64[s]") + rng.integers(
        0, 20 * 3600, n_trades
    ).astype("timedelta64[s]")
    exit_ = entry + rng.integers(60, 4 * 3600, n_trades).astype("timedelta64[s]")
    side_long = rng.random(n_trades) < 0.5
    entry_price = rng.uniform(20, 200, n_trades)
    gross = rng.normal(drift, 0.01)
    exit_price = entry_price * np.where(side_long, 1 + gross, 1 - gross)
    quantity = rng.integers(1, 100, n_trades).astype(float)
    ids = pc.binary_join_element_wise("t", pa.array(np.arange(n_trades)).cast(pa.string()), "")
    return pa.table(
        {
            "trade_id": ids,
            "component_id": pc.binary_join_element_wise(
                "c", pa.array(component).cast(pa.string()), ""
            ),
            "symbol": pa.array([f"S{i:03d}" for i in range(N_SYMBOLS)]).take(
                pa.array(component % N_SYMBOLS)
            ),
            "side": np.where(side_long, "long", "short"),
            "quantity": quantity,
            "entry_ts": entry.astype("datetime64[us]"),
            "exit_ts": exit_.astype("datetime64[us]"),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "fees": np.round(entry_price * quantity * 1e-4, 4),
        }
    )


def components(n_components: int = 500) -> list[tuple[str, float, int]]:
    return [(f"c{i}", 1_000_000.0, 252) for i in range(n_components)]
