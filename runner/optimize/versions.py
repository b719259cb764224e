"""strategy_versions: the parameters each component runs, as numbered, immutable versions.

Version 1 of a component is seeded from its row in the `components` seed (strategy defaults
overlaid with the seed's `params`); an optimization run that passes its gates adds a candidate
whose parent is the production version. Parameters of a version never change; only its status
moves (DEPLOY promotes, retires, rolls back), and every move is an audit event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from runner.audit import Event
from runner.engine_tables import to_json_text, utc
from runner.errors import ConfigError
from runner.strategies import load_strategy, resolve_params
from runner.warehouse import Warehouse

VersionStatus = Literal[
    "production", "candidate", "staging", "retired", "rolled_back", "superseded"
]

_COLUMNS = (
    "component_id",
    "version",
    "strategy",
    "params",
    "parent_version",
    "optimization_run_id",
    "status",
    "created_at",
    "status_changed_at",
    "note",
)


@dataclass(frozen=True)
class Component:
    """A row of the components seed, as OPTIMIZE needs it."""

    component_id: str
    strategy: str
    symbol: str
    params: Mapping[str, Any]
    periods_per_year: int
    initial_capital: float = 100_000.0
    # finish | move_stops | flatten: what a version change does to an open position (DEPLOY)
    open_position_policy: str = "finish"


@dataclass(frozen=True)
class StrategyVersion:
    component_id: str
    version: int
    strategy: str
    params: Mapping[str, Any]
    parent_version: int | None
    optimization_run_id: str | None
    status: VersionStatus
    created_at: datetime
    status_changed_at: datetime
    note: str = ""


def _seed_params(component_id: str, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Component {component_id!r}: the params column of seeds/components.csv is not JSON ({exc.msg})."
        ) from exc
    if not isinstance(value, dict):
        raise ConfigError(
            f"Component {component_id!r}: params in seeds/components.csv must be a JSON object."
        )
    return value


def read_components(wh: Warehouse, component: str | None = None) -> list[Component]:
    """The components seed (built by `dbt seed`/`runner analyze`), optionally one component."""
    if not wh.table_exists("components"):
        raise ConfigError(
            "The components seed is not in the warehouse yet; run `runner analyze` (dbt build) first."
        )
    # open_position_policy is optional: a components seed without the column means finish.
    columns = set(wh.fetch_df("select * from components where 1 = 0").columns)
    policy = "open_position_policy" if "open_position_policy" in columns else "null"
    sql = (
        "select component_id, strategy, symbol, params, coalesce(periods_per_year, 252),"
        f" coalesce(initial_capital, 100000), {policy} from components"
    )
    params: dict[str, Any] = {}
    if component is not None:
        sql += " where component_id = %(component)s"
        params["component"] = component
    rows = wh.fetchall(sql + " order by component_id", params)
    if component is not None and not rows:
        raise ConfigError(f"Unknown component {component!r}: it is not in seeds/components.csv.")
    found = []
    for component_id, strategy, symbol, params_text, periods, capital, position_policy in rows:
        if position_policy not in (None, "", "finish", "move_stops", "flatten"):
            raise ConfigError(
                f"Component {component_id!r}: open_position_policy {position_policy!r} is not "
                "finish, move_stops or flatten."
            )
        if not strategy or not symbol:
            raise ConfigError(
                f"Component {component_id!r} needs a strategy and a symbol in seeds/components.csv."
            )
        found.append(
            Component(
                component_id=component_id,
                strategy=strategy,
                symbol=symbol,
                params=_seed_params(component_id, params_text),
                periods_per_year=int(periods),
                initial_capital=float(capital),
                open_position_policy=position_policy or "finish",
            )
        )
    return found


def _version(row: Sequence[Any]) -> StrategyVersion:
    value = dict(zip(_COLUMNS, row, strict=True))
    value["params"] = json.loads(value["params"])
    value["created_at"] = utc(value["created_at"])
    value["status_changed_at"] = utc(value["status_changed_at"])
    return StrategyVersion(**value)


def list_versions(wh: Warehouse, component_id: str) -> list[StrategyVersion]:
    rows = wh.fetchall(
        f"select {', '.join(_COLUMNS)} from strategy_versions"
        " where component_id = %(c)s order by version",
        {"c": component_id},
    )
    return [_version(row) for row in rows]


def get_version(wh: Warehouse, component_id: str, version: int) -> StrategyVersion:
    row = wh.fetchone(
        f"select {', '.join(_COLUMNS)} from strategy_versions"
        " where component_id = %(c)s and version = %(v)s",
        {"c": component_id, "v": version},
    )
    if row is None:
        raise ConfigError(f"Component {component_id!r} has no version {version}.")
    return _version(row)


def production_version(wh: Warehouse, component_id: str) -> StrategyVersion:
    row = wh.fetchone(
        f"select {', '.join(_COLUMNS)} from strategy_versions"
        " where component_id = %(c)s and status = 'production' order by version desc limit 1",
        {"c": component_id},
    )
    if row is None:
        raise ConfigError(
            f"Component {component_id!r} has no production version; run `runner optimize` or "
            "`runner analyze` once to seed version 1 from seeds/components.csv."
        )
    return _version(row)


def _insert(wh: Warehouse, version: StrategyVersion) -> None:
    wh.execute(
        f"insert into strategy_versions ({', '.join(_COLUMNS)}) values "
        f"({', '.join(f'%({c})s' for c in _COLUMNS)})",
        {
            **{c: getattr(version, c) for c in _COLUMNS},
            "params": to_json_text(version.params),
        },
    )


def seed_versions(wh: Warehouse, components: Sequence[Component]) -> list[Event]:
    """Create version 1 (production) for every component that has no version yet.

    A component whose strategy or params are invalid is a ConfigError naming both; nothing is
    half-seeded because each component's version is one insert.
    """
    events: list[Event] = []
    now = datetime.now(UTC)
    for component in components:
        if wh.fetchone(
            "select 1 from strategy_versions where component_id = %(c)s",
            {"c": component.component_id},
        ):
            continue
        strategy = load_strategy(component.strategy)
        params = resolve_params(strategy, component.params)
        _insert(
            wh,
            StrategyVersion(
                component_id=component.component_id,
                version=1,
                strategy=component.strategy,
                params=params,
                parent_version=None,
                optimization_run_id=None,
                status="production",
                created_at=now,
                status_changed_at=now,
                note="seeded from seeds/components.csv",
            ),
        )
        events.append(
            Event(
                event_type="strategy_version_created",
                trigger_reason=(
                    f"Seeded version 1 of {component.component_id} ({component.strategy}) "
                    "from seeds/components.csv."
                ),
                metrics={"version": 1, "status": "production", "params": params},
                component_id=component.component_id,
            )
        )
    return events


def add_candidate(
    wh: Warehouse,
    component_id: str,
    strategy: str,
    params: Mapping[str, Any],
    parent_version: int,
    run_id: str | None,
    note: str,
) -> StrategyVersion:
    """Append a candidate version (the next number) produced by optimization run `run_id`.

    The parameters are stored resolved (every declared one, defaults filled in), so a version
    keeps its meaning even if a strategy's defaults change later."""
    params = resolve_params(load_strategy(strategy), params)
    row = wh.fetchone(
        "select coalesce(max(version), 0) from strategy_versions where component_id = %(c)s",
        {"c": component_id},
    )
    now = datetime.now(UTC)
    version = StrategyVersion(
        component_id=component_id,
        version=int(row[0] if row else 0) + 1,
        strategy=strategy,
        params=dict(params),
        parent_version=parent_version,
        optimization_run_id=run_id,
        status="candidate",
        created_at=now,
        status_changed_at=now,
        note=note,
    )
    _insert(wh, version)
    return version


def set_status(
    wh: Warehouse, component_id: str, version: int, status: VersionStatus, note: str
) -> None:
    """Move a version to `status` (the caller records the event that says why)."""
    wh.execute(
        "update strategy_versions set status = %(s)s, status_changed_at = %(t)s, note = %(n)s"
        " where component_id = %(c)s and version = %(v)s",
        {"s": status, "t": datetime.now(UTC), "n": note, "c": component_id, "v": version},
    )
