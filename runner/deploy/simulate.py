"""The paper-trading simulator: replays a component's bars forward through the active allocation
and writes the trades (and model predictions) a live system would have produced.

Owns: the cursor (simulation_state), the live positions left open at it (simulation_open_trades),
the unit key of a paper trade, which book trades were taken (routing.assign, as `runner route`),
what a version change does to an open position (the component's open-position policy), and the
rows handed to the ingest. It decides no allocation (the rollout does) and fills no order itself:
each version's book is runner.backtest's, over every bar up to the end of the window.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from runner.audit import AuditTrail, Event
from runner.backtest import EXIT_REASONS, BacktestResult, Costs, backtest, bars_per_year_of
from runner.config import Settings
from runner.dbt import run_dbt
from runner.deploy import routing, state
from runner.engine_tables import utc
from runner.errors import ConfigError
from runner.ingest import IngestResult, ingest_file
from runner.ingest.specs import Kind
from runner.optimize import models
from runner.optimize.data import BARS_RELATION
from runner.optimize.features import FEATURE_RELATION
from runner.optimize.probabilities import needs_probability, with_model
from runner.optimize.scoring import THRESHOLD, prediction_id, version_text
from runner.optimize.versions import (
    Component,
    StrategyVersion,
    get_version,
    production_version,
    read_components,
    seed_versions,
)
from runner.strategies import Bars, Strategy, load_strategy, resolve_params
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

TRADE_PREFIX = "sim:"  # simulated trade ids start so; a component's own trades never do
END_OF_DATA = EXIT_REASONS.index("end_of_data")
YEAR_DAYS = 252  # days of bars that fix the volatility's annualisation (see bars_per_year)
FEATURES_SELECT = f"+{FEATURE_RELATION}"

_TRADE_COLUMNS = (
    "trade_id",
    "component_id",
    "symbol",
    "side",
    "quantity",
    "entry_ts",
    "exit_ts",
    "entry_price",
    "exit_price",
    "fees",
    "strategy_version",
    "variant",
    "model_version",
)
_PREDICTION_COLUMNS = (
    "prediction_id",
    "model_id",
    "model_version",
    "symbol",
    "ts",
    "predicted_label",
    "predicted_proba",
    "actual_label",
)


# -- what a run reports -------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmCount:
    """One version under one arm in the window: entries taken, entries routed to the other arm
    (never taken), trades closed and written, positions left open at the end of the window."""

    version: int
    arm: str
    entered: int = 0
    not_taken: int = 0
    closed: int = 0
    still_open: int = 0


@dataclass(frozen=True)
class OpenPosition:
    """A live paper position open at the end of the window (a row of simulation_open_trades)."""

    version: int
    arm: str
    test_id: str | None
    unit_key: str
    entry_at: datetime
    side: str
    entry_price: float


@dataclass(frozen=True)
class PolicyExit:
    """An open position whose version left the allocation and was closed by the policy."""

    version: int
    arm: str
    unit_key: str
    entry_at: datetime
    exit_at: datetime
    policy: str
    exit_reason: str  # flatten, or the move_stops exit: signal | stop_loss | take_profit
    exit_price: float


@dataclass(frozen=True)
class SimulationReport:
    """What one replay did. The window is (window_start, window_end]: window_start is the cursor
    before the run, window_end the last bar replayed (at most `until`), the cursor after it.
    Both are None, and nothing is written, when no bar lies between the cursor and `until`."""

    component_id: str
    symbol: str
    until: datetime
    window_start: datetime | None
    window_end: datetime | None
    bars_replayed: int
    open_position_policy: str
    test_id: str | None
    treatment_share: float
    counts: tuple[ArmCount, ...]
    trades_written: int
    open_positions: tuple[OpenPosition, ...]
    policy_exits: tuple[PolicyExit, ...]
    predictions_written: int
    bars_ingest: IngestResult | None = None
    trades_ingest: IngestResult | None = None
    predictions_ingest: IngestResult | None = None
    notes: tuple[str, ...] = ()

    @property
    def trades_inserted(self) -> int:
        return 0 if self.trades_ingest is None else self.trades_ingest.inserted

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        for name in ("bars_ingest", "trades_ingest", "predictions_ingest"):
            result = getattr(self, name)
            value[name] = None if result is None else result.to_dict()
        value["trades_inserted"] = self.trades_inserted
        return value


# -- the pieces ---------------------------------------------------------------------------------
def unit_key(component_id: str, symbol: str, entry_at: datetime) -> str:
    """The randomisation unit of a paper trade: the signal that opened it (component, symbol,
    entry bar time in ISO seconds). `runner route` given this key picks the same arm."""
    return f"{component_id}:{symbol}:{entry_at:%Y-%m-%dT%H:%M:%S}"


def trade_id(component_id: str, version: int, entry_at: datetime) -> str:
    """The stable id of a paper trade: one per version and entry bar, so a replay never
    duplicates one (the ingest counts a row it already holds as unchanged)."""
    return f"{TRADE_PREFIX}{component_id}:v{version}:{entry_at:%Y-%m-%dT%H:%M:%S}"


@dataclass(frozen=True)
class ManagedExit:
    """Where a position re-managed from bar `start` on closes: bar index, fill price and reason;
    index None while it is still open at the last bar."""

    index: int | None
    price: float
    reason: str


def managed_exit(
    bars: Bars,
    target: NDArray[np.float64],
    side: int,
    entry_price: float,
    start: int,
    *,
    stop_loss: float,
    take_profit: float,
    slippage: float,
) -> ManagedExit:
    """Walk an open position bar by bar from `start` with the backtester's fill rules
    (docs/backtesting.md, rules 1 and 4-7): at each bar first the target decided on the previous
    close (a different non-NaN target exits at the open), then the stop-loss and take-profit
    levels `entry_price * (1 -/+ side * level)` against the bar's range (a gap fills at the open,
    a bar touching both is a stop), slippage (a fraction) applied to the exit fill. The same
    levels as the version's give exactly its book's exit (tested against the kernel)."""
    use_sl, use_tp = stop_loss > 0.0, take_profit > 0.0
    stop_level = entry_price * (1.0 - side * stop_loss)
    tp_level = entry_price * (1.0 + side * take_profit)
    for t in range(max(start, 1), len(bars)):
        o = float(bars.open[t])
        want = float(target[t - 1])
        if want == want and want != side:
            return ManagedExit(t, o * (1.0 - side * slippage), "signal")
        low, high = float(bars.low[t]), float(bars.high[t])
        price, reason = 0.0, ""
        if side > 0:
            if use_sl and low <= stop_level:
                price, reason = min(o, stop_level), "stop_loss"
            elif use_tp and high >= tp_level:
                price, reason = max(o, tp_level), "take_profit"
        else:
            if use_sl and high >= stop_level:
                price, reason = max(o, stop_level), "stop_loss"
            elif use_tp and low <= tp_level:
                price, reason = min(o, tp_level), "take_profit"
        if reason:
            return ManagedExit(t, price * (1.0 - side * slippage), reason)
    return ManagedExit(None, math.nan, "end_of_data")


def bars_per_year(bars: Bars, periods_per_year: float) -> float:
    """The volatility's annualisation for a book: `bars_per_year_of` over the first YEAR_DAYS UTC
    days of bars, leaving out a last day that may still be filling up, so the figure (and so every
    size) does not move as the window advances (exactly so once a year of bars precedes the first
    replay, and for any series whose days hold the same number of bars)."""
    if len(bars) == 0:
        return float(periods_per_year)
    days = bars.time.astype("datetime64[D]")
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    if len(starts) > YEAR_DAYS:
        stop = int(starts[YEAR_DAYS])
    elif len(starts) > 1:
        stop = int(starts[-1])
    else:
        stop = len(bars)
    return bars_per_year_of(bars.slice(0, stop), periods_per_year) or float(periods_per_year)


def _naive(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else np.datetime64(value, "us").item()
    assert isinstance(moment, datetime)
    return utc(moment).replace(tzinfo=None)


def _moment(time: NDArray[np.datetime64], i: int) -> datetime:
    value = time[i].astype("datetime64[us]").item()
    assert isinstance(value, datetime)
    return value


# -- the bars file and the relations dbt builds -------------------------------------------------
def _is_parquet(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"PAR1"


def _not_after(values: Sequence[Any], end: datetime) -> NDArray[np.bool_]:
    """Which time values to keep: at or before `end`, or not readable as an ISO time (the ingest
    judges those and rejects them with its own message)."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(values), utc=True, errors="coerce", format="ISO8601")
    stamps = stamps.dt.tz_convert(None)
    keep = stamps.isna() | (stamps <= pd.Timestamp(end))
    return np.asarray(keep.to_numpy(dtype=bool))


