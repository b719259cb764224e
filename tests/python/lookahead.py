"""A look-ahead checker for point-in-time marts (docs/features.md "Point in time").

It builds a mart on the bars of a warehouse, then again on those bars cut at several times t, and
reports every feature value of a row with bar_at <= t that the later bars changed, and every label
that shows an outcome not yet known at t. It owns the build-and-compare loop; it does not load the
bars (the caller does) and it does not assert: the tests decide what a report must say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from runner.config import Settings
from runner.dbt import run_dbt
from runner.warehouse import connect

KEY = ("symbol", "bar_at")
LABEL_COLUMNS = ("forward_return", "label", "label_resolved_at")
# Same SQL, same data: a value may differ only by the order a warehouse sums a window in.
RTOL = 1e-12
ATOL = 1e-15


@dataclass(frozen=True)
class Leak:
    """One column that differs at one cut: how many rows, and the first of them."""

    column: str
    cut_at: datetime
    n_rows: int
    example: dict[str, Any]


@dataclass(frozen=True)
class LookaheadReport:
    cuts: tuple[datetime, ...]
    rows_compared: int
    leaks: tuple[Leak, ...] = field(default=())

    @property
    def leaking_columns(self) -> set[str]:
        return {leak.column for leak in self.leaks}

    def describe(self) -> str:
        return "; ".join(
            f"{leak.column} at cut {leak.cut_at:%Y-%m-%d %H:%M}: {leak.n_rows} row(s), "
            f"e.g. {leak.example}"
            for leak in self.leaks
        )


def check_lookahead(
    settings: Settings,
    cuts: Iterable[datetime],
    *,
    model: str = "fct_bar_features",
    feature_prefix: str = "f_",
    dbt_vars: Mapping[str, Any] | None = None,
) -> LookaheadReport:
    """Build `model` (and what it depends on) on the bars in the warehouse's raw_bars, then cut the
    bars after each time in `cuts` (latest first) and build again. Reports, per cut t:
    - every `feature_prefix` column of a row with bar_at <= t whose value (or NULL-ness) is not
      the one the full build has, and rows with bar_at <= t that appear or vanish ("__rows__");
    - every label column that is not NULL although the full build resolves it after t (or never),
      or that differs from the full build although it resolved by t.
    The cuts are applied by deleting rows from raw_bars: the warehouse ends up holding the bars up
    to the earliest cut, so give it a scratch warehouse."""
    ordered = sorted(set(cuts), reverse=True)
    full = _build(settings, model, dbt_vars)
    features = [c for c in full.columns if c.startswith(feature_prefix)]
    leaks: list[Leak] = []
    compared = 0
    for cut in ordered:
        with connect(settings) as wh:
            wh.execute("delete from raw_bars where ts > %(cut)s", {"cut": cut})
        cut_frame = _build(settings, model, dbt_vars)
        known = full[full["bar_at"] <= pd.Timestamp(cut)]
        compared += len(known)
        leaks += _compare(known, cut_frame, features, cut)
    return LookaheadReport(cuts=tuple(ordered), rows_compared=compared, leaks=tuple(leaks))


def _build(settings: Settings, model: str, dbt_vars: Mapping[str, Any] | None) -> pd.DataFrame:
    run_dbt(settings, "run", select=f"+{model}", dbt_vars=dbt_vars)
    with connect(settings) as wh:
        frame = wh.fetch_df(f"select * from {model}")
    for column in ("bar_at", "label_resolved_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame.sort_values(list(KEY)).reset_index(drop=True)


def _compare(
    full: pd.DataFrame, cut_frame: pd.DataFrame, features: Sequence[str], cut: datetime
) -> list[Leak]:
    both = full.merge(
        cut_frame, on=list(KEY), how="outer", suffixes=("_full", "_cut"), indicator=True
    )
    leaks: list[Leak] = []
    unmatched = both[both["_merge"] != "both"]
    if len(unmatched):
        leaks.append(_leak("__rows__", cut, unmatched, []))
    both = both[both["_merge"] == "both"]
    for column in features:
        if f"{column}_cut" not in both:
            leaks.append(_leak(column, cut, both, []))
            continue
        differs = _differs(both[f"{column}_full"], both[f"{column}_cut"])
        if differs.any():
            leaks.append(_leak(column, cut, both[differs], [column]))
    if all(f"{c}_full" in both for c in LABEL_COLUMNS):
        unresolved = both["label_resolved_at_full"].isna() | (
            both["label_resolved_at_full"] > pd.Timestamp(cut)
        )
        for column in LABEL_COLUMNS:
            shown = both[f"{column}_cut"].notna() & unresolved
            changed = ~unresolved & _differs(both[f"{column}_full"], both[f"{column}_cut"])
            bad = shown | changed
            if bad.any():
                leaks.append(_leak(column, cut, both[bad], [column]))
    return leaks


def _differs(full: pd.Series, cut: pd.Series) -> pd.Series:
    """True where NULL-ness differs, or both are set and the values are not equal (numbers to
    RTOL/ATOL, anything else exactly)."""
    null_full, null_cut = full.isna(), cut.isna()
    set_both = ~null_full & ~null_cut
    if pd.api.types.is_numeric_dtype(full) and pd.api.types.is_numeric_dtype(cut):
        a = full.to_numpy(dtype=float, na_value=np.nan)
        b = cut.to_numpy(dtype=float, na_value=np.nan)
        unequal = ~np.isclose(a, b, rtol=RTOL, atol=ATOL)
    else:
        unequal = (full != cut).to_numpy()
    return pd.Series(
        (null_full != null_cut).to_numpy() | (set_both.to_numpy() & unequal), full.index
    )


def _leak(column: str, cut: datetime, rows: pd.DataFrame, columns: Sequence[str]) -> Leak:
    first = rows.iloc[0]
    example: dict[str, Any] = {k: first[k] for k in KEY}
    for c in columns:
        example[f"{c}_full"] = first.get(f"{c}_full")
        example[f"{c}_cut"] = first.get(f"{c}_cut")
    return Leak(column=column, cut_at=cut, n_rows=len(rows), example=example)
