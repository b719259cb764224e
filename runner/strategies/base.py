"""What a strategy is to the engine: bars in, a target position per bar out, declared parameters.

Owns the Bars container (validated OHLCV arrays), the Strategy protocol, loading a strategy by
name or import path, and resolving parameters (the strategy's own and the risk parameters common
to every strategy). It does not simulate fills (runner.backtest does).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from runner.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

ParamKind = Literal["int", "float", "bool"]

# Short names of the built-in strategies and the classes they load.
BUILTINS: Mapping[str, str] = {
    "sma_cross": "runner.strategies.sma_cross:SmaCross",
    "donchian_breakout": "runner.strategies.donchian:DonchianBreakout",
    "ml_signal": "runner.strategies.ml_signal:MlSignal",
    "ts_momentum": "runner.strategies.momentum:TimeSeriesMomentum",
}

_TIME_COLUMNS = ("ts", "time", "timestamp", "datetime", "date")
_PRICE_COLUMNS = ("open", "high", "low", "close")


class StrategyError(ConfigError):
    """A strategy cannot be loaded, or parameters cannot be used with it.

    `problems` lists every reason, one sentence each, so a caller (the optimizer) can act on them.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


def _when(time: NDArray[np.datetime64], i: int) -> str:
    return str(time[i].astype("datetime64[s]")).replace("T00:00:00", "")