def filter_bars_file(source: Path, end: datetime, folder: Path) -> Path:
    """A copy of the bars file in `folder` without its rows stamped after `end` (same format,
    same text for CSV); a file without a `ts` column is copied whole, for the ingest to refuse."""
    source = source.expanduser()
    if not source.is_file():
        raise ConfigError(
            f"Bars file {source} does not exist; give the path of a CSV or Parquet file."
        )
    dest = folder / f"{source.stem}.until_{end:%Y%m%dT%H%M%S}{source.suffix or '.csv'}"
    if _is_parquet(source):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(source)
        names = [n.strip().lower() for n in table.column_names]
        if "ts" in names:
            column = table.column(names.index("ts"))
            values = [
                None if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)
                for v in column.to_pylist()
            ]
            table = table.filter(pa.array(_not_after(values, end)))
        pq.write_table(table, dest)
        return dest
    with source.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.reader(handle))
    header = rows[0] if rows else []
    names = [n.strip().lower() for n in header]
    body = rows[1:]
    if "ts" in names and body:
        at = names.index("ts")
        keep = _not_after([row[at] if at < len(row) else None for row in body], end)
        body = [row for row, kept in zip(body, keep, strict=True) if kept]
    with dest.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerows([header, *body] if rows else [])
    return dest


