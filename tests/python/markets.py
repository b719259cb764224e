"""Daily bar series with known properties for the OPTIMIZE tests (seeded, so each is one fixed
market): pure noise, where no parameter set has an edge, and trending regimes, where moving-
average crosses with short windows have a real one and long windows lag it away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def bars_from_returns(returns: np.ndarray, seed: int, start: str = "2012-01-02") -> pd.DataFrame:
    """OHLCV bars on business days whose close-to-close returns are `returns`; opens gap a
    little from the previous close and highs/lows straddle open and close."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.cumprod(1.0 + returns)
    previous = np.r_[100.0, close[:-1]]
    open_ = previous * (1.0 + rng.normal(0.0, 0.002, len(returns)))
    spread = np.abs(rng.normal(0.0, 0.006, len(returns)))
    high = np.maximum(open_, close) * (1.0 + spread)
    low = np.minimum(open_, close) * (1.0 - spread)
    return pd.DataFrame(
        {
            "ts": pd.bdate_range(start, periods=len(returns)),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 10_000, len(returns)).astype(float),
        }
    )


def noise_market(days: int = 1300, seed: int = 11) -> pd.DataFrame:
    """A geometric random walk: i.i.d. returns, no drift, 1% a day. No strategy has an edge."""
    rng = np.random.default_rng(seed)
    return bars_from_returns(rng.normal(0.0, 0.01, days), seed)


def trending_market(
    days: int = 1300, seed: int = 5, regime: int = 40, drift: float = 0.004
) -> pd.DataFrame:
    """Trends that flip sign every `regime` days (±`drift` a day) under 1% noise: a fast moving-
    average cross (windows well under `regime`) rides them; a slow one (windows of hundreds of
    days) is always late. The planted edge is in the region slow <= 2 × regime."""
    rng = np.random.default_rng(seed)
    sign = np.where((np.arange(days) // regime) % 2 == 0, 1.0, -1.0)
    return bars_from_returns(sign * drift + rng.normal(0.0, 0.01, days), seed)


def write_bars_csv(frame: pd.DataFrame, symbol: str, path: Path) -> Path:
    out = frame.assign(symbol=symbol)[["symbol", "ts", "open", "high", "low", "close", "volume"]]
    out.assign(ts=out["ts"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path
