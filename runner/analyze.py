"""ANALYZE: build the analytics marts with dbt, read the latest performance back, and record
what IDENTIFY finds (alerts, recommendations) in the audit trail.

The metrics and rules themselves are SQL (models/marts); this module only orchestrates and reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.audit import AuditTrail, StoredEvent
from runner.config import Settings
from runner.dbt import DbtSession, NodeResult, project_fingerprint, run_dbt
from runner.identify import Alert, Recommendation, for_component, identify
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

PERFORMANCE_COLUMNS = (
    "component_id",
    "as_of_date",
    "window_days",
    "n_trades",
    "n_days",
    "win_rate",
    "avg_trade_return",
    "profit_factor",
    "expectancy",
    "sharpe",
    "sortino",
    "max_drawdown",
    "annual_return",
    "calmar",
)


@dataclass(frozen=True)
class AnalysisResult:
    as_of: date | None
    nodes: list[NodeResult]
    performance: list[dict[str, Any]]
    run_id: str = ""
    alerts: list[Alert] = field(default_factory=list)  # open: warning, critical
    recommendations: list[Recommendation] = field(default_factory=list)  # by priority
    events: list[StoredEvent] = field(default_factory=list)  # appended by this run
    notes: list[str] = field(default_factory=list)


LONGEST_WINDOW_DAYS = 30  # the marts' longest trailing window (dbt var windows)


# Most nodes of a build are small (tests, marts of a few thousand rows): dbt's own per-node work
# is as much of an hourly build as the warehouse's, and more threads than cores overlap the two.
DBT_THREADS = 4

# An incremental build's queries read few rows of big tables, and PostgreSQL's planner, costing
# them by the tables, compiles most of them with JIT: 0.1-0.7 s a query, more than the query.
INCREMENTAL_POSTGRES_SETTINGS = {"jit": "off"}


@contextmanager
def one_build_at_a_time(settings: Settings) -> Iterator[None]:
    """dbt rebuilds the marts in place through temporary relations of fixed names, so two builds
    of one PostgreSQL schema at once (overlapping cycles, `runner analyze` beside a cycle) fail
    each other: a build waits for the other, then builds. DuckDB lets one process write the file
    anyway."""
    if settings.dialect != "postgres":
        yield
        return
    with connect(settings) as wh:  # the session lock goes with this connection
        wh.execute("select pg_advisory_lock(hashtext(%(k)s))", {"k": f"tb:dbt:{settings.schema}"})
        yield


def build_analytics(
    settings: Settings,
    as_of: date | None = None,
    *,
    full_refresh: bool = False,
    session: DbtSession | None = None,
) -> list[NodeResult]:
    """Migrate, then `dbt build` every model and test (seeds included) for the given as-of date.

    The trade and bar models are incremental (docs/benchmarks.md, "Scale"): a build recomputes
    only what new, late or corrected rows touch. An incremental build (the hourly one) leaves
    out the staging views and the seeds, and the bar models when no bar was loaded or corrected
    since they were built (with their tests: tag bars), and the tests of an incremental model
    read the rows loaded within the lookback only. A full build rebuilds every model from the
    raw tables and runs every test on every row: with `full_refresh` (the cycle's daily build,
    `runner analyze --full-refresh`), and by itself when the project's files differ from those
    of the schema's last full build (table analytics_builds: an upgrade, an edited seed or
    model) or the schema was never built. A long-lived process passes its `session`: dbt parses
    the project once for it."""
    with one_build_at_a_time(settings):
        return _build(settings, as_of, full_refresh, session)


def _build(
    settings: Settings, as_of: date | None, full_refresh: bool, session: DbtSession | None
) -> list[NodeResult]:
    fingerprint = project_fingerprint(settings.project)
    with connect(settings) as wh:
        migrate(wh)
        # A schema built by another version of the project (an upgrade, an edited seed or
        # model) is rebuilt whole: an incremental model cannot tell which of its rows the
        # change touches. The first build of a schema is a full one anyway.
        full_refresh = full_refresh or needs_full_build(wh, settings.project)
        bars_changed = full_refresh or bars_changed_since_last_build(wh)
    # DuckDB admits one process-level holder of the file: our connection is closed before dbt runs.
    dbt_vars = {
        "as_of_date": as_of.isoformat() if as_of else None,
        "data_tests_scope": "all" if full_refresh else "changed",
    }
    # Unit tests pin the SQL with fixed inputs: the test suite runs them; the hourly build need not.
    extra: tuple[str, ...] = ("--exclude-resource-type", "unit_test", "--threads", str(DBT_THREADS))
    if full_refresh:
        extra += ("--full-refresh",)
    else:
        # Same project as the last build: the staging views over the raw tables (same SQL), the
        # seeds (same files) and the models built from them alone are as it left them, and so is every bar model when no bar
        # changed, and then the views over them too. (PostgreSQL drops the views over a table
        # dbt rebuilds: a view over int_market_regimes is rebuilt with it.) `cautious` keeps the
        # tests of a rebuilt model against a seed (relationships to components), which the
        # default would leave out with the seed.
        # Tests tagged invariant check what a model's SQL guarantees for any rows (keys of a
        # GROUP BY or a date spine, values from a fixed list, ratios bounded by construction):
        # only a defect of the SQL fails them. They run in every full build: the first after any
        # change of the project, and the cycle's daily one (which catches a defect that only
        # some new rows reveal within a day).
        # Models built from the seeds alone (tag from_seeds) are as the last full build left them.
        excluded = ["path:models/staging", "resource_type:seed", "tag:from_seeds", "tag:invariant"]
        if not bars_changed:
            excluded += ["tag:bars", "config.materialized:view"]
        extra += ("--exclude", *excluded, "--indirect-selection", "cautious")
    nodes = run_dbt(
        settings,
        "build",
        dbt_vars=dbt_vars,
        extra_args=extra,
        postgres_settings=None if full_refresh else INCREMENTAL_POSTGRES_SETTINGS,
        session=session,
    )
    if full_refresh:
        with connect(settings) as wh, wh.transaction():
            wh.execute("delete from analytics_builds")
            wh.execute(
                "insert into analytics_builds (fingerprint, built_at) values (%(f)s, %(t)s)",
                {"f": fingerprint, "t": datetime.now(UTC).replace(tzinfo=None)},
            )
    return nodes


def needs_full_build(wh: Warehouse, project: Path) -> bool:
    """Whether the next build must be a full one whatever was asked: the schema was never
    built, or was built from other project files (an upgrade, an edited seed or model)."""
    return last_build_fingerprint(wh) != project_fingerprint(project)


def last_build_fingerprint(wh: Warehouse) -> str | None:
    """The project fingerprint of the schema's last full build; None before the first."""
    row = wh.fetchone("select max(fingerprint) from analytics_builds")
    return str(row[0]) if row and row[0] is not None else None


