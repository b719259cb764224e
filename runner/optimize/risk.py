"""Risk adjustment (task type `risk_adjustment`): choose a version's risk parameters so that its
drawdown stays tolerable while it keeps as much return as it can.

On the walk-forward search blocks: every setting of (vol_target, kelly_cap, max_position,
daily_loss_limit) on a grid inside hard bounds is simulated; the one with the highest CAGR whose
bootstrapped one-year max drawdown (95th percentile) stays under the threshold wins. It neither
records events nor creates versions (the caller does), and never touches the holdout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from runner.backtest import (
    RISK_PARAMETERS,
    VOL_WINDOW,
    Costs,
    RiskKwargs,
    bars_per_year_of,
    daily_returns,
    risk_kwargs,
    simulate,
)
from runner.errors import ConfigError
from runner.optimize.walkforward import WalkForwardPlan
from runner.strategies import Bars, Strategy, resolve_params

Verdict = Literal["adjusted", "unchanged", "rejected"]
RISK_NAMES = tuple(p.name for p in RISK_PARAMETERS)
_LIMITS = {p.name: (float(p.low or 0.0), float(p.high or 1.0)) for p in RISK_PARAMETERS}
_POSITIVE = ("kelly_cap", "max_position")  # 0 would never trade
_ROUND = 6  # grid values are rounded to 6 decimals (then clipped to the bounds) to read well


@dataclass(frozen=True)
class RiskConfig:
    """What a risk adjustment may do and what it must achieve.

    Bounds are hard, inclusive and per parameter; 0 in the bounds of vol_target or
    daily_loss_limit allows that control to be off. A grid spaces `*_steps` intervals between
    the bounds of each searched parameter; kelly_cap is not searched but set to
    kelly_fraction × the Kelly estimate, clipped to its bounds.
    """

    max_drawdown: float = 0.10  # the warning threshold of max drawdown, as a positive fraction
    confidence: float = 0.95
    bootstrap_samples: int = 2000
    seed: int = 0
    periods_per_year: int = 252
    horizon_days: int | None = None  # bootstrap path length; None: periods_per_year (one year)
    mean_block_days: float | None = None  # None: round(T ** (1/3)) of the T search days
    kelly_fraction: float = 0.5
    vol_target_bounds: tuple[float, float] = (0.0, 0.4)
    kelly_cap_bounds: tuple[float, float] = (0.05, 1.0)
    max_position_bounds: tuple[float, float] = (0.05, 1.0)
    daily_loss_limit_bounds: tuple[float, float] = (0.0, 0.05)
    vol_target_steps: int = 8
    max_position_steps: int = 19
    daily_loss_limit_steps: int = 3
    vol_window: int = VOL_WINDOW
    min_days: int = 60

    def __post_init__(self) -> None:
        issues: list[str] = []
        for name in RISK_NAMES:
            low, high = self.bounds(name)
            floor, ceiling = _LIMITS[name]
            if not (math.isfinite(low) and math.isfinite(high) and floor <= low <= high <= ceiling):
                issues.append(
                    f"{name}_bounds must satisfy {floor:g} <= low <= high <= {ceiling:g}, "
                    f"got ({low!r}, {high!r})"
                )
            elif name in _POSITIVE and low <= 0:
                issues.append(f"{name}_bounds must start above 0, got ({low!r}, {high!r})")
        if not 0 < self.max_drawdown < 1:
            issues.append(f"max_drawdown must be in (0, 1), got {self.max_drawdown!r}")
        if not 0 < self.confidence < 1:
            issues.append(f"confidence must be in (0, 1), got {self.confidence!r}")
        if not 0 < self.kelly_fraction <= 1:
            issues.append(f"kelly_fraction must be in (0, 1], got {self.kelly_fraction!r}")
        whole = {
            "bootstrap_samples": (self.bootstrap_samples, 100),
            "periods_per_year": (self.periods_per_year, 1),
            "vol_target_steps": (self.vol_target_steps, 1),
            "max_position_steps": (self.max_position_steps, 1),
            "daily_loss_limit_steps": (self.daily_loss_limit_steps, 1),
            "vol_window": (self.vol_window, 2),
            "min_days": (self.min_days, 2),
        }
        if self.horizon_days is not None:
            whole["horizon_days"] = (self.horizon_days, 2)
        for name, (value, least) in whole.items():
            if not (isinstance(value, int) and value >= least):
                issues.append(f"{name} must be a whole number >= {least}, got {value!r}")
        if self.mean_block_days is not None and not self.mean_block_days >= 1:
            issues.append(f"mean_block_days must be >= 1, got {self.mean_block_days!r}")
        if issues:
            raise ConfigError("Invalid risk adjustment settings: " + "; ".join(issues) + ".")

    def bounds(self, name: str) -> tuple[float, float]:
        low, high = getattr(self, f"{name}_bounds")
        return float(low), float(high)


@dataclass(frozen=True)
class RiskMetrics:
    """One risk setting on the search blocks' days."""

    # The `confidence` quantile of the bootstrapped max drawdown (>= 0); None with too few days.
    drawdown_quantile: float | None
    cagr: float  # (prod(1 + r))^(A / T) - 1 over the T search days (empyrical annual_return)
    mean_daily_return: float
    max_drawdown: float  # realised on the search days, as a positive fraction
    mean_size: float | None  # position size averaged over the bars held; None without trades
    n_trades: int


