"""The rollout's persisted state: deployments, their smoke-test checks, A/B tests, the allocation.

Every move of a rollout is one transaction over these tables (runner/deploy/rollout.py decides
the moves); this module only reads and writes rows. Wall-clock times are aware UTC; data times
(bars, trades) are naive UTC like the raw tables.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from runner.engine_tables import AB_COLUMNS, ABTest, insert_ab_tests, to_json_text, utc
from runner.errors import ConfigError
from runner.warehouse import Warehouse

Environment = Literal["staging", "production"]
DeploymentStatus = Literal[
    "smoke_testing",
    "failed",
    "ab_testing",
    "promoted",
    "rolled_back",
    "inconclusive",
    "aborted",
    "active",
    "superseded",
]
Policy = Literal["finish", "move_stops", "flatten"]
POLICIES: tuple[Policy, ...] = ("finish", "move_stops", "flatten")
STAGES = (10, 50, 100)  # percent of units on the treatment


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    component_id: str
    version: int
    environment: Environment
    status: DeploymentStatus
    traffic_share: float
    test_id: str | None
    previous_version: int | None
    open_position_policy: Policy
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    reason: str


_DEPLOYMENT_COLUMNS = tuple(f.name for f in fields(Deployment))


@dataclass(frozen=True)
class AllocationRow:
    component_id: str
    version: int
    arm: Literal["production", "control", "treatment"]
    traffic_share: float
    test_id: str | None
    # What the trading system runs for this arm: the version's strategy and its parameters.
    strategy: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One smoke test's outcome, in words (`detail`) and numbers (`metrics`)."""

    name: str
    passed: bool
    detail: str
    metrics: Mapping[str, Any]


def new_id(prefix: str, now: datetime) -> str:
    return f"{prefix}_{now:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"


def lock(wh: Warehouse, component_id: str) -> None:
    """Serialise rollout moves of one component until the transaction ends (PostgreSQL; DuckDB
    allows one writing process per file)."""
    if wh.dialect == "postgres":
        wh.execute(
            "select pg_advisory_xact_lock(hashtext(%(k)s))",
            {"k": f"tb:deploy:{wh.schema}:{component_id}"},
        )


# -- deployments -------------------------------------------------------------------------------
def _deployment(row: Sequence[Any]) -> Deployment:
    values = dict(zip(_DEPLOYMENT_COLUMNS, row, strict=True))
    for name in ("created_at", "updated_at", "ended_at"):
        if values[name] is not None:
            values[name] = utc(values[name])
    values["version"] = int(values["version"])
    values["traffic_share"] = float(values["traffic_share"])
    return Deployment(**values)


def deployments(
    wh: Warehouse,
    component_id: str | None = None,
    statuses: Sequence[DeploymentStatus] = (),
) -> list[Deployment]:
    sql = f"select {', '.join(_DEPLOYMENT_COLUMNS)} from deployments where true"
    params: dict[str, Any] = {}
    if component_id is not None:
        sql += " and component_id = %(c)s"
        params["c"] = component_id
    if statuses:
        names = []
        for i, status in enumerate(statuses):
            params[f"s{i}"] = status
            names.append(f"%(s{i})s")
        sql += f" and status in ({', '.join(names)})"
    rows = wh.fetchall(sql + " order by created_at, deployment_id", params)
    return [_deployment(r) for r in rows]


def get_deployment(wh: Warehouse, deployment_id: str) -> Deployment:
    row = wh.fetchone(
        f"select {', '.join(_DEPLOYMENT_COLUMNS)} from deployments where deployment_id = %(d)s",
        {"d": deployment_id},
    )
    if row is None:
        raise ConfigError(f"No deployment {deployment_id!r}: `runner status` lists them.")
    return _deployment(row)


def insert_deployment(wh: Warehouse, deployment: Deployment) -> None:
    wh.execute(
        f"insert into deployments ({', '.join(_DEPLOYMENT_COLUMNS)}) values "
        f"({', '.join(f'%({c})s' for c in _DEPLOYMENT_COLUMNS)})",
        {
            **{c: getattr(deployment, c) for c in _DEPLOYMENT_COLUMNS},
            "created_at": utc(deployment.created_at),
            "updated_at": utc(deployment.updated_at),
        },
    )


_DEPLOYMENT_UPDATABLE = frozenset(
    {"status", "traffic_share", "test_id", "ended_at", "reason", "environment"}
)


def update_deployment(wh: Warehouse, deployment_id: str, now: datetime, **changes: Any) -> None:
    unknown = set(changes) - _DEPLOYMENT_UPDATABLE
    if unknown:
        raise ValueError(f"deployments has no updatable column(s) {sorted(unknown)}")
    sets = ", ".join(f"{c} = %({c})s" for c in changes)
    wh.execute(
        f"update deployments set {sets}, updated_at = %(updated_at)s"
        " where deployment_id = %(deployment_id)s",
        {**changes, "updated_at": utc(now), "deployment_id": deployment_id},
    )


def production(wh: Warehouse, component_id: str) -> Deployment | None:
    rows = deployments(wh, component_id, ("active",))
    rows = [d for d in rows if d.environment == "production"]
    return rows[-1] if rows else None