def _max_time(wh: Warehouse, sql: str, params: Mapping[str, Any]) -> datetime | None:
    row = wh.fetchone(sql, params)
    return None if row is None or row[0] is None else _naive(row[0])


def _features_until(wh: Warehouse, symbol: str) -> datetime | None:
    if not wh.table_exists(FEATURE_RELATION):
        return None
    return _max_time(
        wh, f"select max(bar_at) from {FEATURE_RELATION} where symbol = %(s)s", {"s": symbol}
    )


# -- the allocation, the cursor and the books ---------------------------------------------------
@dataclass(frozen=True)
class _OpenRow:
    version: int
    entry_at: datetime
    unit_key: str
    arm: str
    test_id: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class _Book:
    """A version's paper book: every trade its strategy makes on the bars up to the window end."""

    version: StrategyVersion
    strategy: Strategy
    params: Mapping[str, Any]
    bars: Bars  # with the model's probabilities attached when the strategy trades a model
    result: BacktestResult
    model: tuple[str, int] | None  # (model id, model version) of a model-driven strategy
    by_entry: Mapping[datetime, int]  # entry bar time -> trade index


@dataclass(frozen=True)
class _Paper:
    """One live paper trade: closed (exit set) or still open at the window end."""

    version: int
    arm: str
    test_id: str | None
    unit_key: str
    side: int
    size: float
    entry_at: datetime
    entry_price: float
    exit_at: datetime | None = None
    exit_price: float = math.nan
    recorded_at: datetime | None = None  # when the open row was first recorded


