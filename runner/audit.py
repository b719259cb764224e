"""The audit trail: every decision of the engine appended to improvement_events, secrets redacted.

It owns the event record, its JSON metrics and the run id; it deliberately has no update or delete
API. What an event means (when to raise an alert, close a recommendation) is the recording step's.
A significant event also queues its Discord message in notification_outbox, in the same transaction
(runner/notify).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from runner.engine_tables import ColumnKind, bulk_insert, to_json_text, utc
from runner.notify.outbox import enqueue_events
from runner.redact import redact
from runner.warehouse import Warehouse

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")

EVENT_COLUMNS: dict[str, ColumnKind] = {
    "event_id": "text",
    "event_timestamp": "timestamptz",
    "event_type": "text",
    "component_id": "text",
    "trigger_reason": "text",
    "improvement_metrics": "text",
    "run_id": "text",
    "recommendation_id": "text",
    "alert_id": "text",
    "task_id": "text",
    "deployment_id": "text",
    "test_id": "text",
    "as_of_date": "date",
}


@dataclass(frozen=True)
class Event:
    """A decision to record. `trigger_reason` says why in words; `metrics` are the numbers behind
    it (stored as JSON text); the ids link the event to what caused it."""

    event_type: str
    trigger_reason: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    component_id: str | None = None
    recommendation_id: str | None = None
    alert_id: str | None = None
    task_id: str | None = None
    deployment_id: str | None = None
    test_id: str | None = None
    as_of_date: date | None = None


@dataclass(frozen=True)
class StoredEvent(Event):
    """An event as stored: its id, time (UTC) and the engine run that wrote it."""

    event_id: str = ""
    event_timestamp: datetime = datetime.min.replace(tzinfo=UTC)
    run_id: str | None = None


def new_run_id(now: datetime | None = None) -> str:
    """An id for one engine run (one `runner analyze`, one scheduler cycle): time-sortable."""
    return f"run_{utc(now or datetime.now(UTC)):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact(str(k), secrets): _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, secrets) for v in value]
    return value


class AuditTrail:
    """Appends the events of one engine run (`run_id`) to improvement_events.

    Secrets (the configured ones, plus URL passwords, webhook tokens and `password=` pairs) are
    masked in trigger_reason and in every string inside the metrics before anything is stored.
    """

    def __init__(
        self, wh: Warehouse, run_id: str | None = None, secrets: tuple[str, ...] = ()
    ) -> None:
        self.wh = wh
        self.run_id = run_id or new_run_id()
        self.secrets = secrets

    def record(self, events: Sequence[Event], at: datetime | None = None) -> list[StoredEvent]:
        """Append `events` in one insert, stamped `at` (default now, UTC); return them as stored.

        Event ids sort in insertion order within a run (time, then sequence), so reading by
        (event_timestamp, event_id) replays a batch in the order it was given. Significant events
        (runner.notify.messages.SIGNIFICANT) also queue their Discord message in
        notification_outbox; call it inside a transaction so that both are kept or neither.
        """
        stamp = utc(at or datetime.now(UTC))
        stored: list[StoredEvent] = []
        for seq, event in enumerate(events):
            if not _EVENT_TYPE.match(event.event_type):
                raise ValueError(f"event_type {event.event_type!r} must be snake_case")
            values = {f.name: getattr(event, f.name) for f in fields(Event)}
            values["trigger_reason"] = redact(event.trigger_reason, self.secrets)
            # Stored and returned alike: redacted, then as the JSON text will read back.
            values["metrics"] = json.loads(
                to_json_text(_redacted(dict(event.metrics), self.secrets))
            )
            stored.append(
                StoredEvent(
                    **values,
                    event_id=f"ev_{stamp:%Y%m%dT%H%M%S%f}_{seq:05d}_{uuid.uuid4().hex[:8]}",
                    event_timestamp=stamp,
                    run_id=self.run_id,
                )
            )
        rows = [
            {
                **{name: getattr(e, name) for name in EVENT_COLUMNS if hasattr(e, name)},
                "improvement_metrics": to_json_text(e.metrics),
            }
            for e in stored
        ]
        bulk_insert(self.wh, "improvement_events", EVENT_COLUMNS, rows)
        # In the caller's transaction, like the events: a rollback takes both away.
        enqueue_events(self.wh, stored, secrets=self.secrets)
        return stored


def read_events(
    wh: Warehouse,
    *,
    event_types: Sequence[str] = (),
    since: datetime | None = None,
    component: str | None = None,
    run_id: str | None = None,
) -> list[StoredEvent]:
    """Stored events, oldest first, optionally filtered; metrics parsed back from JSON."""
    names = list(EVENT_COLUMNS)
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for i, event_type in enumerate(event_types):
        params[f"t{i}"] = event_type
    if event_types:
        conditions.append(
            f"event_type in ({', '.join(f'%(t{i})s' for i in range(len(event_types)))})"
        )
    if since is not None:
        conditions.append("event_timestamp > %(since)s")
        params["since"] = utc(since)
    if component is not None:
        conditions.append("component_id = %(component)s")
        params["component"] = component
    if run_id is not None:
        conditions.append("run_id = %(run_id)s")
        params["run_id"] = run_id
    where = f" where {' and '.join(conditions)}" if conditions else ""
    rows = wh.fetchall(
        f"select {', '.join(names)} from improvement_events{where}"
        " order by event_timestamp, event_id",
        params,
    )
    events = []
    for row in rows:
        value = dict(zip(names, row, strict=True))
        value["event_timestamp"] = utc(value["event_timestamp"])
        value["metrics"] = json.loads(value.pop("improvement_metrics"))
        events.append(StoredEvent(**value))
    return events


def recent_events(
    wh: Warehouse, days: int = 7, component: str | None = None, now: datetime | None = None
) -> list[StoredEvent]:
    """Events of the last `days` days, newest first (the monitoring guide's events view)."""
    since = utc(now or datetime.now(UTC)) - timedelta(days=days)
    return list(reversed(read_events(wh, since=since, component=component)))
