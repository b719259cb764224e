"""`runner report`: the HTML file and its charts, on both warehouses, from an empty warehouse to a
real engine run, checked in headless Chromium the way a person opens it.

Scenarios: an empty warehouse (every section says why it is empty); a handmade warehouse whose
component id is HTML (every section drawn, every string escaped, nothing fetched); the engine's
own path on the bundled sample data with an A/B test promoted (every chart drawn, the confidence
sequence ending on the engine's stored look, no console error in Chromium).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from runner.audit import AuditTrail, Event
from runner.config import Settings
from runner.deploy.abtest import Arms, Design, look
from runner.engine_tables import ABTest, insert_ab_tests
from runner.errors import ConfigError
from runner.report import KEY_CHARTS, ReportResult, build_report, key_charts
from runner.report.data import ReportData, Threshold, confidence_sequence
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.scenarios import PROJECT_DIR, fresh_settings

HTML_ID = '<img src=x onerror=alert(1)>&"mom"'
PLAIN_ID = "plain_one"
AS_OF = date(2024, 3, 31)
START = datetime(2024, 2, 1)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# -- the handmade warehouse: the marts' columns the report reads, engine rows through the engine ---
def _load(wh: Warehouse, table: str, ddl: str, rows: dict[str, list[object]]) -> None:
    wh.execute(f"create table {table} ({ddl})")
    wh.load_arrow(table, pa.table(rows))


def build_handmade(wh: Warehouse, components: tuple[str, ...]) -> None:
    """Sixty days of marts per component, an optimization run whose study is gone, an A/B test
    at 50% with its arms' trades and one recorded look, and the events that go with them."""
    migrate(wh)
    days = [AS_OF - timedelta(days=59 - i) for i in range(60)]
    rng = np.random.default_rng(11)
    daily: dict[str, list[object]] = {k: [] for k in ("component_id", "date_day", "n_trades")}
    daily |= {"pnl": [], "equity_end": [], "daily_return": []}
    rolling: dict[str, list[object]] = {
        k: []
        for k in (
            "component_id",
            "date_day",
            "window_days",
            "metric",
            "value",
            "status",
            "evidence_count",
            "min_evidence",
            "as_of_date",
        )
    }
    for cid in components:
        pnl = rng.normal(20.0, 150.0, len(days))
        daily["component_id"] += [cid] * len(days)
        daily["date_day"] += days
        daily["n_trades"] += [2] * len(days)
        daily["pnl"] += list(pnl)
        daily["equity_end"] += list(10_000 + np.cumsum(pnl))
        daily["daily_return"] += list(pnl / 10_000)
        for window in (7, 30):
            for metric, centre in (("win_rate", 0.5), ("sharpe", 1.0), ("max_drawdown", 0.05)):
                values = centre + rng.normal(0, 0.1 * max(centre, 0.5), len(days))
                rolling["component_id"] += [cid] * len(days)
                rolling["date_day"] += days
                rolling["window_days"] += [window] * len(days)
                rolling["metric"] += [metric] * len(days)
                rolling["value"] += list(values)
                rolling["status"] += ["insufficient_data"] * 5 + ["ok"] * (len(days) - 5)
                rolling["evidence_count"] += list(range(len(days)))
                rolling["min_evidence"] += [5] * len(days)
                rolling["as_of_date"] += [AS_OF] * len(days)
    _load(
        wh,
        "fct_strategy_daily",
        "component_id text, date_day date, n_trades bigint, pnl double precision,"
        " equity_end double precision, daily_return double precision",
        daily,
    )
    _load(
        wh,
        "fct_rolling_metrics_daily",
        "component_id text, date_day date, window_days integer, metric text,"
        " value double precision, status text, evidence_count bigint, min_evidence bigint,"
        " as_of_date date",
        rolling,
    )
    n = len(components)
    _load(
        wh,
        "fct_trades",
        "component_id text, strategy_version text, variant text, exit_date date",
        {
            "component_id": [*components, components[0], components[0]],
            "strategy_version": ["1"] * n + ["1", "2"],
            "variant": [None] * n + ["control", "treatment"],
            "exit_date": [days[0]] * n + [days[40], days[40]],
        },
    )
    _load(
        wh,
        "mart_underperforming_periods",
        "component_id text, metric text, window_days integer, as_of_date date,"
        " start_date date, end_date date, n_days integer, worst_value double precision,"
        " has_critical boolean, pnl double precision, n_trades bigint, dominant_regime text,"
        " is_open boolean",
        {
            "component_id": [components[0]],
            "metric": ["sharpe"],
            "window_days": [7],
            "as_of_date": [AS_OF],
            "start_date": [days[20]],
            "end_date": [days[29]],
            "n_days": [10],
            "worst_value": [-1.5],
            "has_critical": [True],
            "pnl": [-420.0],
            "n_trades": [20],
            "dominant_regime": ["down_high"],
            "is_open": [False],
        },
    )
    _load(
        wh,
        "mart_regime_performance",
        "component_id text, regime text, window_days integer, as_of_date date, n_trades bigint,"
        " n_wins bigint, n_losses bigint, win_rate double precision,"
        " avg_trade_return double precision, sharpe_per_trade double precision,"
        " is_insufficient_data boolean",
        {
            "component_id": [c for c in components for _ in range(2)],
            "regime": ["up_low", "down_high"] * n,
            "window_days": [30] * 2 * n,
            "as_of_date": [AS_OF] * 2 * n,
            "n_trades": [40, 12] * n,
            "n_wins": [24, 4] * n,
            "n_losses": [16, 8] * n,
            "win_rate": [0.6, 0.33] * n,
            "avg_trade_return": [0.004, -0.006] * n,
            "sharpe_per_trade": [0.2, -0.3] * n,
            "is_insufficient_data": [False, True] * n,
        },
    )
    _load(
        wh,
        "mart_metric_alerts",
        "component_id text, status text, is_alert boolean, as_of_date date",
        {
            "component_id": [components[0]],
            "status": ["critical"],
            "is_alert": [True],
            "as_of_date": [AS_OF],
        },
    )
    _load(
        wh,
        "alert_thresholds",
        "metric text, component_id text, direction text, warning_value double precision,"
        " critical_value double precision",
        {
            "metric": ["win_rate", "sharpe", "max_drawdown", "sharpe"],
            "component_id": [None, None, None, components[0]],
            "direction": ["higher_is_better", "higher_is_better", "lower_is_better"] * 1
            + ["higher_is_better"],
            "warning_value": [0.5, 1.0, 0.1, 0.8],
            "critical_value": [0.45, 0.5, 0.15, 0.3],
        },
    )
    _load(wh, "components", "component_id text", {"component_id": list(components)})
    _add_run(wh, components[0])
    _add_test(wh, components[0])


