"""The smoke tests a candidate strategy version must pass in staging before its A/B test starts.

Owns the five checks (params_in_bounds, model_artifact, recent_backtest, config_roundtrip,
lookahead) and a version's exported configuration (export_config / import_config). It writes
nothing and decides nothing: the caller records the checks and events (runner.deploy.state) and
ends the deployment as failed when any check did not pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runner.backtest import Costs, backtest, bars_per_year_of, daily_returns
from runner.backtest.engine import max_drawdown, sharpe
from runner.config import Settings
from runner.deploy.state import Check
from runner.errors import ConfigError, TradebaseError
from runner.optimize import models
from runner.optimize.data import load_bars
from runner.optimize.features import load_features
from runner.optimize.probabilities import needs_probability, with_model
from runner.optimize.retrain import matrix
from runner.optimize.versions import Component, StrategyVersion
from runner.strategies import Bars, Strategy, StrategyError, load_strategy, resolve_params
from runner.thresholds import threshold
from runner.warehouse import Warehouse

CHECK_NAMES = (
    "params_in_bounds",
    "model_artifact",
    "recent_backtest",
    "config_roundtrip",
    "lookahead",
)
# seeds/alert_thresholds.csv's default critical max drawdown, used when the table is missing.
DEFAULT_CRITICAL_DRAWDOWN = 0.15
# Calendar days of bars loaded before the recent window so indicators are warm when it starts:
# two years cover sma_cross's longest window (400 daily bars) and the sizing's VOL_WINDOW.
WARMUP_DAYS = 730
# Most recent feature rows the model artifact must predict on.
MODEL_ROWS = 200


class _Unavailable(Exception):
    """An input several checks need could not be built: `sentence` says why, `kind` names the
    original exception, so each of those checks fails with the same reason."""

    def __init__(self, sentence: str, kind: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.kind = kind


# -- exported configuration --------------------------------------------------------------------
def export_config(
    component: Component, version: StrategyVersion, *, model_id: str | None = None
) -> dict[str, Any]:
    """A version's configuration as a JSON-ready dict: component_id, version, strategy, symbol,
    params and, for a strategy that trades a model (ml_signal), `model` = {model_id, version}.

    `model_id` is the component's model (runner.optimize.models.model_of, which needs the
    warehouse); default `<component_id>_model`, the registry's own default.
    """
    if version.component_id != component.component_id:
        raise ConfigError(
            f"Version {version.version} belongs to component {version.component_id!r}, "
            f"not {component.component_id!r}."
        )
    data: dict[str, Any] = {
        "component_id": component.component_id,
        "version": int(version.version),
        "strategy": version.strategy,
        "symbol": component.symbol,
        "params": dict(version.params),
    }
    if needs_probability(load_strategy(version.strategy)):
        number = version.params.get("model_version")
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(
                f"Version {version.version} of {component.component_id} trades a model but its "
                f"model_version is {number!r}, not a version number."
            )
        data["model"] = {
            "model_id": model_id or f"{component.component_id}_model",
            "version": number,
        }
    return data


def import_config(data: Mapping[str, Any]) -> tuple[Strategy, dict[str, Any]]:
    """The strategy and resolved parameters of an exported configuration (see export_config).

    ConfigError (StrategyError for the strategy and its parameters) names what is unusable.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"A strategy configuration must be a JSON object, got a {type(data).__name__}."
        )
    ref = data.get("strategy")
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(
            f"The strategy configuration needs a `strategy` name or import path, got {ref!r}."
        )
    params = data.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(
            f"The `params` of the strategy configuration must be an object, got "
            f"{type(params).__name__}."
        )
    for key, kind in (("component_id", str), ("symbol", str), ("version", int)):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ConfigError(
                f"The `{key}` of the strategy configuration must be a {kind.__name__}, "
                f"got {value!r}."
            )
    strategy = load_strategy(ref)
    resolved = resolve_params(strategy, params)
    model = data.get("model")
    if model is not None:
        if not needs_probability(strategy):
            raise ConfigError(f"Strategy {ref!r} trades no model, but the configuration names one.")
        if (
            not isinstance(model, Mapping)
            or not isinstance(model.get("model_id"), str)
            or model.get("version") != resolved.get("model_version")
        ):
            raise ConfigError(
                f"The configuration's `model` must be {{model_id, version}} with version = "
                f"model_version ({resolved.get('model_version')!r}), got {model!r}."
            )
    return strategy, resolved


