"""Who gets which version: a unit (a signal id) is assigned to control or treatment by hashing.

The assignment depends only on the test id, the unit key and the treatment's share, so the
engine, the simulator and a live trading system that calls `assign` (or `runner route`) agree on
every unit without talking to each other. The bucket of a unit is fixed for a test, so raising
the share from 10% to 50% keeps every unit that was already in treatment there (a ramp never
reshuffles), and a new test re-randomises (its id salts the hash).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from runner.deploy import state
from runner.errors import ConfigError
from runner.warehouse import Warehouse

Arm = Literal["control", "treatment"]
BUCKETS = 10_000  # shares are honoured to 0.01%


def bucket(test_id: str, unit_key: str) -> int:
    """The unit's bucket in [0, BUCKETS): the first 8 bytes of SHA-256(test id, unit key)."""
    digest = hashlib.sha256(f"{test_id}\x1f{unit_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(test_id: str, unit_key: str, treatment_share: float) -> Arm:
    """Treatment when the unit's bucket is below share × BUCKETS, else control."""
    if not 0.0 <= treatment_share <= 1.0:
        raise ValueError(f"treatment_share must be in [0, 1], got {treatment_share}")
    threshold = round(treatment_share * BUCKETS)
    return "treatment" if bucket(test_id, unit_key) < threshold else "control"


@dataclass(frozen=True)
class Route:
    component_id: str
    unit_key: str
    version: int
    arm: Literal["production", "control", "treatment"]
    test_id: str | None
    treatment_share: float


def record_assignment(
    wh: Warehouse, test_id: str, unit_key: str, arm: Arm, stage: int, assigned_at: datetime
) -> None:
    """Log a unit's assignment for the sample-ratio check (a unit asked twice counts once)."""
    wh.execute(
        "insert into ab_assignments (test_id, unit_key, arm, stage, assigned_at, recorded_at)"
        " values (%(t)s, %(u)s, %(a)s, %(s)s, %(at)s, %(now)s)"
        " on conflict (test_id, unit_key) do nothing",
        {
            "t": test_id,
            "u": unit_key,
            "a": arm,
            "s": stage,
            "at": assigned_at.replace(tzinfo=None),
            "now": datetime.now(UTC),
        },
    )


def route(wh: Warehouse, component_id: str, unit_key: str, *, record: bool = False) -> Route:
    """The version that trades `unit_key` now, from the active allocation; with `record`, the
    assignment is logged for the sample-ratio check (a live system routing its signals should)."""
    if not unit_key:
        raise ConfigError("A unit key (a signal id) is required to route.")
    rows = state.allocation(wh, component_id)
    if not rows:
        raise ConfigError(
            f"Component {component_id!r} has no production deployment yet: run `runner deploy` "
            "(or `runner init` and declare it in seeds/components.csv)."
        )
    treatment = next((r for r in rows if r.arm == "treatment"), None)
    control = next(r for r in rows if r.arm in ("production", "control"))
    if treatment is None or treatment.test_id is None:
        return Route(component_id, unit_key, control.version, "production", None, 0.0)
    arm = assign(treatment.test_id, unit_key, treatment.traffic_share)
    chosen = treatment if arm == "treatment" else control
    if record:
        stage = round(treatment.traffic_share * 100)
        with wh.transaction():
            record_assignment(wh, treatment.test_id, unit_key, arm, stage, datetime.now(UTC))
    return Route(
        component_id, unit_key, chosen.version, arm, treatment.test_id, treatment.traffic_share
    )