def _add_run(wh: Warehouse, cid: str) -> None:
    wh.execute(
        "insert into optimization_runs (run_id, component_id, trigger_reason, study_name,"
        " storage_kind, strategy, search_space, objective, verdict, started_at, code_version,"
        " n_trials, n_pruned, dsr, pbo, holdout_p, reasons, gates) values (%(run)s, %(c)s,"
        " 'manual', 'tb-gone', 'sqlite', 'sma_cross', '{}', 'sharpe', 'rejected', %(at)s, 'test',"
        " 40, 6, 0.71, 0.42, 0.2, %(reasons)s, %(gates)s)",
        {
            "run": "opt_20240331T000000_0000beef",
            "c": cid,
            "at": datetime(2024, 3, 31, 12, tzinfo=UTC),
            "reasons": json.dumps(["Deflated Sharpe ratio 0.71 is below 0.95 <b>bold</b>."]),
            "gates": json.dumps({"dsr_min": 0.95, "pbo_max": 0.3, "alpha": 0.05}),
        },
    )


@dataclass(frozen=True)
class HandmadeTest:
    control: np.ndarray
    treatment: np.ndarray


def _arm_rows(cid: str, arm: str, version: str, returns: np.ndarray) -> dict[str, list[object]]:
    entries = [
        START + timedelta(hours=6 * i + (3 if arm == "treatment" else 0))
        for i in range(len(returns))
    ]
    return {
        "trade_id": [f"{arm}-{i}" for i in range(len(returns))],
        "component_id": [cid] * len(returns),
        "symbol": ["MOM"] * len(returns),
        "side": ["long"] * len(returns),
        "quantity": [10.0] * len(returns),
        "entry_ts": entries,
        "exit_ts": [t + timedelta(hours=2) for t in entries],
        "entry_price": [100.0] * len(returns),
        "exit_price": list(100.0 * (1 + returns)),
        "fees": [0.0] * len(returns),
        "strategy_version": [version] * len(returns),
        "variant": [arm] * len(returns),
        "ingest_id": ["handmade"] * len(returns),
        "source_row": list(range(len(returns))),
        "loaded_at": [START] * len(returns),
    }