@dataclass(frozen=True)
class RiskAdjustment:
    """The outcome: the risk parameters to run and why. `params` is the version's full parameter
    set with them (unchanged when rejected); `after` equals `before` when nothing changes."""

    verdict: Verdict
    risk_params: dict[str, float]
    params: dict[str, Any]
    before: RiskMetrics
    after: RiskMetrics
    reasons: tuple[str, ...]
    kelly_estimate: float | None  # full Kelly fraction mean / variance of unit-size daily returns
    threshold: float
    confidence: float
    horizon_days: int
    mean_block_days: float
    bootstrap_samples: int
    days: int
    candidates: int
    bars_per_year: float
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchReturns:
    """One risk setting simulated on every test block: daily returns on the common grid."""

    days: NDArray[np.datetime64]
    returns: NDArray[np.float64]
    n_trades: int
    mean_size: float | None


def search_returns(
    bars: Bars,
    target: NDArray[np.float64],
    params: Mapping[str, Any],
    plan: WalkForwardPlan,
    costs: Costs,
    risk: RiskKwargs,
    *,
    vol_window: int = VOL_WINDOW,
    bars_per_year: float,
) -> SearchReturns:
    """Each test block simulated on its own, starting flat, as walkforward.evaluate does.

    Every block is simulated from `vol_window` bars earlier with active_from at its first bar:
    the volatility of vol_target may use bars before the block (they are in the past of every
    signal), while the fills, returns and days are exactly the block's. At default risk the
    returns equal walkforward.evaluate's.
    """
    all_days: list[NDArray[np.datetime64]] = []
    all_returns: list[NDArray[np.float64]] = []
    n_trades = 0
    held_bars = 0
    sized_bars = 0.0
    for block in plan.folds:
        start = max(0, block.start - vol_window)
        offset = block.start - start
        window = bars.slice(start, block.stop)
        result = simulate(
            window,
            target[start : block.stop],
            stop_loss=float(params.get("stop_loss", 0.0) or 0.0),
            take_profit=float(params.get("take_profit", 0.0) or 0.0),
            costs=costs,
            active_from=offset,
            vol_window=vol_window,
            bars_per_year=bars_per_year,
            **risk,
        )
        days, returns = daily_returns(window.time[offset:], result.bar_returns[offset:])
        all_days.append(days)
        all_returns.append(returns)
        trades = result.trades
        n_trades += len(trades)
        spans = trades.exit_index - trades.entry_index + 1
        held_bars += int(spans.sum())
        sized_bars += float(np.dot(spans, trades.size))
    return SearchReturns(
        days=np.concatenate(all_days),
        returns=np.concatenate(all_returns),
        n_trades=n_trades,
        mean_size=sized_bars / held_bars if held_bars else None,
    )


