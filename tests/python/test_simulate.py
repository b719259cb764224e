"""The paper-trading simulator on both warehouses: without a test every trade is production's;
under a running test each written trade's variant is routing.assign's arm for its unit and its
version that arm's; replaying in steps writes exactly what one replay writes; a position open at
the cursor is written later under the arm that opened it; re-running writes nothing; a crash
before the cursor moves is repaired by the next run; the open-position policies (finish, flatten,
move_stops) decide what a rolled-back version's open position does; generated and real bars."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from runner.backtest import EXIT_REASONS, Costs, backtest
from runner.backtest import simulate as fill
from runner.cli.simulate import parse_until, simulate_command
from runner.config import Settings
from runner.dbt import run_dbt
from runner.deploy import routing, state
from runner.deploy.simulate import (
    SimulationReport,
    bars_per_year,
    managed_exit,
    simulate,
    trade_id,
    unit_key,
)
from runner.engine_tables import ABTest
from runner.errors import ConfigError
from runner.ingest import ingest_file
from runner.ingest.specs import Kind
from runner.optimize.versions import add_candidate, read_components, seed_versions
from runner.strategies import Bars, load_strategy, resolve_params
from runner.warehouse import Warehouse, connect
from tests.python.markets import bars_from_returns, noise_market, trending_market, write_bars_csv
from tests.python.scenarios import copy_dbt_project, fresh_settings, open_warehouse

pytestmark = pytest.mark.integration

NOW = datetime(2024, 1, 2, tzinfo=UTC)
FAST = {"fast": 3, "slow": 10, "allow_short": True, "stop_loss": 0.02}
TREATMENT = {"fast": 4, "slow": 12, "allow_short": True, "stop_loss": 0.02}
T1 = datetime(2014, 6, 30)  # NOISE runs on business days 2012-01-02 .. 2016-12-26
T2 = datetime(2016, 12, 31)
GOOG_END = datetime(2013, 3, 1)


def component(
    component_id: str,
    symbol: str = "NOISE",
    params: Mapping[str, Any] | None = None,
    policy: str = "",
) -> dict[str, Any]:
    return {
        "component_id": component_id,
        "initial_capital": 100000,
        "periods_per_year": 252,
        "strategy": "sma_cross",
        "description": "simulator test",
        "symbol": symbol,
        "params": json.dumps(dict(params or FAST)),
        "open_position_policy": policy,
    }


COMPONENTS = [
    component("prod_only"),
    component("ab"),
    component("steps"),
    component("carry"),
    component("crash"),
    component("late_test"),
    component("own_trades"),
    component("flat", policy="flatten"),
    component("keep", policy="finish"),
    component("moved", params={**TREATMENT, "stop_loss": 0.005}, policy="move_stops"),
    component("goog_ab", "GOOG", {"fast": 5, "slow": 20, "allow_short": True}),
    {**component("ml", "TREND", {"model_version": 1}), "strategy": "ml_signal"},
]
MODEL = "ml_clf"
TREND_BARS = 700  # ingested by the fixture; the ml test feeds 60 more through --bars


def goog_frame() -> pd.DataFrame:
    from backtesting.test import GOOG

    frame = GOOG.rename(columns=str.lower).rename_axis("ts").reset_index()
    return frame[["ts", "open", "high", "low", "close", "volume"]]


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def sim_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """One warehouse per kind for the module: NOISE (generated, 1300 business days) and GOOG
    (backtesting.py's daily Alphabet bars) ingested, the components seed and the bars view built.
    Every test owns its component(s), so tests do not see each other's simulations."""
    workdir = tmp_path_factory.mktemp(f"simulate_{request.param}")
    project = copy_dbt_project(workdir / "project", COMPONENTS)
    (project / "seeds" / "component_models.csv").write_text(f"component_id,model_id\nml,{MODEL}\n")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, workdir, project, url) as settings:
        with open_warehouse(settings) as wh:
            markets = (
                ("NOISE", noise_market()),
                ("GOOG", goog_frame()),
                ("TREND", trending_market()[:TREND_BARS]),
            )
            for symbol, frame in markets:
                path = write_bars_csv(frame, symbol, workdir / f"{symbol}.csv")
                assert ingest_file(wh, settings, Kind.bars, path).rejected == 0
        run_dbt(settings, "seed", select="components component_models")
        run_dbt(settings, "run", select="stg_raw__bars")
        yield settings