# -- the checks --------------------------------------------------------------------------------
def run_smoke_tests(
    wh: Warehouse,
    settings: Settings,
    component: Component,
    version: StrategyVersion,
    *,
    recent_days: int = 180,
    lookahead_cuts: int = 8,
) -> list[Check]:
    """One Check per smoke test, in CHECK_NAMES order. A failing candidate (invalid parameters,
    a missing or altered model, strategy code that raises, a look-ahead) never raises: its
    checks say passed=False with the reason in one sentence and the numbers in `metrics`.

    The recent backtest runs on the last `recent_days` calendar days of the component's bars,
    starting flat, after WARMUP_DAYS of bars that only warm the indicators (and the volatility
    sizing): `backtest(..., active_from=<first bar of the window>)`, as the walk-forward blocks
    do. The look-ahead check cuts the bars at `lookahead_cuts` evenly spaced bars of the window.
    """
    if recent_days < 1 or lookahead_cuts < 1:
        raise ValueError(
            f"recent_days and lookahead_cuts must be >= 1, got {recent_days} and {lookahead_cuts}"
        )
    if version.component_id != component.component_id:
        raise ConfigError(
            f"Version {version.version} belongs to component {version.component_id!r}, "
            f"not {component.component_id!r}."
        )
    run = _Run(wh, settings, component, version, recent_days, lookahead_cuts)
    steps: dict[str, Callable[[], Check]] = {
        "params_in_bounds": run.params_in_bounds,
        "model_artifact": run.model_artifact,
        "recent_backtest": run.recent_backtest,
        "config_roundtrip": run.config_roundtrip,
        "lookahead": run.lookahead,
    }
    return [_guard(name, steps[name]) for name in CHECK_NAMES]


def critical_drawdown(wh: Warehouse, component_id: str) -> float:
    """The component's critical max drawdown (a positive fraction): its override row of
    alert_thresholds, else the default row, else DEFAULT_CRITICAL_DRAWDOWN."""
    value = threshold(wh, component_id, "max_drawdown", "critical_value").value
    return DEFAULT_CRITICAL_DRAWDOWN if value is None else value


def _sentence(exc: BaseException) -> str:
    """The exception as one sentence: the engine's own errors already are one (runner.errors);
    anything else (user strategy code, a library) is prefixed with its type."""
    if isinstance(exc, _Unavailable):
        return exc.sentence
    text = " ".join(str(exc).split()) or "no message"
    if not isinstance(exc, TradebaseError):
        text = f"{type(exc).__name__}: {text}"
    return text if text.endswith(".") else text + "."


def _unavailable(exc: Exception) -> _Unavailable:
    if isinstance(exc, _Unavailable):
        return exc
    return _Unavailable(_sentence(exc), type(exc).__name__)


def _guard(name: str, step: Callable[[], Check]) -> Check:
    try:
        return step()
    except Exception as exc:  # strategy code and model files are the candidate's: report them
        reason = _unavailable(exc)
        return Check(name, False, reason.sentence, {"error": reason.kind})


def _day(time: np.datetime64) -> str:
    return str(np.datetime_as_string(time, unit="D"))