def ensure_production(
    wh: Warehouse, component_id: str, version: int, policy: Policy, now: datetime
) -> tuple[Deployment, bool]:
    """The component's active production deployment, created for `version` on first use."""
    current = production(wh, component_id)
    if current is not None:
        return current, False
    deployment = Deployment(
        deployment_id=new_id("dep", now),
        component_id=component_id,
        version=version,
        environment="production",
        status="active",
        traffic_share=1.0,
        test_id=None,
        previous_version=None,
        open_position_policy=policy,
        created_at=now,
        updated_at=now,
        ended_at=None,
        reason=f"version {version} is the production version the engine found",
    )
    insert_deployment(wh, deployment)
    return deployment, True


def allocation(wh: Warehouse, component_id: str | None = None) -> list[AllocationRow]:
    sql = (
        "select a.component_id, a.version, a.arm, a.traffic_share, a.test_id,"
        " v.strategy, v.params"
        " from active_allocation as a"
        " left join strategy_versions as v"
        " on v.component_id = a.component_id and v.version = a.version"
    )
    params: dict[str, Any] = {}
    if component_id is not None:
        sql += " where a.component_id = %(c)s"
        params["c"] = component_id
    rows = wh.fetchall(sql + " order by a.component_id, a.arm", params)
    return [
        AllocationRow(  # arm from the view's CASE
            str(r[0]), int(r[1]), r[2], float(r[3]), r[4], r[5] or "", json.loads(r[6] or "{}")
        )
        for r in rows
    ]


# -- smoke-test checks ------------------------------------------------------------------------
def write_checks(wh: Warehouse, deployment_id: str, checks: Sequence[Check], now: datetime) -> None:
    """Record the checks of one smoke run (a re-run after an interruption replaces nothing: the
    interrupted run wrote nothing, its transaction never committed)."""
    for check in checks:
        wh.execute(
            "insert into deployment_checks"
            " (deployment_id, check_name, passed, detail, metrics, checked_at)"
            " values (%(d)s, %(n)s, %(p)s, %(t)s, %(m)s, %(at)s)",
            {
                "d": deployment_id,
                "n": check.name,
                "p": check.passed,
                "t": check.detail,
                "m": to_json_text(check.metrics),
                "at": utc(now),
            },
        )


def read_checks(wh: Warehouse, deployment_id: str) -> list[Check]:
    rows = wh.fetchall(
        "select check_name, passed, detail, metrics from deployment_checks"
        " where deployment_id = %(d)s order by checked_at, check_name",
        {"d": deployment_id},
    )
    return [Check(str(r[0]), bool(r[1]), str(r[2]), json.loads(r[3])) for r in rows]


# -- A/B tests --------------------------------------------------------------------------------
_TEST_COLUMNS = tuple(AB_COLUMNS)


def _test(row: Sequence[Any]) -> ABTest:
    values = dict(zip(_TEST_COLUMNS, row, strict=True))
    for name in ("started_at", "ended_at", "stage_started_at"):
        if values[name] is not None:
            values[name] = utc(values[name])
    values.pop("updated_at")
    for name in ("stage_extended", "paused"):
        values[name] = bool(values[name])
    values["guardrails"] = values["guardrails"] or "{}"
    values["look_count"] = int(values["look_count"] or 0)
    for name in ("n_control", "n_treatment", "planned_n", "current_stage"):
        values[name] = int(values[name])
    return ABTest(**values)


def tests(
    wh: Warehouse, component_id: str | None = None, status: str | None = None
) -> list[ABTest]:
    sql = f"select {', '.join(_TEST_COLUMNS)} from ab_tests where true"
    params: dict[str, Any] = {}
    if component_id is not None:
        sql += " and component_id = %(c)s"
        params["c"] = component_id
    if status is not None:
        sql += " and status = %(s)s"
        params["s"] = status
    return [_test(r) for r in wh.fetchall(sql + " order by started_at, test_id", params)]


def get_test(wh: Warehouse, test_id: str) -> ABTest:
    row = wh.fetchone(
        f"select {', '.join(_TEST_COLUMNS)} from ab_tests where test_id = %(t)s", {"t": test_id}
    )
    if row is None:
        raise ConfigError(f"No A/B test {test_id!r}.")
    return _test(row)


def running_test(wh: Warehouse, component_id: str) -> ABTest | None:
    running = tests(wh, component_id, "running")
    return running[-1] if running else None


def insert_test(wh: Warehouse, test: ABTest, now: datetime) -> None:
    insert_ab_tests(wh, [test], now)


_TEST_UPDATABLE = frozenset(_TEST_COLUMNS) - {
    "test_id",
    "test_name",
    "component_id",
    "control_version",
    "treatment_version",
    "alpha",
    "planned_n",
    "margin",
    "primary_metric",
    "randomisation_unit",
    "started_at",
    "updated_at",
    "deployment_id",
    "data_start",
    "min_n_per_arm",
    "guardrails",
}  # the design is fixed when the test starts


def update_test(wh: Warehouse, test_id: str, now: datetime, **changes: Any) -> None:
    unknown = set(changes) - _TEST_UPDATABLE
    if unknown:
        raise ValueError(f"ab_tests: {sorted(unknown)} cannot change after the test starts")
    values = {
        k: (utc(v) if isinstance(v, datetime) and AB_COLUMNS[k] == "timestamptz" else v)
        for k, v in changes.items()
    }
    for k, v in list(values.items()):
        if isinstance(v, datetime) and AB_COLUMNS[k] == "timestamp":
            values[k] = utc(v).replace(tzinfo=None)
    sets = ", ".join(f"{c} = %({c})s" for c in values)
    wh.execute(
        f"update ab_tests set {sets}, updated_at = %(updated_at)s where test_id = %(test_id)s",
        {**values, "updated_at": utc(now), "test_id": test_id},
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