# -- helpers ------------------------------------------------------------------------------------
def start_test(
    settings: Settings,
    cid: str,
    params: Mapping[str, Any] = TREATMENT,
    share: float = 0.5,
    data_start: datetime | None = None,
) -> str:
    """Production v1 (seeded), a candidate v2 with `params` in staging under a running A/B test
    with `share` of the units (counting trades after `data_start`), written directly through
    runner/deploy/state.py."""
    test_id = f"ab_{cid}"
    with connect(settings) as wh:
        comp = read_components(wh, cid)[0]
        seed_versions(wh, [comp])
        state.ensure_production(wh, cid, 1, "finish", NOW)
        version = add_candidate(wh, cid, "sma_cross", params, 1, "run_test", "test").version
        deployment = state.Deployment(
            deployment_id=f"dep_{cid}_v{version}",
            component_id=cid,
            version=version,
            environment="staging",
            status="ab_testing",
            traffic_share=share,
            test_id=test_id,
            previous_version=1,
            open_position_policy="finish",
            created_at=NOW,
            updated_at=NOW,
            ended_at=None,
            reason="simulator test",
        )
        state.insert_deployment(wh, deployment)
        state.insert_test(
            wh,
            ABTest(
                test_id=test_id,
                test_name=f"{cid} v1 vs v{version}",
                component_id=cid,
                control_version="1",
                treatment_version=str(version),
                alpha=0.05,
                planned_n=200,
                margin=0.0,
                primary_metric="trade_return",
                randomisation_unit="signal",
                current_stage=10 if share <= 0.1 else 50,
                deployment_id=deployment.deployment_id,
                data_start=data_start,
            ),
            NOW,
        )
    return test_id


def roll_back(settings: Settings, cid: str) -> None:
    with connect(settings) as wh:
        state.update_deployment(
            wh, f"dep_{cid}_v2", NOW, status="rolled_back", ended_at=NOW, reason="test"
        )
        state.update_test(wh, f"ab_{cid}", NOW, status="rolled_back", ended_at=NOW)


TRADE_COLUMNS = (
    "trade_id",
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


def trades(settings: Settings, cid: str) -> pd.DataFrame:
    with connect(settings) as wh:
        return wh.fetch_df(
            f"select {', '.join(TRADE_COLUMNS)}, ingest_id, loaded_at from raw_trades"
            " where component_id = %(c)s order by trade_id",
            {"c": cid},
        )


def open_rows(settings: Settings, cid: str) -> list[tuple[Any, ...]]:
    with connect(settings) as wh:
        return wh.fetchall(
            "select version, entry_ts, unit_key, arm, test_id from simulation_open_trades"
            " where component_id = %(c)s order by entry_ts, version",
            {"c": cid},
        )


def forget(settings: Settings, cid: str) -> None:
    """Remove every trace of the component's simulation (to replay it another way)."""
    with connect(settings) as wh:
        for table in ("raw_trades", "simulation_state", "simulation_open_trades"):
            wh.execute(f"delete from {table} where component_id = %(c)s", {"c": cid})


def key_of(cid: str, symbol: str, entry: pd.Timestamp) -> str:
    return unit_key(cid, symbol, entry.to_pydatetime())


def warehouse_bars(wh: Warehouse, symbol: str, end: datetime) -> Bars:
    frame = wh.fetch_df(
        "select bar_at as ts, open_price as open, high_price as high, low_price as low,"
        " close_price as close, volume from stg_raw__bars where symbol = %(s)s"
        " and bar_at <= %(e)s order by bar_at",
        {"s": symbol, "e": end},
    )
    return Bars.from_frame(frame, symbol=symbol)


def run(settings: Settings, cid: str, until: datetime) -> SimulationReport:
    return simulate(settings, cid, until=until, now=NOW)


# -- the fill rules of a re-managed position ----------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_re_managing_a_position_with_its_own_levels_reproduces_the_backtest_exit(
    seed: int,
) -> None:
    """Scenario: every trade of a book, picked up at any bar after its entry with its version's
    own stop and take-profit. Outcome: managed_exit gives the kernel's exit bar, price and
    reason (end of data: still open), so move_stops follows the backtester's fill rules."""
    rng = np.random.default_rng(seed)
    frame = bars_from_returns(rng.normal(0.0, 0.015, 400), seed)
    bars = Bars.from_frame(frame, symbol="RW")
    name = "sma_cross" if seed % 2 else "donchian_breakout"
    strategy = load_strategy(name)
    windows = {"fast": 4, "slow": 12} if name == "sma_cross" else {"lookback": 10}
    params = resolve_params(
        strategy,
        {
            **windows,
            "allow_short": True,
            "stop_loss": 0.01 * (1 + seed % 3),
            "take_profit": 0.02 * seed,
        },
    )
    target = strategy.signals(bars, params)
    costs = Costs(fees_bps=1.0, slippage_bps=2.0)
    result = fill(
        bars,
        target,
        stop_loss=params["stop_loss"],
        take_profit=params["take_profit"],
        costs=costs,
    )
    t = result.trades
    checked = 0
    for i in range(len(t)):
        for start in range(int(t.entry_index[i]) + 1, int(t.exit_index[i]) + 1):
            got = managed_exit(
                bars,
                target,
                int(t.side[i]),
                float(t.entry_price[i]),
                start,
                stop_loss=params["stop_loss"],
                take_profit=params["take_profit"],
                slippage=2e-4,
            )
            reason = EXIT_REASONS[int(t.exit_reason[i])]
            if reason == "end_of_data":
                assert got.index is None
                continue
            assert (got.index, got.reason) == (int(t.exit_index[i]), reason)
            assert got.price == pytest.approx(float(t.exit_price[i]), rel=1e-12)
            checked += 1
    assert checked > 50