def _ensure_allocation(
    wh: Warehouse, settings: Settings, component: Component, now: datetime
) -> list[state.AllocationRow]:
    """The component's allocation, its production deployment created on first use (version 1
    seeded from the components seed when the component has no version yet)."""
    rows = state.allocation(wh, component.component_id)
    if rows:
        return rows
    policy = component.open_position_policy
    if policy not in state.POLICIES:
        raise ConfigError(f"Component {component.component_id!r}: unknown policy {policy!r}.")
    cid = component.component_id
    with wh.transaction():
        state.lock(wh, cid)
        trail = AuditTrail(wh, secrets=settings.secrets())
        trail.record(seed_versions(wh, [component]), at=now)
        version = production_version(wh, cid).version
        _, created = state.ensure_production(wh, cid, version, cast(state.Policy, policy), now)
        if created:  # the event runner deploy writes when it finds the production version
            trail.record(
                [
                    Event(
                        "deployment_created",
                        f"Version {version} of {cid} is in production with all traffic.",
                        {"version": version, "environment": "production"},
                        component_id=cid,
                    )
                ],
                at=now,
            )
    return state.allocation(wh, cid)


def _open_rows(wh: Warehouse, component_id: str) -> list[_OpenRow]:
    rows = wh.fetchall(
        "select version, entry_ts, unit_key, arm, test_id, recorded_at"
        " from simulation_open_trades where component_id = %(c)s order by entry_ts, version",
        {"c": component_id},
    )
    return [_OpenRow(int(r[0]), _naive(r[1]), str(r[2]), str(r[3]), r[4], utc(r[5])) for r in rows]


def _cursor(wh: Warehouse, component: Component) -> datetime | None:
    """Where the replay resumes: the stored cursor; on a first run the exit of the component's
    last own trade (simulated ones left out, so a first run killed after its ingest resumes from
    the same place), else its first bar."""
    row = wh.fetchone(
        "select simulated_until from simulation_state where component_id = %(c)s",
        {"c": component.component_id},
    )
    if row is not None:
        return _naive(row[0])
    last = _max_time(
        wh,
        "select max(exit_ts) from raw_trades where component_id = %(c)s"
        " and left(trade_id, length(%(p)s)) <> %(p)s",
        {"c": component.component_id, "p": TRADE_PREFIX},
    )
    if last is not None:
        return last
    row = wh.fetchone(
        f"select min(bar_at) from {BARS_RELATION} where symbol = %(s)s", {"s": component.symbol}
    )
    return None if row is None or row[0] is None else _naive(row[0])


def _load_bars(wh: Warehouse, symbol: str, end: datetime) -> Bars:
    frame = wh.fetch_df(
        "select bar_at as ts, open_price as open, high_price as high, low_price as low,"
        f" close_price as close, volume from {BARS_RELATION}"
        " where symbol = %(s)s and bar_at <= %(end)s order by bar_at",
        {"s": symbol, "end": end},
    )
    return Bars.from_frame(frame, symbol=symbol)


def _book(
    wh: Warehouse,
    component: Component,
    version: int,
    bars: Bars,
    costs: Costs,
    per_year: float,
    window_end: datetime,
) -> _Book:
    found = get_version(wh, component.component_id, version)
    strategy = load_strategy(found.strategy)
    params = resolve_params(strategy, found.params)
    model: tuple[str, int] | None = None
    if needs_probability(strategy):
        model = (models.model_of(wh, component.component_id), int(params["model_version"]))
        covered = _features_until(wh, component.symbol)
        if covered is None or covered < window_end:
            raise ConfigError(
                f"{FEATURE_RELATION} ends at {covered or 'nothing'} for {component.symbol}, before "
                f"the window's last bar {window_end}: build it with `runner analyze`, then "
                "simulate again."
            )
        bars = with_model(wh, bars, strategy, params, model[0])
    result = backtest(strategy, bars, params, costs=costs, bars_per_year=per_year)
    entries = bars.time[result.trades.entry_index]
    by_entry = {_moment(entries, i): i for i in range(len(entries))}
    return _Book(found, strategy, params, bars, result, model, by_entry)