def _add_test(wh: Warehouse, cid: str) -> HandmadeTest:
    rng = np.random.default_rng(5)
    control, treatment = rng.normal(0.001, 0.01, 60), rng.normal(0.004, 0.01, 40)
    for arm, version, returns in (("control", "1", control), ("treatment", "2", treatment)):
        wh.load_arrow("raw_trades", pa.table(_arm_rows(cid, arm, version, returns)))
    design = Design(0.05, 2000, 0.0005, 30, 30.0, 0.15, 0.45, 20)
    arms = Arms(control, treatment, 60, 40, None, None, 0.0, None, None)
    stats = look(arms, design, None)
    insert_ab_tests(
        wh,
        [
            ABTest(
                test_id="ab_handmade",
                test_name=f"{cid} v2 vs v1",
                component_id=cid,
                control_version="1",
                treatment_version="2",
                alpha=0.05,
                planned_n=2000,
                margin=0.0005,
                primary_metric="net_return_per_trade",
                randomisation_unit="signal",
                current_stage=50,
                n_control=stats.n_control,
                n_treatment=stats.n_treatment,
                estimate=stats.estimate,
                cs_lower=stats.lower,
                cs_upper=stats.upper,
                always_valid_p=stats.p_value,
                data_start=START - timedelta(hours=1),
                decision_reason="Undecided: <b>held</b> at 50%.",
                look_count=3,
            )
        ],
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    AuditTrail(wh).record(
        [
            Event(
                "ab_stage_advanced",
                "Non-inferior at 10% <script>alert('x')</script>.",
                {**stats.to_dict(), "n_control": 30, "n_treatment": 20, "stage": 10},
                component_id=cid,
                test_id="ab_handmade",
            )
        ],
        datetime(2024, 3, 10, tzinfo=UTC),
    )
    return HandmadeTest(control, treatment)


@pytest.fixture
def handmade(settings: Settings, tmp_path: Path) -> Settings:
    with connect(settings) as wh:
        build_handmade(wh, (HTML_ID, PLAIN_ID))
    return settings


# -- unit: pure parts ----------------------------------------------------------------------------
def test_confidence_sequence_ends_on_the_look_the_engine_computes() -> None:
    """The recomputed sequence's last point is runner/deploy/abtest.py's look on the same arms."""
    rng = np.random.default_rng(3)
    control, treatment = rng.normal(0.001, 0.01, 80), rng.normal(0.003, 0.012, 50)
    c_days = np.array([np.datetime64("2024-01-01") + i for i in range(80)])
    t_days = np.array([np.datetime64("2024-01-01") + int(i * 1.5) for i in range(50)])
    points = confidence_sequence(control, c_days, treatment, t_days, 0.05, 3000)
    design = Design(0.05, 3000, 0.001, 30, 30.0, 0.15, None, 20)
    engine = look(Arms(control, treatment, 80, 50, None, None, 0.0, None, None), design, None)
    last = points[-1]
    assert (last.n_control, last.n_treatment) == (80, 50)
    assert last.estimate == pytest.approx(engine.estimate)
    assert last.lower == pytest.approx(engine.lower) and last.upper == pytest.approx(engine.upper)
    # Valid at every n at once: the band narrows as trades accumulate.
    widths = [p.upper - p.lower for p in points if p.lower is not None and p.upper is not None]
    assert widths[-1] < widths[len(widths) // 4]


def test_key_charts_are_the_drawn_ones_of_equity_ab_tests_and_gates(tmp_path: Path) -> None:
    """The cycle attaches at most three charts, in KEY_CHARTS order, skipping undrawn ones."""
    paths = {name: tmp_path / f"{name}.png" for name in ("regimes", "optimization_gates", "equity")}
    result = ReportResult(tmp_path / "report.html", paths)
    assert key_charts(result) == [paths["equity"], paths["optimization_gates"]]
    assert len(KEY_CHARTS) == 3


def test_a_component_threshold_row_overrides_the_default_row() -> None:
    """The chart lines follow the seed's rule: the component's own row, else the default row,
    else the seed's shipped defaults."""
    data = ReportData(datetime(2024, 1, 1, tzinfo=UTC), "test", None, None)
    data.thresholds = {
        ("", "sharpe"): Threshold("sharpe", "higher_is_better", 1.0, 0.5),
        ("mom", "sharpe"): Threshold("sharpe", "higher_is_better", 0.8, 0.3),
    }
    assert data.threshold("mom", "sharpe").critical == 0.3
    assert data.threshold("other", "sharpe").critical == 0.5
    assert data.threshold("mom", "max_drawdown").warning == 0.10  # not seeded: the default


def test_a_missing_duckdb_file_is_a_handled_error_and_creates_nothing(tmp_path: Path) -> None:
    """Reporting on a DuckDB file that does not exist says so (exit 1) instead of creating it."""
    settings = Settings(duckdb_path=tmp_path / "none.duckdb", database_url=None)
    with pytest.raises(ConfigError, match="No warehouse"):
        build_report(settings, out_dir=tmp_path / "out")
    assert not (tmp_path / "none.duckdb").exists()


# -- unit: both warehouses, no dbt -------------------------------------------------------------------
def test_an_empty_warehouse_gives_a_report_that_says_why_each_section_is_empty(
    settings: Settings, tmp_path: Path
) -> None:
    """A migrated warehouse with no marts: no chart, and each section names what is missing."""
    with connect(settings) as wh:
        migrate(wh)
    result = build_report(settings, out_dir=tmp_path / "out")
    html = result.html_path.read_text()
    assert result.chart_paths == {}
    for section in ("equity", "rolling", "regimes", "optimization", "ab_tests", "events"):
        assert f'data-empty="{section}"' in html
    assert "fct_strategy_daily does not exist yet: run `runner analyze`" in html
    assert "No A/B test has started yet" in html
    assert "The engine has recorded no event yet." in html
    assert not any("could not be read" in note for note in result.notes)


def test_every_section_is_drawn_and_every_string_from_the_data_is_escaped(
    handmade: Settings, tmp_path: Path
) -> None:
    """Component ids, reasons and decisions holding HTML appear as text, never as markup."""
    result = build_report(handmade, out_dir=tmp_path / "out")
    html = result.html_path.read_text()
    assert {"equity", "regimes", "optimization_gates", "ab_tests"} <= set(result.chart_paths)
    assert sum(name.startswith("rolling_") for name in result.chart_paths) == 2
    assert not any("could not be read" in note for note in result.notes), result.notes
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;&#34;mom&#34;" in html
    assert "<img src=x" not in html and "<script>alert" not in html and "<b>" not in html
    assert "&lt;b&gt;held&lt;/b&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    # The study of the run is gone: the table says so, no history is drawn.
    assert "optimization_history" not in result.chart_paths
    assert "Optuna study:" in html
    for path in result.chart_paths.values():
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.png", path.name), path.name
        assert path.parent == tmp_path / "out" / "charts"
        assert path.read_bytes().startswith(b"\x89PNG")


def _links(html: str) -> list[tuple[str, str, str]]:
    """Every URL-valued attribute of the document's elements (text content is not markup)."""

    class Links(HTMLParser):
        found: list[tuple[str, str, str]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in ("src", "href", "srcset", "poster", "data", "action"):
                    self.found.append((tag, name, value or ""))

    parser = Links()
    parser.found = []
    parser.feed(html)
    return parser.found


def test_the_report_file_loads_nothing_from_the_network(handmade: Settings, tmp_path: Path) -> None:
    """Every image is an inline data URI; no script, stylesheet, font or absolute URL."""
    result = build_report(handmade, out_dir=tmp_path / "out")
    html = result.html_path.read_text()
    links = _links(html)
    assert links, "the report has no image"
    for tag, attribute, value in links:
        assert value.startswith(("data:image/png;base64,", "#")), (tag, attribute, value[:60])
    assert not re.search(r"https?://|url\(|@import|<script|<link|<iframe", html, re.IGNORECASE)
    assert html.count('<figure data-chart="') == len(result.chart_paths)


def test_one_component_filter_leaves_the_others_out(handmade: Settings, tmp_path: Path) -> None:
    """--component keeps one component in every section."""
    result = build_report(handmade, out_dir=tmp_path / "out", component=PLAIN_ID, days=20)
    html = result.html_path.read_text()
    assert "onerror" not in html
    assert [n for n in result.chart_paths if n.startswith("rolling_")] == [f"rolling_{PLAIN_ID}"]
    assert "ab_tests" not in result.chart_paths  # the test belongs to the other component
    assert result.data_start == (AS_OF - timedelta(days=19)).isoformat()


def test_the_cli_prints_where_the_report_is(handmade: Settings, tmp_path: Path) -> None:
    """`runner report --json` prints the HTML path, the charts and the ones Discord gets."""
    from runner.cli.report import report_command

    app = typer.Typer()

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = handmade

    app.command("report")(report_command)
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["html"] == str(out / "report.html") and Path(printed["html"]).is_file()
    assert printed["key_charts"][0] == str(out / "charts" / "equity.png")
    plain = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert plain.exit_code == 0 and "report.html" in plain.output


# -- integration: the engine's own path, then Chromium -----------------------------------------------
@dataclass(frozen=True)
class EngineRun:
    settings: Settings
    result: ReportResult


def _ab_batch(path: Path, start: datetime, n: int, share: float, seed: int) -> None:
    """Paper trades of both arms of meanrev_ndx's test: the treatment earns more per trade."""
    rng = np.random.default_rng(seed)
    lines = [
        "trade_id,component_id,symbol,side,quantity,entry_ts,exit_ts,entry_price,"
        "exit_price,fees,strategy_version,variant"
    ]
    for i in range(n):
        arm = "treatment" if rng.random() < share else "control"
        r = rng.normal(0.006 if arm == "treatment" else 0.001, 0.01)
        entry = start + timedelta(days=int(i * 14 / n), hours=14, minutes=i % 60)
        version = "2" if arm == "treatment" else "1"
        lines.append(
            f"ab{seed}-{i},meanrev_ndx,NDX,long,10,{entry.isoformat()},"
            f"{(entry + timedelta(hours=5)).isoformat()},100,{100 * (1 + r):.6f},0,{version},{arm}"
        )
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineRun]:
    """The sample data through ANALYZE and OPTIMIZE (few trials), meanrev_ndx's risk-adjusted
    candidate through DEPLOY: smoke tests, then an A/B test fed paper trades until promoted."""
    from runner.analyze import analyze
    from runner.dbt import run_dbt
    from runner.demo import SAMPLE_AS_OF, sample_file
    from runner.deploy.rollout import deploy
    from runner.ingest import Kind, ingest_file
    from runner.optimize import SearchOptions, optimize

    workdir = tmp_path_factory.mktemp("report_engine")
    with fresh_settings("duckdb", workdir, PROJECT_DIR) as settings:
        with connect(settings) as wh:
            migrate(wh)
            for kind in (Kind.bars, Kind.trades, Kind.predictions):
                ingest_file(wh, settings, kind, sample_file(kind))
        analyze(settings, SAMPLE_AS_OF)
        optimize(settings, options=SearchOptions(trials=16, seed=7, as_of=SAMPLE_AS_OF))
        [started] = deploy(settings, component="meanrev_ndx")
        assert started.action == "test_started", started
        start = datetime(2019, 1, 2)
        for k, (n, share) in enumerate(((120, 0.1), (300, 0.1), (160, 0.5), (200, 0.5))):
            batch = workdir / f"ab{k}.csv"
            _ab_batch(batch, start + timedelta(days=14 * k), n, share, seed=k)
            with connect(settings) as wh:
                ingest_file(wh, settings, Kind.trades, batch, datetime(2019, 12, 31))
            [step] = deploy(settings, component="meanrev_ndx")
            if step.action == "promote":
                break
        # The trading marts again, so the equity curve shows the test's trades.
        run_dbt(
            settings,
            "run",
            select="+fct_strategy_daily +fct_trades",
            dbt_vars={"as_of_date": "2019-02-28"},
        )
        result = build_report(settings, out_dir=workdir / "report")
        yield EngineRun(settings, result)


@pytest.mark.integration
def test_a_real_engine_run_draws_every_chart(engine_run: EngineRun) -> None:
    """Sample data, searches and a promoted A/B test: every chart, small, no section empty."""
    result = engine_run.result
    expected = {
        "equity",
        "regimes",
        "optimization_gates",
        "optimization_history",
        "importances",
        "ab_tests",
    }
    assert expected <= set(result.chart_paths), sorted(result.chart_paths)
    assert {"rolling_trend_spx", "rolling_meanrev_ndx"} <= set(result.chart_paths)
    assert result.notes == []
    for path in result.chart_paths.values():
        assert 10_000 < path.stat().st_size < 250_000, (path.name, path.stat().st_size)
    assert [p.name for p in key_charts(result)] == [
        "equity.png",
        "ab_tests.png",
        "optimization_gates.png",
    ]


@pytest.mark.integration
def test_the_recomputed_sequence_ends_on_the_look_the_engine_stored(engine_run: EngineRun) -> None:
    """The chart's band is the engine's: its last point equals ab_tests' stored bounds, and the
    recorded looks (advanced, promoted) sit on it."""
    from runner.report.data import read_report_data

    with connect(engine_run.settings) as wh:
        data = read_report_data(wh, engine_run.settings, component="meanrev_ndx")
    [test] = data.ab_tests
    assert test.status == "promoted"
    last = test.sequence[-1]
    assert (last.n_control, last.n_treatment) == (test.n_control, test.n_treatment)
    assert last.lower == pytest.approx(test.cs_lower) and last.upper == pytest.approx(test.cs_upper)
    assert [look.event_type for look in test.looks] == ["ab_stage_advanced", "ab_test_promoted"]
    for recorded in test.looks:
        point = next(p for p in test.sequence if p.day == recorded.day)
        assert point.lower == pytest.approx(recorded.lower)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "Debian's chromium is not installed (`make browser` installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.integration
def test_the_report_renders_in_headless_chromium_without_errors(
    engine_run: EngineRun, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Opened from disk in headless Chromium: every chart image decodes (non-zero natural size),
    the page logs no console error and requests nothing but the file itself."""
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    html = engine_run.result.html_path
    screenshot = html.parent / "screenshot.png"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "figure[data-chart] img",
                "els => els.map(e => [e.closest('figure').dataset.chart, e.complete,"
                " e.naturalWidth, e.naturalHeight])",
            )
            title = page.title()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert {name for name, *_ in images} == set(engine_run.result.chart_paths)
    for name, complete, width, height in images:
        assert complete and width > 0 and height > 0, name
    assert errors == []
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert title.startswith("tradebase report")
    assert screenshot.stat().st_size > 50_000