def test_the_annualisation_does_not_move_as_the_window_grows() -> None:
    """Scenario: hourly bars around the clock cut at a later and later hour. Outcome: the same
    bars per year each time (the last, partial day is left out), so sizes never change."""
    n = 24 * 30
    time = np.datetime64("2020-01-01T00", "ns") + np.arange(n) * np.timedelta64(1, "h")
    c = np.full(n, 100.0)
    bars = Bars("H", time, c, c, c, c, np.ones(n))
    figures = {bars_per_year(bars.slice(0, stop), 252) for stop in (24 * 5 + 3, 24 * 9 + 17, n)}
    assert figures == {252.0 * 24}


def test_until_accepts_dates_times_and_offsets() -> None:
    assert parse_until("2014-06-30") == datetime(2014, 6, 30, 23, 59, 59, 999999)
    assert parse_until("2014-06-30T14:30") == datetime(2014, 6, 30, 14, 30)
    assert parse_until("2014-06-30T16:30:00+02:00") == datetime(2014, 6, 30, 14, 30)
    assert parse_until("2014-06-30T14:30:00Z") == datetime(2014, 6, 30, 14, 30)
    with pytest.raises(typer.BadParameter):
        parse_until("June 30")


# -- production only ----------------------------------------------------------------------------
def test_without_a_test_every_trade_is_production_and_a_rerun_writes_nothing(
    sim_settings: Settings,
) -> None:
    """Scenario: a component with no deployment yet, replayed to T1. Outcome: its production
    deployment is created for version 1; every trade of v1's book entered after the first bar
    and closed by T1 is written once, as production v1; a position still open is kept in
    simulation_open_trades; the same run again writes nothing and leaves every row as it was."""
    settings = sim_settings
    report = run(settings, "prod_only", T1)
    with connect(settings) as wh:
        [row] = state.allocation(wh, "prod_only")
        bars = warehouse_bars(wh, "NOISE", T1)
    assert (row.version, row.arm) == (1, "production")
    book = backtest(
        load_strategy("sma_cross"),
        bars,
        FAST,
        costs=Costs(settings.optimize_fees_bps, settings.optimize_slippage_bps),
    ).trades
    closed = [
        i for i in range(len(book)) if EXIT_REASONS[int(book.exit_reason[i])] != "end_of_data"
    ]
    written = trades(settings, "prod_only")
    assert report.window_start == bars.time[0].astype("datetime64[us]").item()
    assert report.window_end == datetime(2014, 6, 30)
    assert len(written) == report.trades_written == report.trades_inserted == len(closed) > 50
    assert set(written["variant"]) == {"production"}
    assert set(written["strategy_version"]) == {"1"}
    assert written["model_version"].isna().all()
    entries = pd.to_datetime(bars.time[book.entry_index[closed]])
    assert list(written["trade_id"]) == sorted(trade_id("prod_only", 1, e) for e in entries)
    # quantity = size * initial capital / entry fill; fees = fee rate * both notionals
    first = written.iloc[0]
    assert first["quantity"] == pytest.approx(100000 / first["entry_price"])
    notional = (first["entry_price"] + first["exit_price"]) * first["quantity"]
    assert first["fees"] == pytest.approx(settings.optimize_fees_bps / 1e4 * notional)
    [(counts)] = report.counts
    assert (counts.version, counts.arm, counts.not_taken) == (1, "production", 0)
    assert counts.closed + counts.still_open == counts.entered
    assert len(open_rows(settings, "prod_only")) == len(report.open_positions) == counts.still_open

    again = run(settings, "prod_only", T1)
    assert again.trades_written == 0 and again.window_end is None and again.notes
    pd.testing.assert_frame_equal(trades(settings, "prod_only"), written)
    with connect(settings) as wh:
        cursor = wh.fetchall("select * from simulation_state where component_id = 'prod_only'")
    assert cursor == [("prod_only", "NOISE", datetime(2014, 6, 30), cursor[0][3])]
    assert run(settings, "prod_only", T1).trades_written == 0
    with connect(settings) as wh:
        same = wh.fetchall("select * from simulation_state where component_id = 'prod_only'")
    assert same == cursor  # not even its updated_at moved