# -- one replay ---------------------------------------------------------------------------------
@dataclass
class _Replay:
    component: Component
    cursor: datetime
    window_end: datetime
    costs: Costs
    closed: list[_Paper] = field(default_factory=list)
    still_open: list[_Paper] = field(default_factory=list)
    policy_exits: list[PolicyExit] = field(default_factory=list)
    counts: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    assigned: dict[str, tuple[routing.Arm, datetime]] = field(default_factory=dict)

    def count(self, version: int, arm: str, what: str) -> None:
        bucket = self.counts.setdefault((version, arm), {})
        bucket[what] = bucket.get(what, 0) + 1

    def take(self, paper: _Paper, book: _Book, i: int) -> None:
        """Close `paper` where its book closes trade i, or keep it open at the window end."""
        trades = book.result.trades
        if int(trades.exit_reason[i]) == END_OF_DATA:
            self.still_open.append(paper)
            self.count(paper.version, paper.arm, "still_open")
            return
        exit_at = _moment(book.bars.time, int(trades.exit_index[i]))
        self.close(paper, exit_at, float(trades.exit_price[i]))

    def close(self, paper: _Paper, exit_at: datetime, price: float) -> None:
        self.closed.append(
            _Paper(
                paper.version,
                paper.arm,
                paper.test_id,
                paper.unit_key,
                paper.side,
                paper.size,
                paper.entry_at,
                paper.entry_price,
                exit_at,
                price,
            )
        )
        self.count(paper.version, paper.arm, "closed")


def _paper(book: _Book, i: int, arm: str, test_id: str | None, key: str) -> _Paper:
    trades = book.result.trades
    return _Paper(
        version=book.version.version,
        arm=arm,
        test_id=test_id,
        unit_key=key,
        side=int(trades.side[i]),
        size=float(trades.size[i]),
        entry_at=_moment(book.bars.time, int(trades.entry_index[i])),
        entry_price=float(trades.entry_price[i]),
    )


@dataclass(frozen=True)
class _Test:
    """The running test the window is routed under: its id, the treatment's share and the
    data time it counts trades from (units entered at or before it belong to production)."""

    test_id: str
    share: float
    stage: int
    data_start: datetime | None


def _new_entries(
    replay: _Replay, book: _Book, row: state.AllocationRow, test: _Test | None
) -> None:
    """The book's entries in the window that its arm takes, routed as routing.route routes:
    without a test (or before its data start) every production entry; under the test those whose
    unit routing.assign sends to this version's arm (control or treatment). Every unit routed
    under the test is kept for ab_assignments, taken or not (assigned, not executed)."""
    component = replay.component
    trades = book.result.trades
    for i in range(len(trades)):
        entry_at = _moment(book.bars.time, int(trades.entry_index[i]))
        if not replay.cursor < entry_at <= replay.window_end:
            continue
        key = unit_key(component.component_id, component.symbol, entry_at)
        if test is None or (test.data_start is not None and entry_at <= test.data_start):
            arm, takes = "production", row.arm != "treatment"
            test_id = None
        else:
            arm = routing.assign(test.test_id, key, test.share)
            takes, test_id = arm == row.arm, test.test_id
            replay.assigned.setdefault(key, (arm, entry_at))
        if not takes:
            replay.count(row.version, row.arm, "not_taken")
            continue
        replay.count(row.version, arm, "entered")
        replay.take(_paper(book, i, arm, test_id, key), book, i)


