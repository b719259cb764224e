"""Property: for any mix of valid, invalid, duplicated and conflicting rows of trades, predictions
or bars, in CSV or Parquet, on DuckDB and on PostgreSQL, every row is either loaded or rejected,
every valid row is in its table with exactly its values, no invalid row is loaded, and ingesting
the same file again changes nothing.

The expected outcome comes from a model written here in Python (ISO-8601 parsing, the domain
rules, the in-file key groups), independent of the SQL that judges the rows.
"""

from __future__ import annotations

import csv
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runner.config import Settings
from runner.ingest.specs import SPECS, Kind, Spec
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.ingest_helpers import make_project, run
from tests.python.scenarios import fresh_settings

# Examples per kind and warehouse (each ingests its file twice); PostgreSQL's are the slower.
EXAMPLES = {"duckdb": 10, "postgres": 6}
TABLES = ("raw_trades", "raw_predictions", "raw_bars", "ingest_rejects", "ingest_runs")

Row = dict[str, str]
Typed = tuple[Any, ...]


# -- the values a valid row may hold ---------------------------------------------------------
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
).filter(lambda s: any(unicodedata.category(c) != "Zs" for c in s))
# Blank means only space separators (Zs: ' ', NBSP, ...), which the ingest trims as SQL's trim
# does; such a value is rejected as missing, so it is not a valid text here. Quotes, commas,
# newlines, carriage returns, backslashes and any other character must survive verbatim.

OFFSETS = (None, "Z", "z", "+00:00", "+01:00", "-05:00", "+05:30", "+0530", "-08", "+14:00")


@st.composite
def instants(
    draw: st.DrawFn, lo: datetime = datetime(2000, 1, 1), hi: datetime = datetime(2025, 12, 31)
) -> tuple[str, datetime]:
    """(ISO-8601 text in one of its accepted spellings, the naive UTC instant it names)."""
    local = draw(st.datetimes(min_value=lo, max_value=hi))
    precision = draw(st.sampled_from(["day", "minute", "second", "second", "fraction"]))
    offset = draw(st.sampled_from(OFFSETS))
    sep = draw(st.sampled_from(["T", " "]))
    if precision == "day":
        local, body = local.replace(hour=0, minute=0, second=0, microsecond=0), "%Y-%m-%d"
    elif precision == "minute":
        local, body = local.replace(second=0, microsecond=0), f"%Y-%m-%d{sep}%H:%M"
    else:
        body = f"%Y-%m-%d{sep}%H:%M:%S"
        local = local.replace(microsecond=draw(st.sampled_from([500_000, 123_456, 10])))
        if precision == "second":
            local = local.replace(microsecond=0)
        else:
            body += f".{local.microsecond:06d}".rstrip("0")
    return local.strftime(body) + (offset or ""), local - timedelta(minutes=_offset_minutes(offset))


def _offset_minutes(offset: str | None) -> int:
    if offset is None or offset in ("Z", "z"):
        return 0
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:] or 0))


def number(lo: float, hi: float) -> st.SearchStrategy[str]:
    """A number's text: shortest repr, an integer, an exponent, or padded with spaces."""
    value = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    return st.one_of(
        value.map(repr),
        st.integers(min_value=max(int(lo) + 1, 1), max_value=int(hi)).map(str),
        value.map(lambda v: f"{v:e}"),
        value.map(lambda v: f" {v!r} "),
    )


def _num(text: str) -> float:
    return float(text.strip())


# -- one kind: its rows, the ways to break one, and the typed value the table must hold ----------
@dataclass(frozen=True)
class Case:
    spec: Spec
    row: st.SearchStrategy[tuple[Row, dict[str, Any]]]  # (file fields, typed values)
    breakages: tuple[tuple[str, str], ...]  # (column, value) making a row invalid on its own
    differ: str  # a non-key column to change for a conflicting copy
    changed: Callable[[Any], tuple[str, Any]]  # its old typed value -> (new text, new typed)

    def typed(self, values: dict[str, Any]) -> Typed:
        return tuple(values[c] for c in self.spec.columns)


