"""Regenerate the bundled sample data in runner/sample_data/ (deterministic; run from the repo root).

Prices are real: S&P 500 and NASDAQ Composite daily bars 1999-2018 from the `arch` package.
Each component day-trades both indices; trade outcomes are those real open-to-close moves; only the direction calls are generated, from
a fixed seed, with a hit rate per component. `trend_spx` loses its edge in the last four weeks
(the hit rate drops from 57% to 35%), which the analysis must show. Usage:

    .venv/bin/python scripts/make_sample_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from arch.data import nasdaq, sp500

OUT = Path(__file__).resolve().parents[1] / "runner" / "sample_data"
START, DEGRADE_FROM = pd.Timestamp("2017-01-03"), pd.Timestamp("2018-12-03")
FEE_BPS = 1.0
# Regular session of US equities in UTC (EST): 09:30-16:00 ET.
OPEN_UTC, CLOSE_UTC = pd.Timedelta(hours=14, minutes=30), pd.Timedelta(hours=21)


def bars_of(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    out = frame[["Open", "High", "Low", "Close", "Volume"]].copy()
    out.columns = ["open", "high", "low", "close", "volume"]
    # The index files round high/low independently of open/close; keep bars internally consistent.
    out["high"] = out[["open", "high", "close"]].max(axis=1)
    out["low"] = out[["open", "low", "close"]].min(axis=1)
    out.insert(0, "ts", out.index.strftime("%Y-%m-%d"))
    out.insert(0, "symbol", symbol)
    return out.round(4)


def trades_of(
    bars: pd.DataFrame,
    component: str,
    capital: float,
    hit_rate: float,
    degraded_hit_rate: float,
    start: pd.Timestamp,
    rng: np.random.Generator,
) -> pd.DataFrame:
    days = bars[bars.index >= start]
    move = np.sign(days["close"] - days["open"]).replace(0, 1).to_numpy()
    p = np.where(days.index >= DEGRADE_FROM, degraded_hit_rate, hit_rate)
    hit = rng.random(len(days)) < p
    direction = np.where(hit, move, -move)
    quantity = np.round(capital * 0.5 / days["open"].to_numpy(), 2)
    notional = quantity * days["open"].to_numpy()
    return pd.DataFrame(
        {
            "trade_id": [
                f"{component}-{s}-{d:%Y%m%d}"
                for s, d in zip(days["symbol"], days.index, strict=True)
            ],
            "component_id": component,
            "symbol": days["symbol"].to_numpy(),
            "side": np.where(direction > 0, "long", "short"),
            "quantity": quantity,
            "entry_ts": [(d + OPEN_UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for d in days.index],
            "exit_ts": [(d + CLOSE_UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for d in days.index],
            "entry_price": days["open"].to_numpy(),
            "exit_price": days["close"].to_numpy(),
            "fees": np.round(notional * FEE_BPS / 1e4, 2),
            "strategy_version": "1",
        }
    )


def predictions_of(bars: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    days = bars[bars.index >= START]
    actual = (days["close"] > days["open"]).astype(int).to_numpy()
    p_correct = np.where(days.index >= DEGRADE_FROM, 0.42, 0.62)
    correct = rng.random(len(days)) < p_correct
    label = np.where(correct, actual, 1 - actual)
    confidence = rng.uniform(0.5, 0.85, len(days))
    proba = np.where(label == 1, confidence, 1 - confidence)
    return pd.DataFrame(
        {
            "prediction_id": [f"direction_clf-{d:%Y%m%d}" for d in days.index],
            "model_id": "direction_clf",
            "model_version": "3",
            "symbol": days["symbol"].to_numpy(),
            "ts": [(d + OPEN_UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for d in days.index],
            "predicted_label": label,
            "predicted_proba": np.round(proba, 4),
            "actual_label": actual,
        }
    )


def main() -> None:
    rng = np.random.default_rng(20181231)
    spx, ndx = bars_of(sp500.load(), "SPX"), bars_of(nasdaq.load(), "NDX")
    bars = pd.concat([spx, ndx])
    # Each component trades both indices once a day (half its capital on each).
    trades = pd.concat(
        [
            trades_of(bars_, component, capital, hit, late_hit, start, rng)
            for component, capital, hit, late_hit, start in (
                ("trend_spx", 50_000, 0.57, 0.35, START),
                ("meanrev_ndx", 25_000, 0.55, 0.55, START),
                ("breakout_spx", 12_500, 0.55, 0.55, pd.Timestamp("2018-12-21")),
            )
            for bars_ in (spx, ndx)
        ]
    ).sort_values(["exit_ts", "trade_id"])
    OUT.mkdir(parents=True, exist_ok=True)
    bars.to_csv(OUT / "bars.csv", index=False)
    trades.to_csv(OUT / "trades.csv", index=False)
    predictions_of(spx, rng).to_csv(OUT / "predictions.csv", index=False)
    print(f"wrote {len(bars)} bars, {len(trades)} trades to {OUT}")


if __name__ == "__main__":
    main()