def _carry_open(
    replay: _Replay,
    row: _OpenRow,
    book: _Book,
    allocated: set[int],
    production: _Book,
    bars: Bars,
) -> None:
    """A position open at the cursor: it finishes under its own version's book while that
    version is allocated (or the policy is finish); otherwise flatten closes it at the first
    open after the cursor and move_stops re-manages it with the production version's levels."""
    i = book.by_entry.get(row.entry_at)
    if i is None:
        replay.notes.append(
            f"version {row.version}'s book has no trade entered at {row.entry_at} any more "
            "(were bars changed?); its open position is left as it was."
        )
        unknown = _Paper(
            row.version,
            row.arm,
            row.test_id,
            row.unit_key,
            0,
            0.0,
            row.entry_at,
            math.nan,
            recorded_at=row.recorded_at,
        )
        replay.still_open.append(unknown)
        return
    paper = replace(
        _paper(book, i, row.arm, row.test_id, row.unit_key), recorded_at=row.recorded_at
    )
    policy = replay.component.open_position_policy
    if row.version in allocated or policy == "finish":
        replay.take(paper, book, i)
        return
    first = int(np.searchsorted(bars.time, np.datetime64(replay.cursor, "ns"), side="right"))
    slippage = replay.costs.slippage_bps / 1e4
    if policy == "flatten":
        price = float(bars.open[first]) * (1.0 - paper.side * slippage)
        exit_at, reason = _moment(bars.time, first), "flatten"
    else:  # move_stops
        params = production.params
        target = book.strategy.signals(book.bars, book.params)
        managed = managed_exit(
            bars,
            target,
            paper.side,
            paper.entry_price,
            first,
            stop_loss=float(params.get("stop_loss", 0.0)),
            take_profit=float(params.get("take_profit", 0.0)),
            slippage=slippage,
        )
        if managed.index is None:
            replay.still_open.append(paper)
            replay.count(paper.version, paper.arm, "still_open")
            return
        price, exit_at, reason = managed.price, _moment(bars.time, managed.index), managed.reason
    replay.close(paper, exit_at, price)
    replay.policy_exits.append(
        PolicyExit(
            paper.version, paper.arm, paper.unit_key, paper.entry_at, exit_at, policy, reason, price
        )
    )


# -- rows for the ingest ------------------------------------------------------------------------
def _number(value: float) -> str:
    return repr(float(value))  # the shortest text that reads back as the same double


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _side(side: int) -> str:
    return "long" if side > 0 else "short" if side < 0 else "?"


def _trade_rows(
    component: Component, papers: Iterable[_Paper], books: Mapping[int, _Book], fee: float
) -> list[list[str]]:
    rows = []
    for p in sorted(papers, key=lambda p: (p.entry_at, p.version)):
        assert p.exit_at is not None
        model = books[p.version].model
        # Sized on the component's capital: `size` of the initial capital at the entry fill.
        quantity = p.size * component.initial_capital / p.entry_price
        fees = fee * (p.entry_price + p.exit_price) * quantity
        rows.append(
            [
                trade_id(component.component_id, p.version, p.entry_at),
                component.component_id,
                component.symbol,
                _side(p.side),
                _number(quantity),
                _iso(p.entry_at),
                _iso(p.exit_at),
                _number(p.entry_price),
                _number(p.exit_price),
                _number(fees),
                str(p.version),
                p.arm,
                "" if model is None else f"v{model[1]}",
            ]
        )
    return rows


def _prediction_rows(
    component: Component, books: Iterable[_Book], cursor: datetime, window_end: datetime
) -> list[list[str]]:
    rows: dict[str, list[str]] = {}
    for book in books:
        if book.model is None or book.bars.probability is None:
            continue
        model_id, version = book.model
        time, proba = book.bars.time, book.bars.probability
        lo = int(np.searchsorted(time, np.datetime64(cursor, "ns"), side="right"))
        hi = int(np.searchsorted(time, np.datetime64(window_end, "ns"), side="right"))
        for t in range(lo, hi):
            p = float(proba[t])
            if not math.isfinite(p):
                continue
            at = _moment(time, t)
            key = prediction_id(model_id, version, component.symbol, at)
            rows[key] = [
                key,
                model_id,
                version_text(version),
                component.symbol,
                _iso(at),
                str(int(p >= THRESHOLD)),
                _number(p),
                "",
            ]
    return [rows[k] for k in sorted(rows)]


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _save_state(
    wh: Warehouse,
    component: Component,
    window_end: datetime,
    replay: _Replay,
    test: _Test | None,
    now: datetime,
) -> None:
    """The cursor, the open positions and the units assigned under the test, in one transaction
    after the ingests: a run killed before it resumes from the same cursor and writes the same
    rows again (counted unchanged; an assignment already logged is kept as it is)."""
    cid = component.component_id
    still_open = replay.still_open
    with wh.transaction():
        state.lock(wh, cid)
        if test is not None:
            for key, (arm, entry_at) in sorted(replay.assigned.items()):
                routing.record_assignment(wh, test.test_id, key, arm, test.stage, entry_at)
        wh.execute("delete from simulation_open_trades where component_id = %(c)s", {"c": cid})
        for p in still_open:
            wh.execute(
                "insert into simulation_open_trades (component_id, version, entry_ts, unit_key,"
                " arm, test_id, recorded_at) values (%(c)s, %(v)s, %(e)s, %(k)s, %(a)s, %(t)s,"
                " %(r)s)",
                {
                    "c": cid,
                    "v": p.version,
                    "e": p.entry_at,
                    "k": p.unit_key,
                    "a": p.arm,
                    "t": p.test_id,
                    "r": p.recorded_at or now,
                },
            )
        wh.execute("delete from simulation_state where component_id = %(c)s", {"c": cid})
        wh.execute(
            "insert into simulation_state (component_id, symbol, simulated_until, updated_at)"
            " values (%(c)s, %(s)s, %(u)s, %(now)s)",
            {"c": cid, "s": component.symbol, "u": window_end, "now": now},
        )