def stationary_bootstrap_indices(
    n: int, length: int, samples: int, mean_block: float, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Indices into a series of n observations: `samples` paths of `length`, row by row.

    Politis & Romano (1994), "The stationary bootstrap", JASA 89: each step continues the
    current block (the next observation, wrapping from the last to the first) with probability
    1 - 1/mean_block, else starts a new block at a uniformly drawn observation; block lengths
    are geometric with mean `mean_block`, so the paths are stationary and keep short-range
    dependence (streaks of losing days) that an i.i.d. resample would break.
    """
    idx = np.empty((samples, length), dtype=np.int64)
    fresh = rng.integers(0, n, size=(samples, length))
    jump = rng.random((samples, length)) < 1.0 / mean_block
    idx[:, 0] = fresh[:, 0]
    for h in range(1, length):
        idx[:, h] = np.where(jump[:, h], fresh[:, h], (idx[:, h - 1] + 1) % n)
    return idx


def bootstrap_max_drawdowns(
    returns: NDArray[np.float64], paths: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Max drawdown of each bootstrap path returns[paths[i]], as a positive fraction (<= 1).

    empyrical's convention: wealth 1 before the first return (so a first-day loss is a
    drawdown), DD = 1 - W_t / max(1, W_0..W_t). Compiled (runner.backtest.kernel): every
    candidate setting is scored on thousands of paths.
    """
    from runner.backtest.kernel import bootstrap_max_drawdowns as kernel

    out = np.empty(paths.shape[0], dtype=np.float64)
    kernel(np.ascontiguousarray(returns, dtype=np.float64), np.ascontiguousarray(paths), out)
    return out


def _cagr(returns: NDArray[np.float64], periods_per_year: int) -> float:
    growth = float(np.prod(1.0 + returns))
    if growth <= 0:
        return -1.0
    return float(growth ** (periods_per_year / len(returns)) - 1.0)


def _levels(low: float, high: float, steps: int) -> list[float]:
    if high == low:
        return [low]
    values = np.clip(np.round(np.linspace(low, high, steps + 1), _ROUND), low, high)
    return sorted({float(v) for v in values})


def _as_dict(risk: RiskKwargs) -> dict[str, float]:
    return {
        "vol_target": risk["vol_target"],
        "kelly_cap": risk["kelly_cap"],
        "max_position": risk["max_position"],
        "daily_loss_limit": risk["daily_loss_limit"],
    }


def _describe(risk: RiskKwargs) -> str:
    values = _as_dict(risk)
    return ", ".join(f"{name} {values[name]:g}" for name in RISK_NAMES)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def adjust_risk(
    strategy: Strategy,
    bars: Bars,
    params: Mapping[str, Any],
    plan: WalkForwardPlan,
    costs: Costs,
    *,
    config: RiskConfig,
) -> RiskAdjustment:
    """Choose the risk parameters of `params` (the incumbent version's) on the search blocks.

    Rule: among the grid settings inside the config's hard bounds, the highest CAGR on the
    search blocks' days such that the `confidence` quantile of the max drawdown over
    `horizon_days` of stationary-bootstrapped daily returns stays under `max_drawdown`. kelly_cap
    is set, not searched: kelly_fraction × mean / variance of the unit-size (risk-off) daily
    returns, clipped to its bounds. With no setting under the threshold, the verdict is
    "rejected" and the incumbent's parameters stand; "unchanged" when the best is the current.
    """
    resolved = resolve_params(strategy, params)
    incumbent = risk_kwargs(resolved)
    current_values = _as_dict(incumbent)
    per_year = bars_per_year_of(bars.slice(0, plan.search_stop), config.periods_per_year)
    target = strategy.signals(bars.slice(0, plan.search_stop), resolved)

    def run(risk: RiskKwargs) -> SearchReturns:
        return search_returns(
            bars,
            target,
            resolved,
            plan,
            costs,
            risk,
            vol_window=config.vol_window,
            bars_per_year=per_year,
        )

    current = run(incumbent)
    n_days = len(current.returns)
    horizon = config.horizon_days or config.periods_per_year
    mean_block = config.mean_block_days or float(max(1, round(n_days ** (1 / 3))))
    paths = np.empty((0, horizon), dtype=np.int64)  # drawn once enough days are known

    def quantile(series: SearchReturns) -> float:
        # numpy's default (linear) quantile of the path drawdowns.
        drawdowns = bootstrap_max_drawdowns(series.returns, paths)
        return float(np.quantile(drawdowns, config.confidence))

    def metrics(series: SearchReturns, q: float | None) -> RiskMetrics:
        equity = np.cumprod(1.0 + series.returns)
        peak = np.maximum.accumulate(np.maximum(equity, 1.0))
        return RiskMetrics(
            drawdown_quantile=q,
            cagr=_cagr(series.returns, config.periods_per_year),
            mean_daily_return=float(np.mean(series.returns)),
            max_drawdown=float(np.max(1.0 - equity / peak)),
            mean_size=series.mean_size,
            n_trades=series.n_trades,
        )

    threshold = config.max_drawdown
    level = f"{config.confidence:.0%}"
    horizon_text = f"{horizon}-day" if config.horizon_days else "one-year"

    def outcome(
        verdict: Verdict,
        chosen: RiskKwargs,
        before: RiskMetrics,
        after: RiskMetrics,
        reasons: Sequence[str],
        kelly: float | None = None,
        candidates: int = 0,
        notes: Sequence[str] = (),
    ) -> RiskAdjustment:
        merged = dict(resolved)
        if verdict != "rejected":
            merged.update(_as_dict(chosen))
        return RiskAdjustment(
            verdict=verdict,
            risk_params=_as_dict(chosen),
            params=merged,
            before=before,
            after=after,
            reasons=tuple(reasons),
            kelly_estimate=kelly,
            threshold=threshold,
            confidence=config.confidence,
            horizon_days=horizon,
            mean_block_days=mean_block,
            bootstrap_samples=config.bootstrap_samples,
            days=n_days,
            candidates=candidates,
            bars_per_year=per_year,
            notes=tuple(notes),
        )

    if n_days < config.min_days:
        before = metrics(current, None)
        return outcome(
            "rejected",
            incumbent,
            before,
            before,
            [
                f"The search blocks hold {n_days} days; a bootstrapped drawdown needs at least "
                f"{config.min_days}. Nothing changes."
            ],
        )
    # One set of paths for every setting (common random numbers): settings differ by their
    # returns, not by the draw.
    paths = stationary_bootstrap_indices(
        n_days, horizon, config.bootstrap_samples, mean_block, np.random.default_rng(config.seed)
    )
    q_before = quantile(current)
    before = metrics(current, q_before)
    unit = run(risk_kwargs({}))
    if unit.n_trades == 0:
        return outcome(
            "rejected",
            incumbent,
            before,
            before,
            ["The strategy does not trade on the search blocks: there is no position to size."],
        )

    # Kelly for continuous returns: f* = mu / sigma^2 maximises expected log growth (Thorp 2006,
    # "The Kelly criterion in blackjack, sports betting and the stock market", section 7).
    notes: list[str] = []
    variance = float(np.var(unit.returns, ddof=1))
    kelly = float(np.mean(unit.returns)) / variance if variance > 0 else None
    kelly_low, kelly_high = config.bounds("kelly_cap")
    if kelly is None:
        kelly_cap = kelly_high
    else:
        kelly_cap = float(np.clip(round(config.kelly_fraction * kelly, 4), kelly_low, kelly_high))
        if kelly <= 0:
            notes.append(
                f"The unit-size daily returns have no edge (Kelly {kelly:.3g}): kelly_cap is "
                f"held at its lower bound {kelly_low:g}."
            )

    grid = [
        RiskKwargs(vol_target=vol, kelly_cap=kelly_cap, max_position=size, daily_loss_limit=limit)
        for vol in _levels(*config.bounds("vol_target"), config.vol_target_steps)
        for size in _levels(*config.bounds("max_position"), config.max_position_steps)
        for limit in _levels(*config.bounds("daily_loss_limit"), config.daily_loss_limit_steps)
    ]
    if all(config.bounds(n)[0] <= v <= config.bounds(n)[1] for n, v in current_values.items()):
        grid.append(incumbent)  # so that "nothing better" can be told apart from "adjusted"

    def distance(risk: RiskKwargs) -> float:
        total = 0.0
        for name, value in _as_dict(risk).items():
            low, high = config.bounds(name)
            gap = abs(value - current_values[name])
            total += gap / (high - low) if high > low else gap
        return total

    scored: list[tuple[float, float, float, RiskKwargs, SearchReturns]] = []
    for risk in grid:
        series = run(risk)
        cagr = _cagr(series.returns, config.periods_per_year)
        scored.append((quantile(series), -round(cagr, 12), distance(risk), risk, series))
    feasible = [item for item in scored if item[0] < threshold]
    summary_of = (
        f"the {level} quantile of the {horizon_text} max drawdown (stationary bootstrap of "
        f"{n_days} search days, mean block {mean_block:g} days)"
    )
    if not feasible:
        q, _, _, risk, _ = min(scored, key=lambda item: (item[0], item[2]))
        reason = (
            f"No setting within the bounds keeps {summary_of} under {_pct(threshold)}: the "
            f"lowest of {len(grid)} settings reaches {_pct(q)} ({_describe(risk)}; currently "
            f"{_pct(q_before)}). Nothing changes; allow a smaller max_position "
            "or vol_target, or revisit the strategy."
        )
        return outcome("rejected", incumbent, before, before, [reason], kelly, len(grid), notes)
    # Best return first; equal returns (settings that trade alike) prefer the least change.
    q, _, _, risk, series = min(feasible, key=lambda item: (item[1], item[2]))
    after = metrics(series, q)
    summary = f"{summary_of} is {_pct(q)}, under {_pct(threshold)}"
    if _as_dict(risk) == current_values:
        reason = (
            f"The current setting ({_describe(incumbent)}) stays: {summary}, and no setting "
            f"within the bounds returns more (CAGR {_pct(after.cagr)})."
        )
        return outcome("unchanged", incumbent, before, after, [reason], kelly, len(grid), notes)
    reason = (
        f"{_describe(risk)} instead of {_describe(incumbent)}: {summary} (was "
        f"{_pct(q_before)}); CAGR {_pct(after.cagr)} (was {_pct(before.cagr)}), "
        f"the highest of the {len(feasible)} of {len(grid)} settings under the threshold."
    )
    return outcome("adjusted", risk, before, after, [reason], kelly, len(grid), notes)