@st.composite
def trade_row(draw: st.DrawFn) -> tuple[Row, dict[str, Any]]:
    entry_text, entry = draw(instants())
    # An entry written with a negative offset can be later in UTC than the latest local time;
    # the exit's range extends past it.
    latest = max(datetime(2025, 12, 31), entry + timedelta(days=1))
    exit_text, exit_ = draw(instants(lo=entry, hi=latest).filter(lambda p: p[1] >= entry))
    quantity = draw(number(1e-6, 1e9))
    entry_price, exit_price = draw(number(0.01, 1e6)), draw(number(0.01, 1e6))
    fees = draw(st.sampled_from(["", "0", "1.25", " 3 "]))
    version = draw(st.sampled_from(["", "v1", "v2"]))
    row = {
        "component_id": draw(st.sampled_from(["comp_a", "comp_b"])),
        "symbol": draw(text),
        "side": draw(st.sampled_from(["long", "short"])),
        "quantity": quantity,
        "entry_ts": entry_text,
        "exit_ts": exit_text,
        "entry_price": entry_price,
        "exit_price": exit_price,
        "fees": fees,
        "strategy_version": version,
        "variant": draw(st.sampled_from(["", "champion", "challenger"])),
        "model_version": draw(st.one_of(st.just(""), text)),
    }
    typed = {
        **row,
        "quantity": _num(quantity),
        "entry_ts": entry,
        "exit_ts": exit_,
        "entry_price": _num(entry_price),
        "exit_price": _num(exit_price),
        "fees": _num(fees) if fees else 0.0,
        "strategy_version": version or None,  # an empty optional text is stored as null
        "variant": row["variant"] or None,
        "model_version": row["model_version"] or None,
    }
    return row, typed


@st.composite
def prediction_row(draw: st.DrawFn) -> tuple[Row, dict[str, Any]]:
    ts_text, ts = draw(instants())
    label = draw(st.sampled_from(["0", "1", "1.0", " 0 "]))
    proba = draw(st.one_of(st.just(""), number(0, 1), st.sampled_from(["0", "1", "0.5"])))
    actual = draw(st.sampled_from(["", "0", "1"]))
    row = {
        "model_id": draw(text),
        "model_version": draw(text),
        "symbol": draw(text),
        "ts": ts_text,
        "predicted_label": label,
        "predicted_proba": proba,
        "actual_label": actual,
    }
    typed = {
        **row,
        "ts": ts,
        "predicted_label": int(_num(label)),
        "predicted_proba": _num(proba) if proba.strip() else None,
        "actual_label": int(actual) if actual else None,
    }
    return row, typed


@st.composite
def bar_row(draw: st.DrawFn) -> tuple[Row, dict[str, Any]]:
    ts_text, ts = draw(instants())
    prices = st.floats(min_value=1.0, max_value=1e5)
    open_, close = draw(prices), draw(prices)
    high = max(open_, close) * draw(st.sampled_from([1.0, 1.01, 1.5]))
    low = min(open_, close) * draw(st.sampled_from([1.0, 0.99, 0.5]))
    volume = draw(st.sampled_from(["0", "100", "1e6", "12.5"]))
    row = {
        "symbol": draw(text),
        "ts": ts_text,
        "open": repr(open_),
        "high": repr(high),
        "low": repr(low),
        "close": repr(close),
        "volume": volume,
    }
    typed = {
        **row,
        "ts": ts,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": float(volume),
    }
    return row, typed