def test_a_first_run_starts_after_the_components_own_last_trade(sim_settings: Settings) -> None:
    """Scenario: a component whose own trades end on 2013-03-15. Outcome: the first replay
    starts there, and no paper trade is entered before it."""
    settings = sim_settings
    path = Path(settings.dbt_artifacts_dir or ".") / "own_trades.csv"
    path.write_text(
        "trade_id,component_id,symbol,side,quantity,entry_ts,exit_ts,entry_price,exit_price\n"
        "own-1,own_trades,NOISE,long,10,2013-03-14T00:00:00,2013-03-15T00:00:00,100,101\n"
    )
    with open_warehouse(settings) as wh:
        assert ingest_file(wh, settings, Kind.trades, path).inserted == 1
    report = run(settings, "own_trades", T1)
    assert report.window_start == datetime(2013, 3, 15)
    written = trades(settings, "own_trades")
    simulated = written[written["trade_id"].str.startswith("sim:")]
    assert len(simulated) == report.trades_written > 0
    assert simulated["entry_ts"].min() > pd.Timestamp("2013-03-15")


# -- under a running test -----------------------------------------------------------------------
def assert_routed(written: pd.DataFrame, cid: str, test_id: str, share: float) -> None:
    for row in written.itertuples():
        arm = routing.assign(test_id, key_of(cid, row.symbol, row.entry_ts), share)
        assert row.variant == arm
        assert row.strategy_version == ("2" if arm == "treatment" else "1")


def test_under_a_test_each_trade_goes_to_the_arm_routing_assigns(sim_settings: Settings) -> None:
    """Scenario: v1 in production, v2 under a 50% test from the start, replayed to the end.
    Outcome: every written trade's variant is routing.assign(test, unit key, 0.5) and its
    strategy_version that arm's version; each version takes about half of its book's units."""
    settings = sim_settings
    test_id = start_test(settings, "ab")
    report = run(settings, "ab", T2)
    written = trades(settings, "ab")
    assert len(written) == report.trades_written > 100
    assert set(written["variant"]) == {"control", "treatment"}
    assert_routed(written, "ab", test_id, 0.5)
    counts = {c.arm: c for c in report.counts}
    for arm in ("control", "treatment"):
        c = counts[arm]
        assert abs(c.entered / (c.entered + c.not_taken) - 0.5) < 0.12
    live = counts["treatment"].entered / (counts["treatment"].entered + counts["control"].entered)
    assert abs(live - 0.5) < 0.12
    for position in report.open_positions:
        assert position.arm == routing.assign(test_id, position.unit_key, 0.5)
    # Every unit routed is logged for the sample-ratio check, taken or not.
    with connect(settings) as wh:
        logged = wh.fetchall(
            "select unit_key, arm, stage from ab_assignments where test_id = %(t)s", {"t": test_id}
        )
    assert {stage for _, _, stage in logged} == {50}
    assert all(arm == routing.assign(test_id, key, 0.5) for key, arm, _ in logged)
    with connect(settings) as wh:
        bars = warehouse_bars(wh, "NOISE", T2)
    costs = Costs(settings.optimize_fees_bps, settings.optimize_slippage_bps)
    units = {
        key_of("ab", "NOISE", pd.Timestamp(t))
        for params in (FAST, TREATMENT)
        for t in bars.time[
            backtest(load_strategy("sma_cross"), bars, params, costs=costs).trades.entry_index
        ]
    }  # both books' entries; a unit both enter on is one unit
    assert {key for key, _, _ in logged} == units
    assert len(units) < sum(c.entered + c.not_taken for c in report.counts)


