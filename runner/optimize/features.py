"""The samples a model is retrained on: one symbol's rows of the feature mart as numpy arrays.

It owns reading `fct_bar_features` (parameterised SQL through the warehouse) into a FeatureFrame
and the frame's invariants (time order, spans t0 <= t1); it computes no feature and decides no
split: the mart computes features point in time, runner.optimize.purged cuts the samples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from runner.errors import ConfigError
from runner.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

FEATURE_RELATION = "fct_bar_features"
FEATURE_PREFIX = "f_"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.datetime64]
IntArray = npt.NDArray[np.intp]


def as_time(value: datetime | np.datetime64 | str) -> np.datetime64:
    """A time as numpy datetime64[us], naive UTC (aware datetimes are converted to UTC first)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return cast(np.datetime64, np.asarray(value).astype("datetime64[us]")[()])


@dataclass(frozen=True, eq=False)
class FeatureFrame:
    """One symbol's samples, oldest first. Row i is decided at t0[i] with features X[i] (known at
    t0, NaN where the mart has NULL) and resolves at t1[i] (NaT while unresolved) with label y[i]
    (1.0/0.0, NaN while unresolved) and the forward return behind it."""

    symbol: str
    t0: TimeArray
    t1: TimeArray
    X: FloatArray
    feature_names: tuple[str, ...]
    y: FloatArray
    forward_return: FloatArray
    horizon_bars: int

    def __post_init__(self) -> None:
        n = len(self.t0)
        if self.X.ndim != 2 or self.X.shape != (n, len(self.feature_names)):
            raise ValueError(
                f"X has shape {self.X.shape}; expected ({n}, {len(self.feature_names)})"
            )
        for name, array in (
            ("t1", self.t1),
            ("y", self.y),
            ("forward_return", self.forward_return),
        ):
            if len(array) != n:
                raise ValueError(f"{name} has {len(array)} rows; t0 has {n}")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature names repeat")
        if n > 1 and np.any(self.t0[1:] < self.t0[:-1]):
            raise ValueError("samples must be sorted by t0 (one symbol, oldest first)")
        resolved = ~np.isnat(self.t1)
        if np.any(self.t1[resolved] < self.t0[resolved]):
            raise ValueError("a label resolves before its sample is decided (t1 < t0)")
        labels = self.y[~np.isnan(self.y)]
        if np.any((labels != 0.0) & (labels != 1.0)):
            raise ValueError("labels must be 0, 1 or NaN (unresolved)")
        if np.any(np.isnan(self.y) != ~resolved):
            raise ValueError("a label is known exactly when its resolution time t1 is")
        if self.horizon_bars < 1:
            raise ValueError(f"the label horizon must be >= 1 bar, got {self.horizon_bars}")

    def __len__(self) -> int:
        return len(self.t0)

    def columns(self, names: Sequence[str]) -> IntArray:
        """Positions of `names` in X; a missing name is a ConfigError naming it."""
        where = {name: j for j, name in enumerate(self.feature_names)}
        missing = [name for name in names if name not in where]
        if missing:
            raise ConfigError(
                f"The features {', '.join(missing)} are not in the feature frame of {self.symbol}"
                f" (it has {', '.join(self.feature_names) or 'none'})."
            )
        return np.array([where[name] for name in names], dtype=np.intp)

    @classmethod
    def build(
        cls,
        *,
        symbol: str,
        t0: npt.ArrayLike,
        t1: npt.ArrayLike,
        X: npt.ArrayLike,
        feature_names: Sequence[str],
        y: npt.ArrayLike,
        forward_return: npt.ArrayLike | None = None,
        horizon_bars: int,
    ) -> FeatureFrame:
        """A frame from array-likes (times become datetime64[us]; missing forward returns NaN)."""
        times0 = np.asarray(t0).astype("datetime64[us]")
        labels = np.asarray(y, dtype=np.float64)
        return cls(
            symbol=symbol,
            t0=times0,
            t1=np.asarray(t1).astype("datetime64[us]"),
            X=np.asarray(X, dtype=np.float64).reshape(len(times0), len(feature_names)),
            feature_names=tuple(feature_names),
            y=labels,
            forward_return=(
                np.full(len(labels), np.nan)
                if forward_return is None
                else np.asarray(forward_return, dtype=np.float64)
            ),
            horizon_bars=int(horizon_bars),
        )

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame, symbol: str) -> FeatureFrame:
        """From a frame with the mart's columns (bar_at, f_*, label_horizon_bars, forward_return,
        label, label_resolved_at), one symbol, any order."""
        frame = frame.sort_values("bar_at", kind="stable")
        names = [c for c in frame.columns if str(c).startswith(FEATURE_PREFIX)]
        horizons = frame["label_horizon_bars"].dropna().unique()
        if len(horizons) > 1:
            raise ConfigError(
                f"{symbol}: the feature mart mixes label horizons {sorted(horizons)}; rebuild it."
            )
        horizon = int(horizons[0]) if len(horizons) else 1
        label = frame["label"].to_numpy(dtype=np.float64, na_value=np.nan)
        return cls.build(
            symbol=symbol,
            t0=_times(frame["bar_at"]),
            t1=_times(frame["label_resolved_at"]),
            X=frame[names].to_numpy(dtype=np.float64, na_value=np.nan),
            feature_names=names,
            y=label,
            forward_return=frame["forward_return"].to_numpy(dtype=np.float64, na_value=np.nan),
            horizon_bars=horizon,
        )


def _times(column: pd.Series[Any]) -> TimeArray:
    import pandas as pd

    values = pd.to_datetime(column)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[us]")


def feature_columns(wh: Warehouse) -> list[str]:
    """The f_ columns of the feature mart, in table order."""
    rows = wh.fetchall(
        "select column_name from information_schema.columns"
        " where table_schema = %(schema)s and table_name = %(name)s order by ordinal_position",
        {"schema": wh.schema, "name": FEATURE_RELATION},
    )
    return [str(r[0]) for r in rows if str(r[0]).startswith(FEATURE_PREFIX)]


def load_features(
    wh: Warehouse,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> FeatureFrame:
    """Rows of `symbol` in fct_bar_features with start <= bar_at <= end (either bound optional)."""
    if not wh.table_exists(FEATURE_RELATION):
        raise ConfigError(
            f"{FEATURE_RELATION} is not in the warehouse yet: ingest bars and build it with "
            "`runner analyze` (dbt build) first."
        )
    names = feature_columns(wh)
    bad = [n for n in names if not _IDENTIFIER.match(n)]
    if bad:  # the names become SQL identifiers below
        raise ConfigError(f"{FEATURE_RELATION} has feature columns with odd names: {bad}")
    columns = [
        "bar_at",
        *names,
        "label_horizon_bars",
        "forward_return",
        "label",
        "label_resolved_at",
    ]
    sql = f"select {', '.join(columns)} from {FEATURE_RELATION} where symbol = %(symbol)s"
    params: dict[str, Any] = {"symbol": symbol}
    if start is not None:
        sql += " and bar_at >= %(start)s"
        params["start"] = as_time(start).item()
    if end is not None:
        sql += " and bar_at <= %(end)s"
        params["end"] = as_time(end).item()
    frame = wh.fetch_df(sql + " order by bar_at", params)
    if frame.empty:
        raise ConfigError(f"No rows for {symbol!r} in {FEATURE_RELATION} in the requested window.")
    return FeatureFrame.from_pandas(frame, symbol)