_NO_TIME = ("2024-13-01", "2024-02-30", "yesterday", "2024-01-02T25:00:00", "now", "epoch")
CASES = {
    Kind.trades: Case(
        SPECS[Kind.trades],
        trade_row(),
        (
            ("trade_id", ""),
            ("trade_id", "  "),
            ("component_id", "ghost"),
            ("component_id", "comp_a "),
            ("side", "sideways"),
            ("side", "Long"),
            ("quantity", "0"),
            ("quantity", "abc"),
            ("quantity", "inf"),
            ("quantity", "nan"),
            ("quantity", "1e400"),
            *(("entry_ts", t) for t in _NO_TIME),
            ("exit_ts", "1999-12-31T23:59:59"),  # before any entry
            ("exit_ts", "2999-01-01T00:00:00Z"),  # future
            ("entry_price", "-1"),
            ("exit_price", ""),
            ("fees", "-0.5"),
            ("symbol", "a\x00b"),
        ),
        differ="quantity",
        changed=lambda q: (repr(q * 2), q * 2),
    ),
    Kind.predictions: Case(
        SPECS[Kind.predictions],
        prediction_row(),
        (
            ("prediction_id", ""),
            ("model_id", " "),
            ("model_version", ""),
            ("symbol", "nul\x00"),
            *(("ts", t) for t in _NO_TIME),
            ("ts", "2999-06-01 00:00:00"),
            ("predicted_label", "2"),
            ("predicted_label", "yes"),
            ("predicted_label", ""),
            ("predicted_proba", "1.5"),
            ("predicted_proba", "-0.1"),
            ("predicted_proba", "nan"),
            ("actual_label", "0.5"),
        ),
        differ="predicted_label",
        changed=lambda label: (str(1 - label), 1 - label),
    ),
    Kind.bars: Case(
        SPECS[Kind.bars],
        bar_row(),
        (
            ("symbol", ""),
            ("symbol", "x\x00"),
            *(("ts", t) for t in _NO_TIME),
            ("ts", "2999-01-01"),
            ("open", "0"),
            ("close", "-3"),
            ("high", "0.5"),  # under every open and close (prices start at 1)
            ("low", "1e6"),  # over every open and close
            ("volume", "-1"),
            ("volume", "many"),
            ("low", "inf"),
        ),
        differ="volume",
        changed=lambda v: (repr(v + 1), v + 1),
    ),
}


# -- a file of rows and its expected outcome -------------------------------------------------------
@dataclass(frozen=True)
class Planned:
    fields: Row | None  # None: a malformed line (one field short)
    typed: Typed | None  # None: an invalid row


@st.composite
def files(draw: st.DrawFn, case: Case) -> list[Planned]:
    """Rows of one file: valid ones, broken ones, malformed lines, exact copies of earlier rows
    and copies whose key is the same but one value differs."""
    spec = case.spec
    planned: list[Planned] = []
    for i in range(draw(st.integers(min_value=0, max_value=25))):
        action = draw(st.sampled_from(["valid"] * 5 + ["broken"] * 2 + ["copy", "differ", "short"]))
        if action in ("copy", "differ") and planned:
            source = planned[draw(st.integers(min_value=0, max_value=len(planned) - 1))]
            if source.fields is not None:
                if action == "copy":
                    planned.append(source)
                    continue
                if source.typed is not None:
                    typed = dict(zip(spec.columns, source.typed, strict=True))
                    new_text, typed[case.differ] = case.changed(typed[case.differ])
                    fields = {**source.fields, case.differ: new_text}
                    planned.append(Planned(fields, case.typed(typed)))
                    continue
        fields, typed = draw(case.row)
        # A fresh key per drawn row (bars: the symbol carries it; the instant may repeat).
        if spec.kind is Kind.bars:
            fields["symbol"] = typed["symbol"] = f"{fields['symbol']}#{i}"
        else:
            key = f"{spec.key[0][0].upper()}{i}"
            fields[spec.key[0]] = typed[spec.key[0]] = key
        if action == "short":
            planned.append(Planned(None, None))
        elif action == "broken":
            column, bad = draw(st.sampled_from(case.breakages))
            planned.append(Planned({**fields, column: bad}, None))
        else:
            planned.append(Planned(fields, case.typed(typed)))
    return planned