def _when(time: np.datetime64) -> str:
    return str(np.datetime_as_string(time, unit="s")).replace("T00:00:00", "")


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _number(value: Any) -> Any:
    """A JSON-ready scalar: finite floats, None for NaN and infinities."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class _Recent:
    bars: Bars
    start: int  # first bar of the recent window; bars before it only warm up


@dataclass
class _Run:
    wh: Warehouse
    settings: Settings
    component: Component
    version: StrategyVersion
    recent_days: int
    cuts: int
    _strategy: Strategy | _Unavailable | None = None
    _model_id: str | None = None
    _recent: _Recent | _Unavailable | None = None
    _params: dict[str, Any] | None = None

    # -- shared inputs, built once and failing every check that needs them with the same reason
    def strategy(self) -> Strategy:
        if self._strategy is None:
            try:
                self._strategy = load_strategy(self.version.strategy)
            except Exception as exc:
                self._strategy = _unavailable(exc)
        if isinstance(self._strategy, _Unavailable):
            raise self._strategy
        return self._strategy

    def params(self) -> dict[str, Any]:
        if self._params is None:
            self._params = resolve_params(self.strategy(), self.version.params)
        return self._params

    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = models.model_of(self.wh, self.component.component_id)
        return self._model_id

    def recent(self) -> _Recent:
        if self._recent is None:
            try:
                self._recent = self._load_recent()
            except Exception as exc:
                self._recent = _unavailable(exc)
        if isinstance(self._recent, _Unavailable):
            raise self._recent
        return self._recent

    def _load_recent(self) -> _Recent:
        bars = load_bars(
            self.wh,
            self.component.symbol,
            as_of=None,
            lookback_days=self.recent_days + WARMUP_DAYS,
        )
        strategy = self.strategy()
        if needs_probability(strategy):
            bars = with_model(self.wh, bars, strategy, self.params(), self.model_id())
        # The window is the last `recent_days` calendar days up to the last bar, as load_bars.
        cut = bars.time[-1] - np.timedelta64(self.recent_days, "D")
        return _Recent(bars, int(np.searchsorted(bars.time, cut, side="right")))

    # -- the checks
    def params_in_bounds(self) -> Check:
        name = "params_in_bounds"
        stored = dict(self.version.params)
        try:
            resolved = resolve_params(self.strategy(), stored)
        except StrategyError as exc:  # it lists every problem, one phrase each
            return Check(
                name,
                False,
                f"{len(exc.problems)} problem(s) with the stored parameters of "
                f"{self.version.strategy}: " + "; ".join(exc.problems) + ".",
                {"n_params": len(stored), "problems": list(exc.problems)},
            )
        missing = [k for k in resolved if k not in stored]
        changed = [k for k in stored if k in resolved and resolved[k] != stored[k]]
        metrics = {"n_params": len(stored), "missing": missing, "changed": changed}
        if missing or changed:
            what = []
            if missing:
                what.append(f"{len(missing)} parameter(s) are not stored ({', '.join(missing)})")
            if changed:
                what.append(
                    f"{len(changed)} stored value(s) change when resolved ("
                    + ", ".join(f"{k} {stored[k]!r} -> {resolved[k]!r}" for k in changed)
                    + ")"
                )
            return Check(name, False, "; ".join(what) + ".", metrics)
        return Check(
            name,
            True,
            f"The {len(stored)} stored parameter(s) of {self.version.strategy} are inside "
            "their declared bounds and constraints.",
            metrics,
        )

    def model_artifact(self) -> Check:
        name = "model_artifact"
        strategy = self.strategy()
        if not needs_probability(strategy):
            return Check(name, True, f"not applicable: {strategy.name} trades no model", {})
        model_id = self.model_id()
        number = self.version.params.get("model_version")
        metrics: dict[str, Any] = {"model_id": model_id, "model_version": _number(number)}
        if isinstance(number, bool) or not isinstance(number, int):
            return Check(
                name, False, f"The version's model_version is {number!r}, not a number.", metrics
            )
        try:
            registered = models.get_version(self.wh, model_id, number)
        except ConfigError:
            return Check(
                name,
                False,
                f"Model {model_id!r} has no version {number} in model_versions.",
                metrics,
            )
        metrics.update(
            artifact_sha256=registered.artifact_sha256, n_features=len(registered.features)
        )
        try:
            booster = models.load_model(registered)
        except models.ModelArtifactError as exc:
            return Check(name, False, _sentence(exc), {**metrics, "error": type(exc).__name__})
        frame = load_features(self.wh, self.component.symbol)
        if len(frame) == 0:
            return Check(
                name, False, f"No feature rows of {self.component.symbol} to predict on.", metrics
            )
        if booster.num_feature() != len(registered.features):
            return Check(
                name,
                False,
                f"The artifact takes {booster.num_feature()} features but model {model_id} "
                f"v{number} lists {len(registered.features)}.",
                metrics,
            )
        rows = np.arange(max(0, len(frame) - MODEL_ROWS), len(frame), dtype=np.intp)
        p = np.asarray(booster.predict(matrix(frame, rows, registered.features)), np.float64)
        bad = ~(np.isfinite(p) & (p >= 0.0) & (p <= 1.0))
        metrics.update(
            rows=len(rows),
            first_row_at=_day(frame.t0[rows[0]]),
            last_row_at=_day(frame.t0[rows[-1]]),
            n_invalid=int(bad.sum()) + abs(len(rows) - p.size),
            p_min=_number(np.nanmin(p)) if np.isfinite(p).any() else None,
            p_max=_number(np.nanmax(p)) if np.isfinite(p).any() else None,
        )
        if p.shape != (len(rows),) or bad.any():
            return Check(
                name,
                False,
                f"Model {model_id} v{number} predicts {metrics['n_invalid']} of {len(rows)} "
                "recent rows outside finite [0, 1].",
                metrics,
            )
        return Check(
            name,
            True,
            f"Model {model_id} v{number} loads, matches its SHA-256 and predicts probabilities "
            f"in [{p.min():.3f}, {p.max():.3f}] on the last {len(rows)} feature rows of "
            f"{self.component.symbol}.",
            metrics,
        )

    def recent_backtest(self) -> Check:
        name = "recent_backtest"
        recent = self.recent()
        bars, start = recent.bars, recent.start
        critical = critical_drawdown(self.wh, self.component.component_id)
        metrics: dict[str, Any] = {
            "recent_days": self.recent_days,
            "warmup_bars": start,
            "bars": len(bars) - start,
            "critical_drawdown": critical,
        }
        if start >= len(bars):
            return Check(name, False, f"No bars in the last {self.recent_days} days.", metrics)
        result = backtest(
            self.strategy(),
            bars,
            self.params(),
            costs=Costs(self.settings.optimize_fees_bps, self.settings.optimize_slippage_bps),
            active_from=start,
            bars_per_year=bars_per_year_of(bars, self.component.periods_per_year),
        )
        returns = result.bar_returns[start:]
        equity = np.cumprod(1.0 + returns, dtype=np.float64)
        drawdown = abs(max_drawdown(equity))
        _, daily = daily_returns(bars.time[start:], returns)
        n_trades = len(result.trades)  # every entry is inside the window (active_from)
        # Each trade's effect on equity (runner.backtest.Trades), as the walk-forward blocks
        # measure it; the rollout sizes its A/B margin from their spread.
        trade_returns = result.trades.ret * result.trades.size
        span = f"{_day(bars.time[start])} to {_day(bars.time[-1])}"
        metrics.update(
            window_start=_day(bars.time[start]),
            window_end=_day(bars.time[-1]),
            n_trades=n_trades,
            total_return=_number(equity[-1] - 1.0),
            max_drawdown=_number(drawdown),
            sharpe=_number(sharpe(daily)),
            trade_return_mean=_number(trade_returns.mean()) if n_trades else None,
            trade_return_sd=_number(trade_returns.std(ddof=1)) if n_trades > 1 else None,
        )
        if n_trades == 0:
            return Check(
                name,
                False,
                f"The backtest made no trade in the last {self.recent_days} days ({span}, "
                f"{len(returns)} bars).",
                metrics,
            )
        if not drawdown < critical:
            return Check(
                name,
                False,
                f"The max drawdown of the last {self.recent_days} days ({span}) is "
                f"{_pct(drawdown)}, at or above the critical {_pct(critical)}.",
                metrics,
            )
        return Check(
            name,
            True,
            f"{n_trades} trade(s) in the last {self.recent_days} days ({span}): total return "
            f"{_pct(equity[-1] - 1.0)}, max drawdown {_pct(drawdown)} under the critical "
            f"{_pct(critical)}.",
            metrics,
        )

    def config_roundtrip(self) -> Check:
        name = "config_roundtrip"
        strategy = self.strategy()
        exported = export_config(self.component, self.version, model_id=self._model_or_default())
        text = json.dumps(exported, allow_nan=False, sort_keys=True)
        data = json.loads(text)
        loaded, params = import_config(data)
        stored = dict(self.version.params)
        differ = sorted(
            k for k in set(stored) | set(params) if stored.get(k, None) != params.get(k, None)
        )
        metrics: dict[str, Any] = {"bytes": len(text), "differing_params": differ}
        problems = []
        if data != exported:
            problems.append("the exported configuration changes through JSON")
        if data["strategy"] != self.version.strategy or loaded.name != strategy.name:
            problems.append(f"strategy {self.version.strategy!r} comes back as {loaded.name!r}")
        if differ:
            problems.append(f"{len(differ)} parameter(s) come back different ({', '.join(differ)})")
        if problems:
            return Check(name, False, "After the round trip " + "; ".join(problems) + ".", metrics)
        return Check(
            name,
            True,
            f"The exported configuration ({len(text)} bytes of JSON) imports back to "
            f"{strategy.name} with the same {len(stored)} parameters.",
            metrics,
        )

    def _model_or_default(self) -> str | None:
        try:
            return self.model_id()
        except Exception:  # the round trip does not need the registry: use the default id
            return None

    def lookahead(self) -> Check:
        name = "lookahead"
        recent = self.recent()
        bars, start = recent.bars, recent.start
        strategy, params = self.strategy(), self.params()
        n = len(bars)
        if n < 2:
            return Check(name, False, f"Only {n} bar(s): nothing to cut.", {"bars": n})
        full = _signals(strategy, bars, params, n)
        lo = min(start, n - 2)
        cuts = np.unique(np.linspace(lo, n - 2, self.cuts).round().astype(np.intp))
        first: int | None = None
        cut_of_first = -1
        differing_cuts = 0
        for t in cuts:
            part = _signals(strategy, bars.slice(0, int(t) + 1), params, int(t) + 1)
            known = full[: int(t) + 1]
            differs = ~((part == known) | (np.isnan(part) & np.isnan(known)))
            if differs.any():
                differing_cuts += 1
                where = int(np.flatnonzero(differs)[0])
                if first is None or where < first:
                    first, cut_of_first = where, int(t)
        metrics: dict[str, Any] = {
            "cuts": len(cuts),
            "first_cut_at": _day(bars.time[cuts[0]]),
            "last_cut_at": _day(bars.time[cuts[-1]]),
            "differing_cuts": differing_cuts,
            "first_difference_at": None if first is None else _when(bars.time[first]),
        }
        if first is not None:
            return Check(
                name,
                False,
                f"The signals change when later bars are removed at {differing_cuts} of "
                f"{len(cuts)} cuts, first at bar {metrics['first_difference_at']} (cut after "
                f"{_when(bars.time[cut_of_first])}).",
                metrics,
            )
        return Check(
            name,
            True,
            f"The signals up to each of {len(cuts)} cuts ({metrics['first_cut_at']} to "
            f"{metrics['last_cut_at']}) do not change when the later bars are removed.",
            metrics,
        )


def _signals(strategy: Strategy, bars: Bars, params: Mapping[str, Any], n: int) -> NDArray[Any]:
    # A copy: a strategy may hand back a buffer it reuses on the next call.
    out = np.array(strategy.signals(bars, params), dtype=np.float64, copy=True)
    if out.shape != (n,):
        raise ConfigError(
            f"{strategy.name}.signals returned shape {out.shape} for {n} bars; expected ({n},)."
        )
    return out