def _counts(replay: _Replay) -> tuple[ArmCount, ...]:
    return tuple(
        ArmCount(version, arm, **values) for (version, arm), values in sorted(replay.counts.items())
    )


# -- the API ------------------------------------------------------------------------------------
def simulate(
    settings: Settings,
    component_id: str,
    *,
    until: datetime,
    bars_path: Path | None = None,
    now: datetime | None = None,
) -> SimulationReport:
    """Replay the component's bars in (cursor, until] and write the paper trades.

    With `bars_path`, that file's bars up to `until` are ingested first. Each version of the
    allocation (created for the production version on first use) and each version with an open
    position gets its book (a backtest on every bar up to the window's end); a book trade entered
    in the window is taken when its unit routes to the version's arm, written when it closes
    (with `variant` = the arm it was opened under), kept in simulation_open_trades while open.
    Idempotent: trade and prediction ids are stable and the cursor moves last.
    """
    moment = utc(now or datetime.now(UTC))
    ingest_now = moment.replace(tzinfo=None)
    end = _naive(until)
    bars_result: IngestResult | None = None
    with connect(settings) as wh:
        migrate(wh)
        component = read_components(wh, component_id)[0]
        if bars_path is not None:
            with tempfile.TemporaryDirectory(prefix="tb_simulate_") as folder:
                filtered = filter_bars_file(Path(bars_path), end, Path(folder))
                bars_result = ingest_file(wh, settings, Kind.bars, filtered, ingest_now)
        rows = _ensure_allocation(wh, settings, component, moment)
        versions = {r.version for r in rows} | {o.version for o in _open_rows(wh, component_id)}
        trades_model = any(
            needs_probability(load_strategy(get_version(wh, component_id, v).strategy))
            for v in versions
        )
        last_bar = _max_time(
            wh,
            "select max(ts) from raw_bars where symbol = %(s)s and ts <= %(e)s",
            {"s": component.symbol, "e": end},
        )
        has_view = wh.table_exists(BARS_RELATION)
        features = _features_until(wh, component.symbol) if trades_model else None
    # DuckDB admits one holder of the file: dbt runs with our connection closed. The bars view
    # follows raw_bars by itself once it exists; the features mart is a table, rebuilt when stale.
    if not has_view:
        run_dbt(settings, "run", select=BARS_RELATION)
    if trades_model and last_bar is not None and (features is None or features < last_bar):
        run_dbt(settings, "run", select=FEATURES_SELECT)

    with connect(settings) as wh:
        return _replay(wh, settings, component, end, moment, bars_result)