def expected(spec: Spec, planned: list[Planned]) -> tuple[dict[Typed, Typed], set[int]]:
    """(key → typed row of every row that must load, row numbers that must be rejected).

    Within a file, rows sharing a key load once if they are identical and not at all if they
    differ (validate.py); an invalid row never takes part in a key group."""
    key_at = [spec.columns.index(k) for k in spec.key]
    groups: dict[Typed, list[tuple[int, Typed]]] = {}
    rejected = set()
    for n, p in enumerate(planned, start=1):
        if p.typed is None:
            rejected.add(n)
        else:
            groups.setdefault(tuple(p.typed[i] for i in key_at), []).append((n, p.typed))
    loaded = {}
    for key, members in groups.items():
        if len({typed for _, typed in members}) == 1:
            loaded[key] = members[0][1]
            rejected.update(n for n, _ in members[1:])
        else:
            rejected.update(n for n, _ in members)
    return loaded, rejected


def write(path: Path, spec: Spec, planned: list[Planned], parquet: bool) -> Path:
    columns = list(spec.columns)
    if parquet:
        rows = [p.fields for p in planned if p.fields is not None]
        table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in columns})
        pq.write_table(table, path.with_suffix(".parquet"))
        return path.with_suffix(".parquet")
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for p in planned:
            if p.fields is None:
                writer.writerow(["x"] * (len(columns) - 1))
            else:
                writer.writerow([p.fields[c] for c in columns])
    return path


# -- the warehouses, one per module and kind; emptied before each example ------------------------
@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Warehouse, Settings, Path, str]]:
    root = tmp_path_factory.mktemp(f"ingest_property_{request.param}")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, root, make_project(root), url) as cfg, connect(cfg) as wh:
        migrate(wh)
        yield wh, cfg, root, request.param


def check(target: tuple[Warehouse, Settings, Path, str], case: Case) -> Callable[[], None]:
    wh, cfg, root, name = target
    spec = case.spec

    @settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        # No shrinking: each step is two ingests, and a failing example is printed as it is.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(planned=files(case), parquet=st.booleans())
    def property_holds(planned: list[Planned], parquet: bool) -> None:
        for table in TABLES:
            wh.execute(f"delete from {table}")
        if parquet:
            planned = [p for p in planned if p.fields is not None]  # no lines in Parquet
        path = write(root / f"{uuid.uuid4().hex}.csv", spec, planned, parquet)
        loaded, rejected = expected(spec, planned)

        result = run(wh, cfg, spec.kind.value, path)  # asserts loaded + rejected = rows

        assert result.rows_in_file == len(planned)
        why = wh.fetchall("select row_number, reason, message from ingest_rejects order by 1")
        assert (result.inserted, result.rejected) == (len(loaded), len(rejected)), "\n".join(
            map(str, why)
        )
        cols = ", ".join(spec.columns)
        stored = wh.fetchall(f"select {cols} from {spec.table}")
        key_at = [spec.columns.index(k) for k in spec.key]
        assert {tuple(r[i] for i in key_at): tuple(r) for r in stored} == loaded
        assert len(stored) == len(loaded)
        assert {r[0] for r in wh.fetchall("select row_number from ingest_rejects")} == rejected

        again = run(wh, cfg, spec.kind.value, path)
        assert (again.inserted, again.unchanged) == (0, len(loaded))
        assert sorted(map(tuple, wh.fetchall(f"select {cols} from {spec.table}"))) == sorted(
            map(tuple, stored)
        )
        total = wh.fetchone("select count(*) from ingest_rejects")
        assert total is not None and total[0] == len(rejected)

    return property_holds


@pytest.mark.parametrize("kind", list(Kind))
def test_every_row_is_loaded_with_its_values_or_rejected(
    target: tuple[Warehouse, Settings, Path, str], kind: Kind
) -> None:
    check(target, CASES[kind])()
