"""The loop demo's pieces: its market (real EURUSD hours, then the planted regimes), its own
workspace (the project's seeds stay the user's), and its first engine run on that market."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from runner.config import Settings
from runner.demo_loop import COMPONENTS, PHASES, market, prepare, run_loop_demo

pytestmark = pytest.mark.integration


def test_the_market_is_real_eurusd_hours_then_the_planted_regimes() -> None:
    from backtesting.test import EURUSD

    bars = market()
    assert set(bars) == {"EURUSD", "GBPUSD"}
    eur = bars["EURUSD"]
    assert len(eur) == len(EURUSD) + sum(n for n, _ in PHASES["EURUSD"])
    assert eur[len(EURUSD) - 1][4] == pytest.approx(float(EURUSD["Close"].iloc[-1]))
    times = [datetime.fromisoformat(t) for t, *_ in eur]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    generated = times[len(EURUSD) :]
    assert all(t.weekday() < 5 for t in generated)
    # The reversal regime is there: consecutive hourly returns are negatively correlated.
    close = np.array([row[4] for row in eur[len(EURUSD) + 240 :]])
    r = np.diff(np.log(close))
    assert np.corrcoef(r[:-1], r[1:])[0, 1] < -0.2
    assert market() == bars  # seeded: the same story every time


def test_the_demo_tells_the_whole_story_in_its_own_workspace(tmp_path: Path) -> None:
    """What `make demo` promises: alerts, recommendations, candidates through every gate, smoke
    tests, fx_trend promoted 10 → 50 → 100 and fx_cable's candidate rolled back — decided by
    the engine on this market (seeded searches, so the same story every time)."""
    settings = Settings(database_url=None, duckdb_path=tmp_path / "unused.duckdb")
    demo, bars, _ = prepare(settings, tmp_path / "ws")
    seeds = (demo.project / "seeds" / "components.csv").read_text()
    assert all(c in seeds for c, _, _ in COMPONENTS) and "trend_spx" not in seeds
    assert demo.project != settings.project and bars.is_file()

    result = run_loop_demo(settings, tmp_path / "ws")
    first = result.runs[0]
    assert [s.status for s in first.cycle.steps] == ["ok", "ok", "ok", "ok"], first.cycle.steps
    assert all(s.status == "ok" for run in result.runs for s in run.cycle.steps)
    kinds = {e.event_type for e in first.events}
    assert {"alert_raised", "recommendation_created", "optimization_completed"} <= kinds

    def components(kind: str) -> list[str | None]:
        return [e.component_id for e in result.events(kind)]

    assert components("ab_test_promoted") == ["fx_trend"]
    assert components("ab_test_rolled_back") == ["fx_cable"]
    for component in ("fx_trend", "fx_cable"):
        assert component in components("smoke_tests_passed")
        assert component in components("ab_test_started")
        assert component in components("ab_stage_advanced")  # 10% → 50% before the decision
    assert result.events("ab_test_promoted")[0].metrics["lower"] > 0
    assert result.events("ab_test_rolled_back")[0].metrics["upper"] < 0
    assert result.report_html is not None and result.report_html.is_file()
