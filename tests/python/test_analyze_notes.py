"""`runner analyze` says when a component's metrics are empty because of the as-of date: its
last trade is older than the longest window."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from runner.analyze import stale_components
from runner.config import Settings
from tests.python.scenarios import open_warehouse


def test_a_component_whose_trades_end_before_the_windows_gets_a_hint(tmp_path: Path) -> None:
    settings = Settings(database_url=None, duckdb_path=tmp_path / "t.duckdb")
    with open_warehouse(settings) as wh:
        for i, (component, exit_at) in enumerate(
            [("old_desk", datetime(2026, 10, 23, 17)), ("live_desk", datetime(2026, 11, 20, 17))]
        ):
            wh.execute(
                "insert into raw_trades (trade_id, component_id, symbol, side, quantity, entry_ts,"
                " exit_ts, entry_price, exit_price, fees, ingest_id, source_row, loaded_at)"
                " values (%(id)s, %(c)s, 'ES', 'long', 1, %(x)s, %(x)s, 1, 1, 0, 'i', %(n)s, %(x)s)",
                {"id": f"t{i}", "c": component, "x": exit_at, "n": i},
            )
        notes = stale_components(wh, date(2026, 11, 26))
        assert notes == [
            "old_desk's last trade closed on 2026-10-23, before the 30-day window ending "
            "2026-11-26: analyze up to it with --as-of 2026-10-23."
        ]
        assert stale_components(wh, date(2026, 10, 23)) == []
        assert stale_components(wh, date(2026, 11, 26), "live_desk") == []