def test_units_entered_before_the_tests_data_start_stay_with_production(
    sim_settings: Settings,
) -> None:
    """Scenario: a test whose data start is T1 and a replay from the first bar to T2. Outcome:
    the entries up to T1 are production v1 trades (the test did not exist yet), none of v2;
    those after T1 are routed between control and treatment."""
    settings = sim_settings
    test_id = start_test(settings, "late_test", data_start=T1)
    report = run(settings, "late_test", T2)
    written = trades(settings, "late_test")
    early = written[written["entry_ts"] <= pd.Timestamp(T1)]
    late = written[written["entry_ts"] > pd.Timestamp(T1)]
    assert len(early) > 20 and len(late) > 20
    assert set(early["variant"]) == {"production"} and set(early["strategy_version"]) == {"1"}
    assert set(late["variant"]) == {"control", "treatment"}
    assert_routed(late, "late_test", test_id, 0.5)
    assert {(c.version, c.arm) for c in report.counts} >= {
        (1, "production"),
        (1, "control"),
        (2, "treatment"),
    }


def test_real_bars_route_a_ten_percent_stage(sim_settings: Settings) -> None:
    """Scenario: GOOG daily bars (backtesting.py), v2 under a 10% stage. Outcome: variants follow
    routing.assign and the treatment takes about a tenth of its units."""
    settings = sim_settings
    test_id = start_test(settings, "goog_ab", {"fast": 6, "slow": 25, "allow_short": True}, 0.1)
    report = run(settings, "goog_ab", GOOG_END)
    written = trades(settings, "goog_ab")
    assert len(written) == report.trades_written > 100
    assert_routed(written, "goog_ab", test_id, 0.1)
    counts = {c.arm: c for c in report.counts}
    treatment, control = counts["treatment"], counts["control"]
    assert abs(treatment.entered / (treatment.entered + treatment.not_taken) - 0.1) < 0.07
    assert abs(control.entered / (control.entered + control.not_taken) - 0.9) < 0.07


