"""The scale benchmark's --quick path as a smoke test: a small warehouse through the same phases
(load, full build, an hour of new, late and corrected trades, incremental build) whose every mart
must equal a --full-refresh build of the same raw rows (benchmarks/scale.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.scale import QUICK, bench

pytestmark = pytest.mark.integration


def test_quick_scale_run_matches_a_full_rebuild(tmp_path: Path) -> None:
    report = bench(QUICK, ["duckdb"], "", warm_up=False, isolate=False, keep=tmp_path)
    [duck] = report["warehouses"]
    assert duck["verify"]["differences"] == []
    assert duck["hour_ingest"]["rows"] == QUICK.new_trades
    assert duck["full"]["nodes"] == duck["hour"]["nodes"] > 0
