"""The reference paths the SQL marts are measured against: pandas group-by and empyrical-reloaded.

Both compute mart_performance's risk and trade metrics from the same trades, with the definitions
of ../shared/reference/metrics.md, so the benchmark can also check that all paths agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = [
    "n_trades", "n_days", "win_rate", "avg_trade_return", "profit_factor", "expectancy",
    "sharpe", "sortino", "max_drawdown", "annual_return", "calmar",
]  # fmt: skip


def _trade_frame(trades: pd.DataFrame) -> pd.DataFrame:
    long = trades["side"].to_numpy() == "long"
    entry, exit_ = trades["entry_price"].to_numpy(), trades["exit_price"].to_numpy()
    qty = trades["quantity"].to_numpy()
    pnl = np.where(long, exit_ - entry, entry - exit_) * qty - trades["fees"].to_numpy()
    return pd.DataFrame(
        {
            "component_id": trades["component_id"].to_numpy(),
            "day": trades["exit_ts"].dt.floor("D").to_numpy(),
            "pnl": pnl,
            "ret": pnl / (entry * qty),
        }
    )


def daily_returns(trades: pd.DataFrame, capital: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """Dates × components of daily returns; NaN before a component's first trade date."""
    t = _trade_frame(trades)
    wide = t.groupby(["day", "component_id"])["pnl"].sum().unstack("component_id")
    wide = wide.reindex(pd.date_range(wide.index.min(), as_of, freq="D"))
    started = wide.notna().cumsum() > 0
    pnl = wide.fillna(0.0).where(started)
    equity_end = pnl.cumsum() + capital.reindex(pnl.columns)
    return pnl / (equity_end - pnl)


def _trade_metrics(t: pd.DataFrame) -> pd.DataFrame:
    g = t.assign(
        win=t["pnl"] > 0,
        loss=t["pnl"] < 0,
        gain=t["ret"].clip(lower=0),
        lost=t["ret"].clip(upper=0),
        win_ret=t["ret"].where(t["pnl"] > 0),
        loss_ret=t["ret"].where(t["pnl"] < 0),
    ).groupby("component_id")
    out = pd.DataFrame(
        {
            "n_trades": g.size(),
            "wins": g["win"].sum(),
            "losses": g["loss"].sum(),
            "avg_trade_return": g["ret"].mean(),
            "gains": g["gain"].sum(),
            "lost": g["lost"].sum(),
            "avg_win": g["win_ret"].mean(),
            "avg_loss": g["loss_ret"].mean(),
        }
    )
    decided = out["wins"] + out["losses"]
    p = out["wins"] / decided.where(decided > 0)
    out["win_rate"] = p
    out["profit_factor"] = out["gains"] / out["lost"].abs().where(out["losses"] > 0)
    out["expectancy"] = p * out["avg_win"].fillna(0) - (1 - p) * out["avg_loss"].abs().fillna(0)
    return out[["n_trades", "win_rate", "avg_trade_return", "profit_factor", "expectancy"]]


def pandas_metrics(
    trades: pd.DataFrame,
    capital: pd.Series,
    ann: pd.Series,
    as_of: pd.Timestamp,
    windows: list[int],
) -> pd.DataFrame:
    """Vectorised over components: one frame per window, concatenated."""
    r_all = daily_returns(trades, capital, as_of)
    t = _trade_frame(trades)
    frames = []
    for w in windows:
        r = r_all.loc[as_of - pd.Timedelta(days=w - 1) : as_of]
        a = ann.reindex(r.columns)
        n = r.count()
        mean, std = r.mean(), r.std(ddof=1)
        flat = r.max() == r.min()
        sharpe = (mean / std * np.sqrt(a)).where((n >= 2) & ~flat)
        dd_dev = np.sqrt((r.clip(upper=0) ** 2).mean()) * np.sqrt(a)
        sortino = (mean * a / dd_dev).where(dd_dev > 0)
        wealth = (1 + r).cumprod()
        peak = wealth.cummax().clip(lower=1.0)
        mdd = (wealth / peak - 1).min()
        total = wealth.ffill().iloc[-1]
        cagr = (total ** (a / n) - 1).where(total > 0)
        calmar = (cagr / mdd.abs()).where(mdd < 0)
        window_trades = t[(t["day"] > as_of - pd.Timedelta(days=w)) & (t["day"] <= as_of)]
        tm = _trade_metrics(window_trades).reindex(r.columns)
        frames.append(
            pd.DataFrame(
                {
                    "window_days": w,
                    "n_trades": tm["n_trades"].fillna(0).astype(int),
                    "n_days": n,
                    "win_rate": tm["win_rate"],
                    "avg_trade_return": tm["avg_trade_return"],
                    "profit_factor": tm["profit_factor"],
                    "expectancy": tm["expectancy"],
                    "sharpe": sharpe,
                    "sortino": sortino,
                    "max_drawdown": mdd.where(n > 0),
                    "annual_return": cagr.where(n > 0),
                    "calmar": calmar,
                }
            )
        )
    out = pd.concat(frames).rename_axis("component_id").reset_index()
    return out[out["n_days"] > 0]


def empyrical_metrics(
    trades: pd.DataFrame,
    capital: pd.Series,
    ann: pd.Series,
    as_of: pd.Timestamp,
    windows: list[int],
) -> pd.DataFrame:
    """empyrical-reloaded called per component and window (how most users compute these)."""
    import empyrical as ep

    r_all = daily_returns(trades, capital, as_of)
    t = _trade_frame(trades)
    rows = []
    for w in windows:
        window_trades = t[(t["day"] > as_of - pd.Timedelta(days=w)) & (t["day"] <= as_of)]
        tm = _trade_metrics(window_trades)
        r_w = r_all.loc[as_of - pd.Timedelta(days=w - 1) : as_of]
        for component in r_w.columns:
            r = r_w[component].dropna()
            if r.empty:
                continue
            a = int(ann[component])
            row = {"component_id": component, "window_days": w, "n_days": len(r)}
            row["sharpe"] = ep.sharpe_ratio(r, annualization=a)
            row["sortino"] = ep.sortino_ratio(r, annualization=a)
            row["max_drawdown"] = ep.max_drawdown(r)
            row["annual_return"] = ep.annual_return(r, annualization=a)
            row["calmar"] = ep.calmar_ratio(r, annualization=a)
            if component in tm.index:
                row.update(tm.loc[component].to_dict())
            rows.append(row)
    return pd.DataFrame(rows)