def _replay(
    wh: Warehouse,
    settings: Settings,
    component: Component,
    end: datetime,
    now: datetime,
    bars_result: IngestResult | None,
) -> SimulationReport:
    cid, symbol = component.component_id, component.symbol
    rows = state.allocation(wh, cid)
    # As routing.route: a staging row without a test takes no unit.
    treatment = next((r for r in rows if r.arm == "treatment" and r.test_id is not None), None)
    rows = [r for r in rows if r.arm != "treatment" or r is treatment]
    share = treatment.traffic_share if treatment is not None else 0.0
    test_id = treatment.test_id if treatment is not None else None
    test = None
    if treatment is not None and treatment.test_id is not None:
        stored = state.get_test(wh, treatment.test_id)
        start = None if stored.data_start is None else _naive(stored.data_start)
        test = _Test(treatment.test_id, share, round(share * 100), start)
    opens = _open_rows(wh, cid)
    cursor = _cursor(wh, component)
    window_end = _max_time(
        wh,
        f"select max(bar_at) from {BARS_RELATION} where symbol = %(s)s and bar_at <= %(e)s",
        {"s": symbol, "e": end},
    )

    def report(**values: Any) -> SimulationReport:
        base: dict[str, Any] = {
            "component_id": cid,
            "symbol": symbol,
            "until": end,
            "window_start": None,
            "window_end": None,
            "bars_replayed": 0,
            "open_position_policy": component.open_position_policy,
            "test_id": test_id,
            "treatment_share": share,
            "counts": (),
            "trades_written": 0,
            "open_positions": (),
            "policy_exits": (),
            "predictions_written": 0,
            "bars_ingest": bars_result,
        }
        return SimulationReport(**{**base, **values})

    if window_end is None or cursor is None:
        return report(notes=(f"No bars of {symbol} at or before {end}: nothing to replay.",))
    if window_end <= cursor:
        return report(
            notes=(f"{cid} is simulated up to {cursor}; no bar of {symbol} after it up to {end}.",)
        )

    bars = _load_bars(wh, symbol, window_end)
    costs = Costs(settings.optimize_fees_bps, settings.optimize_slippage_bps)
    per_year = bars_per_year(bars, component.periods_per_year)
    allocated = {r.version for r in rows}
    books = {
        v: _book(wh, component, v, bars, costs, per_year, window_end)
        for v in sorted(allocated | {o.version for o in opens})
    }
    production = next(r for r in rows if r.arm in ("production", "control"))
    replay = _Replay(component, cursor, window_end, costs)
    for held in opens:
        _carry_open(replay, held, books[held.version], allocated, books[production.version], bars)
    for row in rows:
        _new_entries(replay, books[row.version], row, test)

    fee = costs.fees_bps / 1e4
    trade_rows = _trade_rows(component, replay.closed, books, fee)
    prediction_rows = _prediction_rows(component, books.values(), cursor, window_end)
    trades_result = predictions_result = None
    stamp = f"{cid}_{window_end:%Y%m%dT%H%M%S}"
    with tempfile.TemporaryDirectory(prefix="tb_simulate_") as folder:
        if trade_rows:
            path = _write_csv(Path(folder) / f"sim_trades_{stamp}.csv", _TRADE_COLUMNS, trade_rows)
            trades_result = ingest_file(wh, settings, Kind.trades, path, now.replace(tzinfo=None))
        if prediction_rows:
            path = _write_csv(
                Path(folder) / f"sim_predictions_{stamp}.csv", _PREDICTION_COLUMNS, prediction_rows
            )
            predictions_result = ingest_file(
                wh, settings, Kind.predictions, path, now.replace(tzinfo=None)
            )
    _save_state(wh, component, window_end, replay, test, now)

    n_bars = int(np.count_nonzero(bars.time > np.datetime64(cursor, "ns")))
    return report(
        window_start=cursor,
        window_end=window_end,
        bars_replayed=n_bars,
        counts=_counts(replay),
        trades_written=len(trade_rows),
        open_positions=tuple(
            OpenPosition(
                p.version,
                p.arm,
                p.test_id,
                p.unit_key,
                p.entry_at,
                _side(p.side),
                p.entry_price,
            )
            for p in sorted(replay.still_open, key=lambda p: (p.entry_at, p.version))
        ),
        policy_exits=tuple(replay.policy_exits),
        predictions_written=len(prediction_rows),
        trades_ingest=trades_result,
        predictions_ingest=predictions_result,
        notes=tuple(replay.notes),
    )
