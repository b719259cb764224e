"""Property: for any mix of valid and invalid trade rows, every row is either loaded or rejected,
no valid row is lost and no invalid row is loaded (DuckDB; the merge SQL is shared with PostgreSQL)."""

from __future__ import annotations

import csv
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.config import Settings
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.ingest_helpers import TRADE_COLUMNS, make_project, run

# (column, bad value) pairs; each makes a row invalid on its own.
BREAKAGES = [
    ("trade_id", ""),
    ("component_id", "ghost"),
    ("side", "sideways"),
    ("quantity", "0"),
    ("quantity", "abc"),
    ("quantity", "inf"),
    ("entry_ts", "2024-13-01"),
    ("exit_ts", "yesterday"),
    ("exit_ts", "2024-01-01T00:00:00"),  # before entry
    ("exit_ts", "2999-01-01T00:00:00Z"),  # future
    ("entry_price", "-1"),
    ("exit_price", ""),
    ("fees", "-0.5"),
]

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    min_size=1,
    max_size=12,
).filter(lambda s: any(unicodedata.category(c) != "Zs" for c in s))
# Blank means only space separators (Zs: ' ', NBSP, ...), which the ingest trims as SQL's trim does;
# such a symbol is rejected as missing, so it is not a valid row here.

valid_trade = st.fixed_dictionaries(
    {
        "component_id": st.sampled_from(["comp_a", "comp_b"]),
        "symbol": text,
        "side": st.sampled_from(["long", "short"]),
        "quantity": st.floats(min_value=1e-6, max_value=1e9).map(repr),
        "entry_ts": st.sampled_from(
            ["2024-01-02T09:30:00", "2024-01-02T10:00:00+01:00", "2024-01-02"]
        ),
        "exit_ts": st.sampled_from(["2024-01-03T16:00:00Z", "2024-01-03 15:00:00-05:00"]),
        "entry_price": st.floats(min_value=0.01, max_value=1e6).map(repr),
        "exit_price": st.floats(min_value=0.01, max_value=1e6).map(repr),
        "fees": st.sampled_from(["", "0", "1.25"]),
    }
)
rows = st.lists(
    st.tuples(valid_trade, st.none() | st.sampled_from(BREAKAGES)), min_size=0, max_size=30
)


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warehouse, Settings, Path]]:
    root = tmp_path_factory.mktemp("ingest_property")
    cfg = Settings(duckdb_path=root / "w.duckdb", project_dir=make_project(root), database_url=None)
    with connect(cfg) as wh:
        migrate(wh)
        yield wh, cfg, root


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows)
def test_every_row_is_loaded_or_rejected(
    duck: tuple[Warehouse, Settings, Path],
    rows: list[tuple[dict[str, str], tuple[str, str] | None]],
) -> None:
    wh, cfg, root = duck
    for table in ("raw_trades", "ingest_rejects", "ingest_runs"):
        wh.execute(f"delete from {table}")
    path = root / f"{uuid.uuid4().hex}.csv"
    columns = TRADE_COLUMNS.split(",")
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, (row, breakage) in enumerate(rows):
            values = {**row, "trade_id": f"T{i}"}
            if breakage:
                values[breakage[0]] = breakage[1]
            writer.writerow([values[c] for c in columns])

    result = run(wh, cfg, "trades", path)

    valid_ids = {f"T{i}" for i, (_, breakage) in enumerate(rows) if breakage is None}
    invalid_rows = {i + 1 for i, (_, breakage) in enumerate(rows) if breakage is not None}
    assert result.rows_in_file == len(rows)
    assert {r[0] for r in wh.fetchall("select trade_id from raw_trades")} == valid_ids
    assert {r[0] for r in wh.fetchall("select row_number from ingest_rejects")} == invalid_rows
    loaded = dict(wh.fetchall("select trade_id, symbol from raw_trades"))
    assert all(loaded[f"T{i}"] == row["symbol"] for i, (row, b) in enumerate(rows) if b is None)