# The bars of raw_bars and of fct_bar_features, the last of the bar models (one row per bar,
# with the raw loaded_at): every new or corrected bar is stamped with the time it was loaded,
# so anything loaded since the models were built moves the newest loaded_at, and a deletion
# the count. Two aggregates a side (an index on PostgreSQL, column statistics in DuckDB), where
# the models' own per-(symbol, loaded_at) digest reads every bar.
_BAR_COUNTS = """
select
    (select count(*) from raw_bars),
    (select max(loaded_at) from raw_bars),
    (select count(*) from fct_bar_features),
    (select max(loaded_at) from fct_bar_features)
"""


def bars_changed_since_last_build(wh: Warehouse) -> bool:
    """Whether a bar was loaded, corrected or deleted in raw_bars since fct_bar_features was
    built (which then recomputes what changed, macros/incremental_bars.sql). True when it was
    never built. Every other bar model is upstream of fct_bar_features: when it is current, so
    are they."""
    if not wh.table_exists("fct_bar_features"):
        return True
    columns = wh.fetchall(
        "select column_name from information_schema.columns"
        " where table_schema = %(schema)s and table_name = 'fct_bar_features'",
        {"schema": wh.schema},
    )
    if ("loaded_at",) not in columns:
        return True
    row = wh.fetchone(_BAR_COUNTS)
    return row is None or (row[0], row[1]) != (row[2], row[3])


def latest_performance(wh: Warehouse, component: str | None = None) -> list[dict[str, Any]]:
    """mart_performance rows, ordered by component and window, as plain dicts."""
    cols = ", ".join(PERFORMANCE_COLUMNS)
    sql = f"select {cols} from mart_performance"
    params: dict[str, Any] = {}
    if component:
        sql += " where component_id = %(component)s"
        params["component"] = component
    rows = wh.fetchall(sql + " order by component_id, window_days", params)
    return [dict(zip(PERFORMANCE_COLUMNS, row, strict=True)) for row in rows]


def analyze(
    settings: Settings,
    as_of: date | None = None,
    component: str | None = None,
    *,
    full_refresh: bool = False,
) -> AnalysisResult:
    """Build the marts (incrementally, or from scratch with every test with `full_refresh`),
    then record this run's IDENTIFY events (for every component) and return the performance,
    open alerts and recommendations (of `component` only, when given)."""
    nodes = build_analytics(settings, as_of, full_refresh=full_refresh)
    with connect(settings) as wh:
        performance = latest_performance(wh, component)
        trail = AuditTrail(wh, secrets=settings.secrets())
        found = identify(wh, trail, models_built=models_built(nodes))
        stale = stale_components(wh, as_of or datetime.now(UTC).date(), component)
    return AnalysisResult(
        as_of=as_of,
        nodes=nodes,
        performance=performance,
        run_id=trail.run_id,
        alerts=for_component(found.alerts, component),
        recommendations=for_component(found.recommendations, component),
        events=found.events,
        notes=[*found.notes, *stale],
    )


def stale_components(wh: Warehouse, as_of: date, component: str | None = None) -> list[str]:
    """A sentence per component whose last trade is older than the longest window: its metrics
    are empty because of the as-of date, not because nothing happened."""
    sql = "select component_id, max(exit_ts) from raw_trades"
    params: dict[str, Any] = {}
    if component:
        sql += " where component_id = %(c)s"
        params["c"] = component
    rows = wh.fetchall(sql + " group by component_id order by component_id", params)
    horizon = as_of - timedelta(days=LONGEST_WINDOW_DAYS)
    notes = []
    for component_id, last in rows:
        if last is not None and last.date() < horizon:
            notes.append(
                f"{component_id}'s last trade closed on {last:%Y-%m-%d}, before the "
                f"{LONGEST_WINDOW_DAYS}-day window ending {as_of:%Y-%m-%d}: analyze up to it with "
                f"--as-of {last:%Y-%m-%d}."
            )
    return notes


def models_built(nodes: list[NodeResult]) -> int:
    return sum(1 for n in nodes if n.resource_type == "model" and n.status == "success")
