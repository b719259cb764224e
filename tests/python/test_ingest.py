"""Ingest rules on both warehouses: typing, file errors, malformed CSV, keys, conflicts, Parquet."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from runner.config import Settings
from runner.errors import IngestFileError
from runner.ingest import merge as merge_module
from runner.warehouse import Warehouse
from tests.python.ingest_helpers import (
    BAR_COLUMNS,
    PREDICTION_COLUMNS,
    TRADE_COLUMNS,
    count,
    csv_file,
    make_project,
    rejects,
    run,
    trade,
    with_project,
)


@pytest.fixture
def cfg(settings: Settings, tmp_path: Path) -> Settings:
    """The test warehouse's settings with a project declaring comp_a and comp_b."""
    return with_project(settings, make_project(tmp_path))


def test_valid_trades_load_with_utc_timestamps_and_default_fees(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """Offsets are converted to UTC, a bare timestamp is UTC, empty fees become 0."""
    path = csv_file(
        tmp_path,
        "t.csv",
        TRADE_COLUMNS,
        trade("T1", entry_ts="2024-01-02T10:00:00+02:00", exit_ts="2024-01-02T12:00:00Z"),
        trade("T2", side="short", fees=""),
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected, result.rows_in_file) == (2, 0, 2)
    rows = warehouse.fetchall(
        "select trade_id, entry_ts, exit_ts, fees, source_row from raw_trades order by trade_id"
    )
    assert rows[0][1:] == (datetime(2024, 1, 2, 8), datetime(2024, 1, 2, 12), 1.0, 1)
    assert rows[1][3:] == (0.0, 2)
    runs = warehouse.fetchall(
        "select kind, rows_in_file, rows_inserted, file_format from ingest_runs"
    )
    assert runs == [("trades", 2, 2, "csv")]


def test_wrong_types_are_rejected_with_one_reason_each(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """Each bad value is rejected with its code and message; the good row still loads."""
    path = csv_file(
        tmp_path,
        "t.csv",
        TRADE_COLUMNS,
        trade("T1"),
        trade("T2", quantity="abc"),
        trade("T3", exit_ts="yesterday"),
        trade("T4", side="up"),
        trade("T5", quantity="-3"),
        trade("T6", symbol=""),
        trade("T7", entry_ts="2024-01-03T00:00:00", exit_ts="2024-01-02T00:00:00"),
        trade("T8", entry_price="nan"),
        trade("T9", exit_ts="2024-01-02 10:00:00 Europe/Paris"),
        trade("T10", fees="-1"),
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected) == (1, 9)
    got = [(r[0], r[1], r[2]) for r in rejects(warehouse)]
    assert got == [
        (2, "invalid_number", "quantity 'abc' is not a number"),
        (3, "invalid_timestamp", "exit_ts 'yesterday' is not ISO-8601"),
        (4, "invalid_value", "side 'up' must be long or short"),
        (5, "out_of_range", "quantity '-3' must be > 0"),
        (6, "missing_value", "symbol is empty"),
        (
            7,
            "exit_before_entry",
            "exit_ts '2024-01-02T00:00:00' is before entry_ts '2024-01-03T00:00:00'",
        ),
        (8, "invalid_number", "entry_price 'nan' is not a number"),
        (9, "invalid_timestamp", "exit_ts '2024-01-02 10:00:00 Europe/Paris' is not ISO-8601"),
        (10, "out_of_range", "fees '-1' must be >= 0"),
    ]
    assert rejects(warehouse)[0][3] == trade("T2", quantity="abc")


def test_missing_required_column_loads_nothing_and_names_the_columns(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """A file without exit_ts and exit_price is refused whole, with one sentence."""
    header = "trade_id,component_id,symbol,side,quantity,entry_ts,entry_price,fees"
    path = csv_file(tmp_path, "t.csv", header, "T1,comp_a,SPY,long,1,2024-01-02,100,0")
    with pytest.raises(
        IngestFileError, match=r"t\.csv lacks the required column\(s\) exit_ts, exit_price"
    ):
        run(warehouse, cfg, "trades", path)
    assert count(warehouse, "raw_trades") == count(warehouse, "ingest_runs") == 0


def test_extra_columns_are_ignored_with_a_warning(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """Unknown columns do not block the load; the summary and ingest_runs name them."""
    path = csv_file(tmp_path, "t.csv", TRADE_COLUMNS + ",notes,Variant", trade() + ",hello,v2")
    result = run(warehouse, cfg, "trades", path)
    assert result.inserted == 1
    assert result.ignored_columns == ("notes",)
    assert result.warnings == ("ignored unknown column(s): notes",)
    assert warehouse.fetchall("select variant from raw_trades") == [("v2",)]
    assert warehouse.fetchall("select ignored_columns from ingest_runs") == [("notes",)]


def test_bad_quoting_and_field_counts_are_rejected_with_their_row_numbers(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """Wrong field counts and an unterminated quote are malformed rows; numbering stays right
    after a quoted field spanning two lines."""
    path = csv_file(
        tmp_path,
        "t.csv",
        TRADE_COLUMNS + ",variant",
        trade("T1") + ',"two\nlines"',
        trade("T2") + ",v,surplus",
        "T3,comp_a,SPY",
        trade("T4", quantity="0") + ",v",
        trade("T5") + ",v",
        trade("T6") + ',"never closed',
        trade("T7") + ",v",
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected, result.rows_in_file) == (2, 4, 6)
    got = [(r[0], r[1]) for r in rejects(warehouse)]
    assert got == [
        (2, "malformed_row"),
        (3, "malformed_row"),
        (4, "out_of_range"),
        (6, "malformed_row"),
    ]
    by_row = {r[0]: r for r in rejects(warehouse)}
    assert by_row[3][2] == "the row has 3 fields, the header has 11"
    assert by_row[3][3] == "T3,comp_a,SPY"
    assert "unterminated" in by_row[6][2]
    assert warehouse.fetchall("select trade_id, source_row from raw_trades order by 1") == [
        ("T1", 1),
        ("T5", 5),
    ]
    assert warehouse.fetchall("select variant from raw_trades where trade_id = 'T1'") == [
        ("two\nlines",)
    ]


def test_non_utf8_bytes_reject_the_row_or_the_file(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """Latin-1 bytes in a data row reject that row; in the header they refuse the file."""
    body = (
        "\n".join((TRADE_COLUMNS, trade("T1"), trade("T2", symbol="CAF\xc9"), trade("T3"))) + "\n"
    )
    path = tmp_path / "latin1.csv"
    path.write_bytes(body.encode("latin-1"))
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected) == (2, 1)
    assert [(r[0], r[1]) for r in rejects(warehouse)] == [(2, "invalid_encoding")]

    bad_header = tmp_path / "header.csv"
    bad_header.write_bytes(("sym\xc9," + TRADE_COLUMNS + "\n").encode("latin-1"))
    with pytest.raises(IngestFileError, match="header line .* is not UTF-8"):
        run(warehouse, cfg, "trades", bad_header)


def test_empty_file_is_refused_and_header_only_file_loads_nothing(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """0 bytes is an error naming the file; a header alone is a successful run of 0 rows."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(IngestFileError, match=r"empty\.csv is empty \(0 bytes\)"):
        run(warehouse, cfg, "trades", empty)
    result = run(warehouse, cfg, "trades", csv_file(tmp_path, "h.csv", TRADE_COLUMNS))
    assert (result.rows_in_file, result.loaded, result.rejected) == (0, 0, 0)
    assert "no data rows" in result.warnings[0]
    assert count(warehouse, "ingest_runs") == 1


def test_missing_file_is_one_clear_error(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    with pytest.raises(IngestFileError, match="nope.csv does not exist"):
        run(warehouse, cfg, "trades", tmp_path / "nope.csv")


def test_duplicate_keys_within_a_file(warehouse: Warehouse, cfg: Settings, tmp_path: Path) -> None:
    """Identical copies after the first are duplicates; differing rows of one key all conflict."""
    path = csv_file(
        tmp_path,
        "t.csv",
        TRADE_COLUMNS,
        trade("T1"),
        trade("T2"),
        trade("T1", quantity="10.0"),  # the same value written differently is identical
        trade("T2", exit_price="99"),
        trade("T1"),
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected) == (1, 4)
    got = [(r[0], r[1]) for r in rejects(warehouse)]
    assert got == [(2, "conflict"), (3, "duplicate"), (4, "conflict"), (5, "duplicate")]
    assert rejects(warehouse)[0][2] == (
        "trade_id 'T2' appears with different values on rows 2, 4 of this file; none of them is loaded"
    )
    assert rejects(warehouse)[1][2] == "identical copy of row 1 (trade_id 'T1')"
    assert warehouse.fetchall("select trade_id from raw_trades") == [("T1",)]


def test_keys_across_files_unchanged_or_conflict_never_overwritten(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """A second file repeating a trade identically is unchanged; with other values, a conflict."""
    run(
        warehouse,
        cfg,
        "trades",
        csv_file(tmp_path, "a.csv", TRADE_COLUMNS, trade("T1"), trade("T2")),
    )
    second = csv_file(
        tmp_path, "b.csv", TRADE_COLUMNS, trade("T1"), trade("T2", exit_price="120"), trade("T3")
    )
    result = run(warehouse, cfg, "trades", second)
    assert (result.inserted, result.unchanged, result.rejected) == (1, 1, 1)
    assert rejects(warehouse)[0][:3] == (
        2,
        "conflict",
        "trade_id 'T2' is already loaded with a different exit_price",
    )
    assert warehouse.fetchall("select exit_price from raw_trades where trade_id = 'T2'") == [
        (101.25,)
    ]


def test_reingesting_a_file_changes_nothing(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """The second run loads every valid row as unchanged and stores no new reject rows."""
    path = csv_file(
        tmp_path,
        "t.csv",
        TRADE_COLUMNS,
        trade("T1"),
        trade("T2", side="x"),
        trade("T1"),
        "T9,comp_a",
    )
    first = run(warehouse, cfg, "trades", path)
    before = (count(warehouse, "raw_trades"), rejects(warehouse))
    second = run(warehouse, cfg, "trades", path)
    assert (first.inserted, first.rejected) == (1, 3)
    assert (second.inserted, second.unchanged, second.rejected) == (0, 1, 3)
    assert (count(warehouse, "raw_trades"), rejects(warehouse)) == before
    assert count(warehouse, "ingest_runs") == 2


def test_future_timestamps_are_rejected(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, "t.csv", TRADE_COLUMNS, trade("T1", exit_ts="2999-01-01T00:00:00Z"))
    result = run(warehouse, cfg, "trades", path)
    assert result.rejected == 1
    assert rejects(warehouse)[0][1:3] == (
        "future_timestamp",
        "exit_ts '2999-01-01T00:00:00Z' is in the future",
    )


def test_sql_text_is_stored_verbatim(warehouse: Warehouse, cfg: Settings, tmp_path: Path) -> None:
    """Strings that look like SQL are data: stored as given, and every table survives."""
    evil = "x'); drop table raw_trades; --"
    path = csv_file(
        tmp_path,
        "t.csv",
        TRADE_COLUMNS,
        trade('"' + evil + '"', symbol="Robert'); --"),
        trade("T2", quantity=evil.replace(",", "")),
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected) == (1, 1)
    assert warehouse.fetchall("select trade_id, symbol from raw_trades") == [(evil, "Robert'); --")]
    assert warehouse.table_exists("raw_trades") and warehouse.table_exists("ingest_rejects")


def test_undeclared_component_is_rejected(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    path = csv_file(
        tmp_path, "t.csv", TRADE_COLUMNS, trade("T1", component_id="ghost"), trade("T2")
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.inserted, result.rejected) == (1, 1)
    assert rejects(warehouse)[0][1:3] == (
        "unknown_component",
        "component_id 'ghost' is not declared in seeds/components.csv",
    )


def test_parquet_input_is_typed_and_numbered(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """Parquet with native types loads; a bad row is numbered from 1 and its raw text kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "trade_id": ["P1", "P2"],
            "component_id": ["comp_a", "comp_b"],
            "symbol": ["SPY", "QQQ"],
            "side": ["long", "short"],
            "quantity": [1.5, -2.0],
            "entry_ts": pa.array(
                [datetime(2024, 1, 2, 9), datetime(2024, 1, 2, 9)], pa.timestamp("us")
            ),
            "exit_ts": pa.array(
                [datetime(2024, 1, 2, 10), datetime(2024, 1, 2, 10)], pa.timestamp("us", tz="UTC")
            ),
            "entry_price": [100.0, 50.0],
            "exit_price": [101.0, 49.0],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    result = run(warehouse, cfg, "trades", path)
    assert (result.file_format, result.inserted, result.rejected) == ("parquet", 1, 1)
    assert warehouse.fetchall("select trade_id, quantity, exit_ts, fees from raw_trades") == [
        ("P1", 1.5, datetime(2024, 1, 2, 10), 0.0)
    ]
    row_number, reason, _, raw = rejects(warehouse)[0]
    assert (row_number, reason) == (2, "out_of_range")
    assert raw.startswith("P2,comp_b,QQQ,short,-2.0,")


def test_prediction_label_fill_in(warehouse: Warehouse, cfg: Settings, tmp_path: Path) -> None:
    """A later file may fill an empty actual_label (an update with labelled_at); an empty label
    never erases a known one; a different known label is a conflict."""
    base = "P1,m1,v1,SPY,2024-01-02T10:00:00,1,0.7,"
    run(
        warehouse,
        cfg,
        "predictions",
        csv_file(tmp_path, "a.csv", PREDICTION_COLUMNS, base, "P2,m1,v1,SPY,2024-01-02,0,,0"),
    )
    assert warehouse.fetchall(
        "select actual_label, labelled_at from raw_predictions where prediction_id = 'P1'"
    ) == [(None, None)]
    filled = run(
        warehouse, cfg, "predictions", csv_file(tmp_path, "b.csv", PREDICTION_COLUMNS, base + "1")
    )
    assert (filled.updated, filled.rejected) == (1, 0)
    label, labelled_at = warehouse.fetchall(
        "select actual_label, labelled_at from raw_predictions where prediction_id = 'P1'"
    )[0]
    assert label == 1 and labelled_at is not None
    again = run(
        warehouse, cfg, "predictions", csv_file(tmp_path, "c.csv", PREDICTION_COLUMNS, base)
    )
    assert (again.unchanged, again.updated, again.rejected) == (1, 0, 0)
    flipped = run(
        warehouse, cfg, "predictions", csv_file(tmp_path, "d.csv", PREDICTION_COLUMNS, base + "0")
    )
    assert (flipped.rejected, flipped.updated) == (1, 0)
    assert rejects(warehouse)[-1][1:3] == (
        "conflict",
        "prediction_id 'P1' is already loaded with a different actual_label",
    )
    assert warehouse.fetchall(
        "select actual_label from raw_predictions where prediction_id = 'P1'"
    ) == [(1,)]


def test_prediction_values_are_checked(warehouse: Warehouse, cfg: Settings, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "p.csv",
        PREDICTION_COLUMNS,
        "P1,m1,v1,SPY,2024-01-02,2,,",
        "P2,m1,v1,SPY,2024-01-02,1,1.5,",
        "P3,m1,v1,SPY,2024-01-02,1,0.5,yes",
        "P4,m1,v1,SPY,2024-01-02,1.0,,0.0",
    )
    result = run(warehouse, cfg, "predictions", path)
    assert result.inserted == 1
    assert [r[1] for r in rejects(warehouse)] == ["invalid_label", "out_of_range", "invalid_label"]


def test_bars_rules_and_composite_key(warehouse: Warehouse, cfg: Settings, tmp_path: Path) -> None:
    """high/low must bracket open and close; (symbol, ts) is the key, across offsets too."""
    path = csv_file(
        tmp_path,
        "b.csv",
        BAR_COLUMNS,
        "SPY,2024-01-02T10:00:00Z,100,101,99,100.5,1000",
        "SPY,2024-01-02T12:00:00+02:00,100,101,99,100.5,1000",  # the same instant: a duplicate
        "SPY,2024-01-02T11:00:00Z,100,100.2,99,100.5,1000",
        "SPY,2024-01-02T12:00:00Z,100,101,99,100.5,-1",
        "QQQ,2024-01-02T10:00:00Z,0,101,99,100.5,10",
    )
    result = run(warehouse, cfg, "bars", path)
    assert result.inserted == 1
    assert [(r[0], r[1]) for r in rejects(warehouse)] == [
        (2, "duplicate"),
        (3, "inconsistent_bar"),
        (4, "out_of_range"),
        (5, "out_of_range"),
    ]


def test_a_failed_merge_writes_nothing(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If anything fails mid-merge, no raw row, reject or run of that file remains."""

    def boom(wh: Warehouse) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(merge_module, "_by_reason", boom)
    path = csv_file(tmp_path, "t.csv", TRADE_COLUMNS, trade("T1"), trade("T2", side="x"))
    with pytest.raises(RuntimeError, match="disk full"):
        run(warehouse, cfg, "trades", path)
    assert count(warehouse, "raw_trades") == count(warehouse, "ingest_rejects") == 0
    assert count(warehouse, "ingest_runs") == 0
    monkeypatch.undo()
    assert run(warehouse, cfg, "trades", path).inserted == 1  # and the connection is usable


def test_blank_lines_are_skipped_but_keep_row_numbers_physical(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """A blank line is not a row, yet the rows after it keep their line-based numbers."""
    path = csv_file(
        tmp_path, "t.csv", TRADE_COLUMNS, trade("T1"), "", trade("T2", quantity="x"), trade("T3")
    )
    result = run(warehouse, cfg, "trades", path)
    assert (result.rows_in_file, result.inserted, result.rejected) == (3, 2, 1)
    assert [(r[0], r[1]) for r in rejects(warehouse)] == [(3, "invalid_number")]
    assert warehouse.fetchall("select trade_id, source_row from raw_trades order by 1") == [
        ("T1", 1),
        ("T3", 4),
    ]


def test_an_ingest_run_finishes_on_the_clock_even_when_its_rows_are_stamped_earlier(
    warehouse: Warehouse, cfg: Settings, tmp_path: Path
) -> None:
    """`now` stamps the rows' loaded_at (a backfill may set it); the run's own times are real."""
    from runner.ingest import ingest_file

    path = csv_file(tmp_path, "t.csv", TRADE_COLUMNS, trade("T1"))
    stamp = datetime(2024, 1, 3)
    assert ingest_file(warehouse, cfg, "trades", path, now=stamp).inserted == 1
    [(loaded_at,)] = warehouse.fetchall("select loaded_at from raw_trades")
    [(started, finished)] = warehouse.fetchall("select started_at, finished_at from ingest_runs")
    assert loaded_at == stamp
    assert stamp < started <= finished
