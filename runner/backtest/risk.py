"""The risk parameters every strategy version may carry: position size and a daily loss limit.

They belong to the simulation, not to a strategy: no strategy declares them, `resolve_params`
accepts them for every strategy, and `backtest()` hands them to `simulate()`. Their defaults
reproduce the unsized backtest exactly (size 1, no limit). Choosing them is runner.optimize.risk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

from runner.strategies.base import Bars, Param

VOL_WINDOW = 20  # bars of 1-bar close returns behind the volatility estimate of vol_target

RISK_PARAMETERS: tuple[Param, ...] = (
    Param(
        "vol_target",
        "float",
        0.0,
        0.0,
        1.0,
        description="Annualised volatility a new position is sized for: size = vol_target / "
        "(trailing volatility of 1-bar close returns at the signal bar, annualised); 0 = off.",
    ),
    Param(
        "kelly_cap",
        "float",
        1.0,
        0.0,
        1.0,
        description="Upper bound on the size, as a fraction of equity, holding a fractional-Kelly "
        "estimate (risk adjustment sets half Kelly); 1 = no cap beyond max_position. In (0, 1].",
    ),
    Param(
        "max_position",
        "float",
        1.0,
        0.0,
        1.0,
        description="Largest position, as a fraction of the equity at entry. In (0, 1].",
    ),
    Param(
        "daily_loss_limit",
        "float",
        0.0,
        0.0,
        1.0,
        description="Once the UTC day's loss, marked to market at a close, reaches this fraction "
        "of the day's starting equity: close at the next open, no new entry that day; 0 = off.",
    ),
)
RISK_PARAMETER_NAMES: frozenset[str] = frozenset(p.name for p in RISK_PARAMETERS)
_DEFAULTS = {p.name: float(p.default) for p in RISK_PARAMETERS}
# Sizes are fractions of equity in (0, 1]: 0 would never trade, above 1 would be leverage.
_POSITIVE = ("kelly_cap", "max_position")


class RiskKwargs(TypedDict):
    """simulate()'s risk keyword arguments (so `simulate(..., **risk_kwargs(params))` type-checks)."""

    vol_target: float
    kelly_cap: float
    max_position: float
    daily_loss_limit: float


def risk_kwargs(params: Mapping[str, Any]) -> RiskKwargs:
    """The risk parameters in `params` (resolved), their defaults where absent."""
    value = {name: float(params.get(name, default)) for name, default in _DEFAULTS.items()}
    return RiskKwargs(
        vol_target=value["vol_target"],
        kelly_cap=value["kelly_cap"],
        max_position=value["max_position"],
        daily_loss_limit=value["daily_loss_limit"],
    )


def risk_problems(params: Mapping[str, Any]) -> list[str]:
    """What the [low, high] bounds of RISK_PARAMETERS cannot say: sizes must be above 0."""
    return [
        f"{name} = {params[name]} must be above 0 (a fraction of equity in (0, 1])"
        for name in _POSITIVE
        if name in params and isinstance(params[name], int | float) and params[name] <= 0
    ]


def bars_per_year_of(bars: Bars, periods_per_year: float = 252) -> float:
    """periods_per_year (trading days) times the mean number of bars per UTC day of `bars`.

    Annualises a volatility measured on bars of any size: 252 for daily stock bars, about
    252 × 24 for hourly FX. 0 for no bars.
    """
    if len(bars) == 0:
        return 0.0
    days = bars.time.astype("datetime64[D]")
    n_days = 1 + int(np.count_nonzero(days[1:] != days[:-1]))
    return float(periods_per_year) * len(bars) / n_days


def _finite(value: object) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_risk(
    vol_target: float,
    kelly_cap: float,
    max_position: float,
    daily_loss_limit: float,
    vol_window: int,
    bars_per_year: float,
) -> list[str]:
    """Problems with simulate()'s risk arguments, one sentence each (plain tests: this runs on
    every backtest, thousands of times a second in a search)."""
    issues: list[str] = []
    if not (_finite(vol_target) and vol_target >= 0):
        issues.append(f"vol_target must be a number >= 0 (0 = off), got {vol_target!r}")
    if not (_finite(kelly_cap) and 0 < kelly_cap <= 1):
        issues.append(f"kelly_cap must be a fraction in (0, 1], got {kelly_cap!r}")
    if not (_finite(max_position) and 0 < max_position <= 1):
        issues.append(f"max_position must be a fraction in (0, 1], got {max_position!r}")
    if not (_finite(daily_loss_limit) and 0 <= daily_loss_limit < 1):
        issues.append(f"daily_loss_limit must be a fraction in [0, 1), got {daily_loss_limit!r}")
    if not (_finite(bars_per_year) and bars_per_year > 0):
        issues.append(f"bars_per_year must be a number > 0, got {bars_per_year!r}")
    if not (isinstance(vol_window, int | np.integer) and vol_window >= 2):
        issues.append(f"vol_window must be a whole number of bars >= 2, got {vol_window!r}")
    return issues