@dataclass(frozen=True, eq=False)
class Bars:
    """OHLCV bars of one symbol, oldest first, as read-only contiguous arrays.

    `time` is datetime64[ns] in UTC (naive), strictly increasing. Prices are finite and positive,
    and every bar's high/low contain its open and close. `volume` may be NaN when unknown.
    `probability` is optional: a model's probability that the price rises, decided on each bar's
    close (NaN where there is none), for strategies that trade a model (ml_signal). Whoever
    attaches it guarantees each value is out of sample for its bar (runner.optimize.probabilities).
    Construction validates (ConfigError naming the first bad bar) and copies nothing that is
    already float64 and contiguous.
    """

    symbol: str
    time: NDArray[np.datetime64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    probability: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        who = f"Bars for {self.symbol}" if self.symbol else "Bars"
        time = np.asarray(self.time)
        if time.dtype.kind != "M":
            raise ConfigError(f"{who}: time must be datetime64, got {time.dtype}.")
        columns: dict[str, NDArray[Any]] = {"time": time.astype("datetime64[ns]", copy=False)}
        for name in (*_PRICE_COLUMNS, "volume"):
            try:
                columns[name] = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigError(f"{who}: {name} is not numeric.") from None
        if self.probability is not None:
            try:
                columns["probability"] = np.ascontiguousarray(self.probability, dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigError(f"{who}: probability is not numeric.") from None
        n = len(columns["time"])
        for name, values in columns.items():
            if values.ndim != 1 or len(values) != n:
                raise ConfigError(
                    f"{who}: {name} must be one-dimensional with {n} values like time, "
                    f"got shape {values.shape}."
                )
        for name, values in columns.items():
            view = values.view()  # read-only view: frozen means the arrays too
            view.setflags(write=False)
            object.__setattr__(self, name, view)
        self._validate(who)

    def _validate(self, who: str) -> None:
        time = self.time
        if np.isnat(time).any():
            i = int(np.flatnonzero(np.isnat(time))[0])
            raise ConfigError(f"{who}: bar {i} has no time.")
        if len(time) > 1:
            steps = np.diff(time.view(np.int64))
            if (steps <= 0).any():
                i = int(np.flatnonzero(steps <= 0)[0]) + 1
                what = "a duplicate" if steps[i - 1] == 0 else "earlier than the bar before"
                raise ConfigError(
                    f"{who}: times must be strictly increasing; bar {i} ({_when(time, i)}) is "
                    f"{what}."
                )
        for name in _PRICE_COLUMNS:
            values = getattr(self, name)
            bad = ~(np.isfinite(values) & (values > 0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ConfigError(
                    f"{who}: {name} must be finite and positive; bar {i} ({_when(time, i)}) "
                    f"has {float(values[i])!r}."
                )
        checks: list[tuple[NDArray[np.bool_], str]] = [
            (self.high < np.maximum(self.open, self.close), "high is below max(open, close)"),
            (self.low > np.minimum(self.open, self.close), "low is above min(open, close)"),
            (self.volume < 0, "volume is negative"),
        ]
        if self.probability is not None:
            p = self.probability
            checks.append((~np.isnan(p) & ~((p >= 0) & (p <= 1)), "probability is outside [0, 1]"))
        for bad, what in checks:
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ConfigError(f"{who}: bar {i} ({_when(time, i)}): {what}.")

    def __len__(self) -> int:
        return len(self.time)

    def __repr__(self) -> str:
        span = f", {_when(self.time, 0)} .. {_when(self.time, len(self) - 1)}" if len(self) else ""
        return f"Bars({self.symbol!r}, {len(self)} bars{span})"

    def slice(self, start: int | None, stop: int | None) -> Bars:
        """Bars[start:stop] (views, no copy), with Python slice semantics."""
        s = slice(start, stop)
        return Bars(
            self.symbol,
            self.time[s],
            self.open[s],
            self.high[s],
            self.low[s],
            self.close[s],
            self.volume[s],
            None if self.probability is None else self.probability[s],
        )

    def with_probability(self, probability: NDArray[np.float64] | None) -> Bars:
        """The same bars with `probability` attached (one value per bar, NaN where none)."""
        return Bars(
            self.symbol,
            self.time,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            probability,
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, symbol: str = "") -> Bars:
        """Bars from a DataFrame: open/high/low/close (any case; volume optional, NaN if absent;
        an optional `probability` column is a model's out-of-sample P(up) per bar, see Bars).

        The time is a DatetimeIndex or a ts/time/timestamp/datetime/date column; tz-aware times
        are converted to UTC, naive ones are taken as UTC. A `symbol` column is filtered to
        `symbol` (which may be omitted when the column holds one symbol).
        """
        import pandas as pd

        columns = {str(c).lower(): c for c in frame.columns}
        if "symbol" in columns:
            col = frame[columns["symbol"]].astype(str)
            present = sorted(col.unique())
            if symbol:
                frame = frame[col == symbol]
                if frame.empty:
                    raise ConfigError(
                        f"No bars for symbol {symbol!r}; the data has {', '.join(present[:10])}."
                    )
            elif len(present) == 1:
                symbol = present[0]
            elif len(present) > 1:
                raise ConfigError(
                    f"The bars hold several symbols ({', '.join(present[:10])}); choose one."
                )
        who = f"Bars for {symbol}" if symbol else "Bars"
        missing = [c for c in _PRICE_COLUMNS if c not in columns]
        if missing:
            raise ConfigError(
                f"{who}: missing column(s) {', '.join(missing)} (have: "
                f"{', '.join(map(str, frame.columns))})."
            )
        time_col = next((columns[c] for c in _TIME_COLUMNS if c in columns), None)
        if time_col is not None:
            raw: Any = frame[time_col]
        elif isinstance(frame.index, pd.DatetimeIndex):
            raw = frame.index
        else:
            raise ConfigError(
                f"{who}: no time; need a DatetimeIndex or a ts/time/timestamp column."
            )
        try:
            stamps = pd.DatetimeIndex(pd.to_datetime(raw, utc=True)).tz_convert(None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{who}: the time column has values that are not times ({exc})."
            ) from None
        values: dict[str, Any] = {}
        for name in (*_PRICE_COLUMNS, "volume"):
            if name not in columns:
                values[name] = np.full(len(frame), np.nan)
                continue
            try:
                values[name] = frame[columns[name]].to_numpy(dtype=np.float64, copy=True)
            except (TypeError, ValueError):
                raise ConfigError(f"{who}: column {columns[name]} is not numeric.") from None
        probability = None
        if "probability" in columns:
            try:
                probability = frame[columns["probability"]].to_numpy(dtype=np.float64, copy=True)
            except (TypeError, ValueError):
                raise ConfigError(f"{who}: column probability is not numeric.") from None
        return cls(
            symbol=symbol,
            time=stamps.to_numpy(dtype="datetime64[ns]"),
            open=values["open"],
            high=values["high"],
            low=values["low"],
            close=values["close"],
            volume=values["volume"],
            probability=probability,
        )

    @classmethod
    def read(cls, path: str | Path, symbol: str = "") -> Bars:
        """Bars from a CSV or Parquet file (see from_frame for the columns)."""
        import pandas as pd

        path = Path(path)
        suffixes = "".join(path.suffixes[-2:]).lower()
        if not path.is_file():
            raise ConfigError(f"Bars file {path} does not exist.")
        try:
            if path.suffix.lower() in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            elif suffixes.endswith((".csv", ".csv.gz")):
                frame = pd.read_csv(path)
            else:
                raise ConfigError(f"Bars file {path}: expected a .csv or .parquet file.")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Bars file {path} cannot be read: {exc}") from None
        try:
            return cls.from_frame(frame, symbol)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Param:
    """One parameter: its kind, default and range ([low, high], inclusive).

    `searchable=False` marks a parameter the search never varies unless a task names it
    (ml_signal's model_version: which model it trades is a choice of DEPLOY, not of a search).
    """

    name: str
    kind: ParamKind
    default: int | float | bool
    low: float | None = None
    high: float | None = None
    log: bool = False
    description: str = ""
    searchable: bool = True


# The exits every built-in offers; the backtester applies them (runner.backtest.simulate).
EXIT_PARAMETERS: tuple[Param, ...] = (
    Param(
        "stop_loss",
        "float",
        0.0,
        0.0,
        0.5,
        description="Stop-loss as a fraction of the entry fill price; 0 = off.",
    ),
    Param(
        "take_profit",
        "float",
        0.0,
        0.0,
        1.0,
        description="Take-profit as a fraction of the entry fill price; 0 = off.",
    ),
)


@runtime_checkable
class Strategy(Protocol):
    """A trading rule. Instantiated with no arguments; stateless between calls.

    `signals` returns the target position decided on the close of each bar (+1 long, -1 short,
    0 flat, NaN keep what is held); it is filled at the next bar's open. It must be causal: the
    value at bar t may use bars[: t + 1] only. `params` are as returned by resolve_params.
    """

    name: str

    def parameters(self) -> Sequence[Param]: ...

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]: ...

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        """Cross-parameter constraint violations, one sentence each; [] when the set is usable."""
        ...


def load_strategy(ref: str) -> Strategy:
    """A built-in by short name (see BUILTINS) or a class by import path `package.module:Class`."""
    path = BUILTINS.get(ref, ref)
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise StrategyError(
            f"Strategy {ref!r} is neither a built-in ({', '.join(BUILTINS)}) nor an import "
            "path of the form package.module:Class."
        )

    def fail(what: str) -> StrategyError:
        return StrategyError(f"Strategy {ref!r}: {what}")

    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        absent = exc.name or ""
        if absent and (module_name == absent or module_name.startswith(absent + ".")):
            raise fail(f"module {module_name!r} not found ({exc}).") from None
        # The module exists but needs one that is not installed.
        raise fail(f"importing {module_name!r} failed: {exc}.") from None
    except Exception as exc:  # a user module that fails to import: say why, in one line
        raise fail(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise fail(f"{module_name!r} has no attribute {attr_path!r}.")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise fail(f"{attr_path!r} is not a class (it is a {type(obj).__name__}).")
    try:
        strategy = obj()
    except Exception as exc:
        raise fail(
            f"{attr_path} cannot be created with no arguments: {type(exc).__name__}: {exc}"
        ) from None
    missing = [
        m for m in ("parameters", "signals", "problems") if not callable(getattr(strategy, m, None))
    ]
    if missing:
        raise fail(
            f"{attr_path} is not a Strategy: method(s) {', '.join(missing)} missing "
            "(see runner.strategies.Strategy)."
        )
    if not isinstance(getattr(strategy, "name", None), str) or not strategy.name:
        raise fail(f"{attr_path} is not a Strategy: it needs a non-empty `name` string attribute.")
    try:
        declared = strategy.parameters()
    except Exception as exc:
        raise fail(f"parameters() raised {type(exc).__name__}: {exc}") from None
    issues = _parameter_issues(declared)
    if issues:
        raise fail("parameters() is malformed: " + "; ".join(issues) + ".")
    assert isinstance(strategy, Strategy)
    return strategy


@functools.cache
def _risk_parameters() -> Mapping[str, Param]:
    # Imported on first use: runner.backtest imports this module, and owns the sizing these
    # parameters drive. Cached: resolve_params runs once per trial of a search.
    from runner.backtest.risk import RISK_PARAMETERS

    return {p.name: p for p in RISK_PARAMETERS}


def _risk_problems(values: Mapping[str, Any]) -> list[str]:
    from runner.backtest.risk import risk_problems

    return risk_problems(values)


def _parameter_issues(declared: object) -> list[str]:
    if not isinstance(declared, Sequence) or isinstance(declared, str):
        return [f"it must return a sequence of Param, got {type(declared).__name__}"]
    reserved = _risk_parameters()
    issues: list[str] = []
    seen: set[str] = set()
    for i, p in enumerate(declared):
        if not isinstance(p, Param):
            issues.append(f"item {i} is a {type(p).__name__}, not a Param")
            continue
        if not p.name.isidentifier():
            issues.append(f"item {i} has name {p.name!r}, which is not an identifier")
        if p.name in seen:
            issues.append(f"{p.name!r} is declared twice")
        if p.name in reserved:
            issues.append(
                f"{p.name!r} is a risk parameter common to every strategy "
                "(runner.backtest.RISK_PARAMETERS); a strategy may not declare it"
            )
        seen.add(p.name)
        if p.kind not in ("int", "float", "bool"):
            issues.append(f"{p.name!r} has kind {p.kind!r}; use int, float or bool")
            continue
        if p.low is not None and p.high is not None and p.low > p.high:
            issues.append(f"{p.name!r} has low {p.low} above high {p.high}")
        if p.log and (p.low is None or p.low <= 0):
            issues.append(f"{p.name!r} is log-scaled and needs a positive low bound")
        try:
            default = _coerce(p, p.default)
        except ValueError as exc:
            issues.append(f"{p.name!r} default: {exc}")
            continue
        bound = _bounds_problem(p, default)
        if bound:
            issues.append(f"{p.name!r} default: {bound}")
    return issues


def _coerce(p: Param, value: Any) -> int | float | bool:
    """`value` as p's kind; ValueError (a phrase) when it cannot be one."""
    if p.kind == "bool":
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, int | np.integer) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{value!r} is not a boolean (use true or false)")
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{value!r} is a boolean, not a number")
    number: float
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    elif isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    else:
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    if p.kind == "int":
        if isinstance(value, int | np.integer):
            return int(value)
        if not number.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(number)
    return number


def _bounds_problem(p: Param, value: int | float | bool) -> str | None:
    if p.kind == "bool":
        return None
    if p.low is not None and value < p.low:
        return f"{value} is below its minimum {p.low:g}"
    if p.high is not None and value > p.high:
        return f"{value} is above its maximum {p.high:g}"
    return None


def resolve_params(strategy: Strategy, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """`params` over the strategy's defaults, coerced to each kind and checked.

    The risk parameters common to every strategy (runner.backtest.RISK_PARAMETERS: vol_target,
    kelly_cap, max_position, daily_loss_limit) are accepted without the strategy declaring them;
    they are coerced and checked the same way and appear in the result, after the strategy's own,
    only when given (absent means their default, which changes nothing). Unknown names, values
    of the wrong kind or out of bounds, and the strategy's own problems() are reported together
    in one StrategyError. The result holds plain int/float/bool values (JSON-ready) in the order
    the strategy declares them.
    """
    declared = {p.name: p for p in strategy.parameters()}
    given = dict(params or {})
    # Risk parameters count only when given and not the strategy's own (load_strategy forbids
    # a strategy to declare one; a strategy built by hand keeps its own meaning).
    common = [p for name, p in _risk_parameters().items() if name in given and name not in declared]
    issues = [
        f"unknown parameter {name!r} (known: {', '.join(declared) or 'none'})"
        for name in given
        if name not in declared and name not in _risk_parameters()
    ]
    resolved: dict[str, Any] = {}
    typed = True
    for name, p in declared.items():
        if name not in given:
            resolved[name] = _coerce(p, p.default)
            continue
        try:
            value = _coerce(p, given[name])
        except ValueError as exc:
            issues.append(f"{name} = {exc}")
            typed = False
            resolved[name] = _coerce(p, p.default)
            continue
        bound = _bounds_problem(p, value)
        if bound:
            issues.append(f"{name} = {bound}")
        resolved[name] = value
    for p in common:
        try:
            value = _coerce(p, given[p.name])
        except ValueError as exc:
            issues.append(f"{p.name} = {exc}")
            typed = False
            continue
        bound = _bounds_problem(p, value)
        if bound:
            issues.append(f"{p.name} = {bound}")
        resolved[p.name] = value
    if common:
        issues.extend(
            _risk_problems({p.name: resolved[p.name] for p in common if p.name in resolved})
        )
    if typed:  # problems() may assume well-typed values; skip it when some are not
        try:
            issues.extend(strategy.problems(resolved))
        except Exception as exc:
            issues.append(f"problems() raised {type(exc).__name__}: {exc}")
    if issues:
        raise StrategyError(
            f"Invalid parameters for strategy {strategy.name!r}: " + "; ".join(issues) + ".",
            issues,
        )
    return resolved