def test_replaying_in_steps_writes_what_one_replay_writes(sim_settings: Settings) -> None:
    """Scenario: the same component and test replayed once to T2, then forgotten and replayed
    to the entry of one of its trades and on to T2 (that trade is open at the step). Outcome: the same trades, field for field,
    and the same positions left open."""
    settings = sim_settings
    start_test(settings, "steps")
    once = run(settings, "steps", T2)
    whole = trades(settings, "steps")[list(TRADE_COLUMNS)]
    open_whole = open_rows(settings, "steps")
    # Step at the entry bar of a trade that lasts a few bars, so it is open at the step.
    spans = whole[(whole["exit_ts"] - whole["entry_ts"]) > pd.Timedelta(days=3)]
    step = spans.iloc[len(spans) // 2]["entry_ts"].to_pydatetime()
    forget(settings, "steps")
    first = run(settings, "steps", step)
    assert first.open_positions  # something is carried over the step
    second = run(settings, "steps", T2)
    assert second.window_start == first.window_end == step
    stepped = trades(settings, "steps")[list(TRADE_COLUMNS)]
    pd.testing.assert_frame_equal(stepped, whole)
    assert open_rows(settings, "steps") == open_whole
    assert first.trades_written + second.trades_written == once.trades_written


def test_a_position_open_at_the_cursor_closes_under_the_arm_that_opened_it(
    sim_settings: Settings,
) -> None:
    """Scenario: production only to T1 (a position is open), then a test starts and the replay
    goes on to T2. Outcome: that position's trade is written by the second replay as production
    v1 (the arm it was opened under); the trades entered after T1 are control or treatment."""
    settings = sim_settings
    first = run(settings, "carry", T1)
    [held] = first.open_positions
    assert held.arm == "production" and held.test_id is None
    test_id = start_test(settings, "carry")
    second = run(settings, "carry", T2)
    written = trades(settings, "carry").set_index("trade_id")
    carried = written.loc[trade_id("carry", 1, held.entry_at)]
    assert (carried["variant"], carried["strategy_version"]) == ("production", "1")
    assert carried["exit_ts"] > pd.Timestamp(T1)
    later = written[written["entry_ts"] > pd.Timestamp(T1)].reset_index()
    assert set(later["variant"]) == {"control", "treatment"}
    assert_routed(later, "carry", test_id, 0.5)
    assert {(c.version, c.arm) for c in second.counts} >= {(1, "production"), (1, "control")}


def test_a_run_killed_before_the_cursor_moves_is_completed_by_the_next(
    sim_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the replay dies after its trades are ingested, before simulation_state and the
    open positions are saved. Outcome: the next run replays the same window, finds every trade
    already there (unchanged, none duplicated) and saves the cursor; a third run is a no-op."""
    settings = sim_settings
    import runner.deploy.simulate as module

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        run(settings, "crash", T1)
    monkeypatch.undo()
    partial = trades(settings, "crash")
    assert len(partial) > 0 and open_rows(settings, "crash") == []
    report = run(settings, "crash", T1)
    assert report.trades_ingest is not None
    assert report.trades_ingest.inserted == 0
    assert report.trades_ingest.unchanged == report.trades_written == len(partial)
    pd.testing.assert_frame_equal(trades(settings, "crash"), partial)
    assert run(settings, "crash", T1).trades_written == 0


# -- the open-position policy -------------------------------------------------------------------
def open_treatment(
    settings: Settings, cid: str, params: Mapping[str, Any] = TREATMENT
) -> tuple[Any, datetime]:
    """Start a 50% test of `params` and replay up to the entry of a treatment trade that lasts a
    few bars; return that open position and the time replayed to."""
    test_id = start_test(settings, cid, params)
    with connect(settings) as wh:
        bars = warehouse_bars(wh, "NOISE", T2)
    book = backtest(
        load_strategy("sma_cross"),
        bars,
        params,
        costs=Costs(settings.optimize_fees_bps, settings.optimize_slippage_bps),
    ).trades
    entries = pd.to_datetime(bars.time[book.entry_index])
    step = next(
        entries[i].to_pydatetime()
        for i in range(len(book) // 3, len(book))
        if book.exit_index[i] - book.entry_index[i] > 3
        and routing.assign(test_id, key_of(cid, "NOISE", entries[i]), 0.5) == "treatment"
    )
    first = run(settings, cid, step)
    [held] = [p for p in first.open_positions if p.arm == "treatment"]
    assert held.entry_at == step
    return held, step


def test_flatten_closes_a_rolled_back_versions_position_at_the_next_open(
    sim_settings: Settings,
) -> None:
    """Scenario: policy flatten; a treatment position is open at the step, then the test is
    rolled back. Outcome: the next replay closes it at the open of the first bar after it (slippage
    against it), as treatment v2, and reports the policy exit; later entries are production."""
    settings = sim_settings
    held, step = open_treatment(settings, "flat")
    roll_back(settings, "flat")
    report = run(settings, "flat", T2)
    with connect(settings) as wh:
        bars = warehouse_bars(wh, "NOISE", T2)
    nxt = int(np.searchsorted(bars.time, np.datetime64(step), side="right"))
    side = 1 if held.side == "long" else -1
    price = float(bars.open[nxt]) * (1 - side * settings.optimize_slippage_bps / 1e4)
    [exit_] = report.policy_exits
    assert (exit_.policy, exit_.exit_reason, exit_.version, exit_.arm) == (
        "flatten",
        "flatten",
        2,
        "treatment",
    )
    written = trades(settings, "flat").set_index("trade_id")
    row = written.loc[trade_id("flat", 2, held.entry_at)]
    assert row["exit_ts"] == pd.Timestamp(bars.time[nxt])
    assert row["exit_price"] == pytest.approx(price, rel=1e-12)
    assert (row["variant"], row["strategy_version"]) == ("treatment", "2")
    later = written[written["entry_ts"] > pd.Timestamp(step)]
    assert set(later["variant"]) == {"production"}
    assert open_rows(settings, "flat") == [
        (p.version, p.entry_at, p.unit_key, p.arm, p.test_id) for p in report.open_positions
    ]


def test_finish_lets_a_rolled_back_versions_position_close_under_its_own_book(
    sim_settings: Settings,
) -> None:
    """Scenario: the flatten scenario under policy finish. Outcome: no policy exit; the
    position closes where version 2's own book closes it."""
    settings = sim_settings
    held, _ = open_treatment(settings, "keep")
    roll_back(settings, "keep")
    report = run(settings, "keep", T2)
    assert report.policy_exits == ()
    with connect(settings) as wh:
        bars = warehouse_bars(wh, "NOISE", T2)
    book = backtest(
        load_strategy("sma_cross"),
        bars,
        TREATMENT,
        costs=Costs(settings.optimize_fees_bps, settings.optimize_slippage_bps),
    ).trades
    [i] = np.flatnonzero(bars.time[book.entry_index] == np.datetime64(held.entry_at))
    row = trades(settings, "keep").set_index("trade_id").loc[trade_id("keep", 2, held.entry_at)]
    assert row["exit_ts"] == pd.Timestamp(bars.time[book.exit_index[i]])
    assert row["exit_price"] == float(book.exit_price[i])
    assert row["variant"] == "treatment"


NO_STOP = {"fast": 3, "slow": 10, "allow_short": True, "stop_loss": 0.0}


def test_move_stops_re_manages_a_rolled_back_position_with_the_production_stop(
    sim_settings: Settings,
) -> None:
    """Scenario: policy move_stops; production v1 has a 0.5% stop, the treatment v2 none, and a
    v2 position is open at the step when the test is rolled back. Outcome: from the first bar
    after it the position keeps v2's signal exits but takes v1's stop, measured from its own entry
    fill: it closes at the first of (v2's next different target, at the open) and (the first bar
    through the stop, at the stop or the gapped open), slippage against it, as treatment v2."""
    settings = sim_settings
    held, step = open_treatment(settings, "moved", NO_STOP)
    roll_back(settings, "moved")
    report = run(settings, "moved", T2)
    [exit_] = report.policy_exits
    assert (exit_.policy, exit_.version, exit_.arm) == ("move_stops", 2, "treatment")
    with connect(settings) as wh:
        bars = warehouse_bars(wh, "NOISE", T2)
    strategy = load_strategy("sma_cross")
    target = strategy.signals(bars, resolve_params(strategy, NO_STOP))
    side = 1 if held.side == "long" else -1
    slip = settings.optimize_slippage_bps / 1e4
    start = int(np.searchsorted(bars.time, np.datetime64(step), side="right"))
    decided = target[start - 1 : -1]
    signal_bar = start + int(np.flatnonzero(~np.isnan(decided) & (decided != side))[0])
    level = held.entry_price * (1 - side * 0.005)
    through = bars.low[start:] <= level if side > 0 else bars.high[start:] >= level
    stop_bar = start + int(np.flatnonzero(through)[0])
    if signal_bar <= stop_bar:
        bar, reason = signal_bar, "signal"
        price = float(bars.open[bar]) * (1 - side * slip)
    else:
        bar, reason = stop_bar, "stop_loss"
        gap = min if side > 0 else max
        price = gap(float(bars.open[bar]), level) * (1 - side * slip)
    assert reason == "stop_loss"  # the moved stop, not v2's own exit, closed it
    assert (exit_.exit_reason, exit_.exit_at) == (
        reason,
        bars.time[bar].astype("datetime64[us]").item(),
    )
    assert exit_.exit_price == pytest.approx(price, rel=1e-12)
    row = trades(settings, "moved").set_index("trade_id").loc[trade_id("moved", 2, held.entry_at)]
    assert (row["variant"], row["strategy_version"]) == ("treatment", "2")
    assert row["exit_price"] == exit_.exit_price


# -- a model-driven strategy --------------------------------------------------------------------
def test_a_model_strategy_trades_its_models_probabilities_and_writes_them(
    sim_settings: Settings,
) -> None:
    """Scenario: ml_signal trading model ml_clf v1 (production), replayed with 60 new bars given
    through --bars, which leaves fct_bar_features behind. Outcome: the simulator rebuilds the
    features, writes one prediction per window bar that has a probability (the id of
    runner score, label = proba >= 0.5, no actual label yet) and trades tagged model v1; a
    re-run writes nothing."""
    from runner.optimize import models
    from runner.optimize.features import load_features
    from runner.optimize.retrain import RetrainConfig, retrain

    settings = sim_settings
    run_dbt(settings, "run", select="+fct_bar_features")
    with connect(settings) as wh:
        fit = retrain(
            load_features(wh, "TREND"),
            config=RetrainConfig(num_threads=1, window=None, folds=3, num_boost_round=40),
        )
        with wh.transaction():
            models.register_version(
                wh,
                settings.artifacts,
                model_id=MODEL,
                result=fit,
                component_id="ml",
                code_version="0.1.0+test",
                status="production",
            )
    more = trending_market()[: TREND_BARS + 60]
    path = write_bars_csv(more, "TREND", Path(settings.dbt_artifacts_dir or ".") / "trend.csv")
    end = more["ts"].iloc[-1].to_pydatetime()
    report = simulate(settings, "ml", until=end, bars_path=path, now=NOW)
    assert report.bars_ingest is not None and report.bars_ingest.inserted == 60
    assert report.window_end == end
    with connect(settings) as wh:
        last = wh.fetchone("select max(bar_at) from fct_bar_features where symbol = 'TREND'")
        assert last == (end,)
        predictions = wh.fetch_df(
            "select prediction_id, model_id, model_version, ts, predicted_label,"
            " predicted_proba, actual_label from raw_predictions where model_id = %(m)s"
            " order by ts",
            {"m": MODEL},
        )
    assert len(predictions) == report.predictions_written > 60
    assert (predictions["ts"] > pd.Timestamp(report.window_start)).all()
    assert set(predictions["model_version"]) == {"1"}
    assert (predictions["predicted_label"] == (predictions["predicted_proba"] >= 0.5)).all()
    assert predictions["actual_label"].isna().all()
    first = predictions.iloc[0]
    assert first["prediction_id"] == f"{MODEL}:v1:TREND:{first['ts']:%Y-%m-%dT%H:%M:%S}"
    written = trades(settings, "ml")
    assert len(written) == report.trades_written > 0
    assert set(written["model_version"]) == {"v1"}
    again = simulate(settings, "ml", until=end, bars_path=path, now=NOW)
    assert again.trades_written == again.predictions_written == 0


# -- the CLI, a bars file and a fresh warehouse -------------------------------------------------
@pytest.fixture
def fresh_goog(tmp_path: Path) -> Iterator[Settings]:
    project = copy_dbt_project(tmp_path / "project", [component("goog_cli", "GOOG")])
    with fresh_settings("duckdb", tmp_path, project) as settings:
        run_dbt(settings, "seed", select="components")
        yield settings


def test_the_cli_ingests_bars_up_to_until_and_builds_the_view(
    fresh_goog: Settings, tmp_path: Path
) -> None:
    """Scenario: a fresh DuckDB warehouse (no bars, no bars view) and `runner simulate --bars
    goog.csv --until 2008-12-31`. Outcome: only the bars up to then are ingested, the view is
    built, the trades written; the table output names the window and the counts; an unknown
    component is a ConfigError; a malformed --until a usage error."""
    settings = fresh_goog
    path = write_bars_csv(goog_frame(), "GOOG", tmp_path / "goog.csv")
    app = typer.Typer()
    app.command()(simulate_command)
    cli = CliRunner()
    args = ["-c", "goog_cli", "--bars", str(path), "--until", "2008-12-31"]
    shown = cli.invoke(app, [*args, "--json"], obj=settings)
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["window_end"] == "2008-12-31T00:00:00"
    assert report["bars_ingest"]["inserted"] == int((goog_frame()["ts"] <= "2008-12-31").sum())
    assert report["trades_written"] == report["trades_inserted"] > 20
    with connect(settings) as wh:
        assert wh.fetchone("select max(ts) from raw_bars") == (datetime(2008, 12, 31),)
        assert wh.table_exists("stg_raw__bars")
    more = ["-c", "goog_cli", "--bars", str(path), "--until", "2013-03-01"]
    table = cli.invoke(app, more, obj=settings, terminal_width=120)
    assert table.exit_code == 0, table.output
    assert "2008-12-31 00:00 → 2013-03-01 00:00" in table.output
    assert "bars replayed" in table.output and "production" in table.output
    unknown = cli.invoke(app, ["-c", "nope", "--until", "2010-01-01"], obj=settings)
    assert isinstance(unknown.exception, ConfigError)
    bad = cli.invoke(app, ["-c", "goog_cli", "--until", "soon"], obj=settings)
    assert bad.exit_code == 2
