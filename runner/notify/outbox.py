"""The notification outbox (table notification_outbox): messages written in the transaction of
the event they announce, read back oldest first for delivery, and each row's delivery state.

It owns the rows and their order; it sends nothing (discord.py does) and decides nothing about
what is significant (messages.py does). Every text is redacted before it is stored.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runner.engine_tables import ColumnKind, bulk_insert, utc
from runner.notify.messages import (
    EMBEDS_MAX,
    CycleSummary,
    EventLike,
    Message,
    Severity,
    attachment_name,
    event_message,
    fit,
    referenced_attachments,
    summary_message,
    test_message,
)
from runner.redact import redact

if TYPE_CHECKING:
    from runner.warehouse import Warehouse

Status = Literal["pending", "sent", "failed", "skipped"]
STATUSES: tuple[Status, ...] = ("pending", "sent", "failed", "skipped")

OUTBOX_COLUMNS: dict[str, ColumnKind] = {
    "message_id": "text",
    "event_id": "text",
    "kind": "text",
    "severity": "text",
    "payload": "text",
    "attachments": "text",
    "status": "text",
    "attempts": "integer",
    "last_error": "text",
    "created_at": "timestamptz",
    "sent_at": "timestamptz",
    "discord_message_id": "text",
}
_READ = ", ".join(OUTBOX_COLUMNS)
# Breaks ties between rows enqueued in the same microsecond by this process, in call order.
_SEQUENCE = itertools.count()


@dataclass(frozen=True)
class OutboxMessage:
    """One row: a Discord message body (`payload`, already fitted and redacted) and the files
    uploaded with it, with its delivery state."""

    message_id: str
    kind: str
    severity: str
    payload: Message
    attachments: list[str]
    status: Status
    attempts: int
    created_at: datetime
    event_id: str | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    discord_message_id: str | None = None


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, secrets) for v in value]
    return value


def _rows(
    kind: str,
    severity: Severity,
    message: Mapping[str, Any],
    *,
    attachments: Sequence[str] = (),
    event_id: str | None = None,
    secrets: tuple[str, ...] = (),
    now: datetime,
) -> list[dict[str, Any]]:
    """The outbox rows of one notification: redacted, then fitted (redaction can lengthen a
    text), one row per message part. A file goes with the part whose embed shows it, else the
    first."""
    parts = fit(_redacted(dict(message), secrets))
    names = {attachment_name(path): path for path in attachments}
    files: list[list[str]] = [[] for _ in parts]
    for name, path in names.items():
        owner = next((i for i, p in enumerate(parts) if name in referenced_attachments(p)), 0)
        files[owner].append(path)
    rows = []
    for index, part in enumerate(parts):
        seq = next(_SEQUENCE)
        rows.append(
            {
                "message_id": f"msg_{now:%Y%m%dT%H%M%S%f}_{seq:09d}_{index:02d}"
                f"_{uuid.uuid4().hex[:8]}",
                "event_id": event_id,
                "kind": kind,
                "severity": severity,
                "payload": json.dumps(part, ensure_ascii=False, separators=(",", ":")),
                "attachments": json.dumps(files[index]),
                "status": "pending",
                "attempts": 0,
                "created_at": now,
            }
        )
    return rows


def enqueue(
    wh: Warehouse,
    kind: str,
    severity: Severity,
    message: Mapping[str, Any],
    *,
    attachments: Sequence[str] = (),
    event_id: str | None = None,
    secrets: tuple[str, ...] = (),
    now: datetime | None = None,
) -> list[str]:
    """Add one notification (one or more messages, see `fit`) to the outbox; return their ids.

    Call it inside the transaction that records what it announces: both are kept or neither.
    """
    rows = _rows(
        kind,
        severity,
        message,
        attachments=attachments,
        event_id=event_id,
        secrets=secrets,
        now=utc(now or datetime.now(UTC)),
    )
    bulk_insert(wh, "notification_outbox", OUTBOX_COLUMNS, rows)
    return [row["message_id"] for row in rows]


def enqueue_events(
    wh: Warehouse, events: Iterable[EventLike], *, secrets: tuple[str, ...] = ()
) -> list[str]:
    """One notification per significant event (see messages.SIGNIFICANT), in the events' order,
    in one insert. The audit trail calls it in the transaction that records the events."""
    now = utc(datetime.now(UTC))
    rows: list[dict[str, Any]] = []
    for event in events:
        built = event_message(event)
        if built is not None:
            severity, message = built
            rows += _rows(
                event.event_type,
                severity,
                message,
                event_id=event.event_id,
                secrets=secrets,
                now=now,
            )
    bulk_insert(wh, "notification_outbox", OUTBOX_COLUMNS, rows)
    return [row["message_id"] for row in rows]


def enqueue_summary(
    wh: Warehouse,
    summary: CycleSummary,
    *,
    charts: Sequence[str | PathLike[str]] = (),
    secrets: tuple[str, ...] = (),
) -> list[str]:
    """The cycle's summary message, with its charts (PNG file paths, at most nine) attached.

    The files are read when the message is delivered: keep them until then (a file gone by
    then is left out and the message sent without it).
    """
    paths = [str(Path(path).resolve()) for path in charts][: EMBEDS_MAX - 1]
    severity, message = summary_message(summary, paths)
    return enqueue(wh, "cycle_summary", severity, message, attachments=paths, secrets=secrets)


def enqueue_test(wh: Warehouse, *, now: datetime | None = None) -> list[str]:
    """The message of `runner notify test`."""
    stamp = utc(now or datetime.now(UTC))
    severity, message = test_message(stamp)
    return enqueue(wh, "test", severity, message, now=stamp)


# -- reading and updating -----------------------------------------------------------------------
def _message(row: tuple[Any, ...]) -> OutboxMessage:
    value = dict(zip(OUTBOX_COLUMNS, row, strict=True))
    return OutboxMessage(
        message_id=value["message_id"],
        kind=value["kind"],
        severity=value["severity"],
        payload=json.loads(value["payload"]),
        attachments=list(json.loads(value["attachments"] or "[]")),
        status=value["status"],
        attempts=int(value["attempts"] or 0),
        created_at=utc(value["created_at"]),
        event_id=value["event_id"],
        last_error=value["last_error"],
        sent_at=None if value["sent_at"] is None else utc(value["sent_at"]),
        discord_message_id=value["discord_message_id"],
    )


def read_outbox(
    wh: Warehouse, *, status: Status | None = None, limit: int | None = None
) -> list[OutboxMessage]:
    """Rows oldest first (the order they were enqueued), optionally of one status."""
    where = " where status = %(status)s" if status else ""
    tail = f" limit {int(limit)}" if limit is not None else ""
    rows = wh.fetchall(
        f"select {_READ} from notification_outbox{where} order by created_at, message_id{tail}",
        {"status": status} if status else None,
    )
    return [_message(row) for row in rows]


def pending(wh: Warehouse, limit: int | None = None) -> list[OutboxMessage]:
    return read_outbox(wh, status="pending", limit=limit)


def mark_sent(
    wh: Warehouse,
    message_id: str,
    *,
    attempts: int,
    discord_message_id: str | None,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    wh.execute(
        "update notification_outbox set status = 'sent', sent_at = %(at)s, attempts = %(n)s,"
        " discord_message_id = %(dm)s, last_error = %(note)s where message_id = %(id)s",
        {
            "at": utc(now or datetime.now(UTC)),
            "n": attempts,
            "dm": discord_message_id,
            "note": note,
            "id": message_id,
        },
    )


def mark_failed(wh: Warehouse, message_id: str, *, attempts: int, error: str) -> None:
    """A message Discord will never accept (a 4xx other than 401/403/404/429): given up."""
    wh.execute(
        "update notification_outbox set status = 'failed', attempts = %(n)s, last_error = %(e)s"
        " where message_id = %(id)s",
        {"n": attempts, "e": error, "id": message_id},
    )


def mark_attempted(wh: Warehouse, message_id: str, *, attempts: int, error: str) -> None:
    """Not delivered in this run (Discord down, budget spent): stays pending for the next."""
    wh.execute(
        "update notification_outbox set attempts = %(n)s, last_error = %(e)s"
        " where message_id = %(id)s and status = 'pending'",
        {"n": attempts, "e": error, "id": message_id},
    )


def mark_skipped(wh: Warehouse, message_ids: Sequence[str], reason: str) -> None:
    for message_id in message_ids:
        wh.execute(
            "update notification_outbox set status = 'skipped', last_error = %(r)s"
            " where message_id = %(id)s and status = 'pending'",
            {"r": reason, "id": message_id},
        )


def skip_pending(wh: Warehouse, reason: str) -> int:
    """Mark every pending row skipped (notifications are off); return how many."""
    rows = wh.fetchall(
        "update notification_outbox set status = 'skipped', last_error = %(r)s"
        " where status = 'pending' returning message_id",
        {"r": reason},
    )
    return len(rows)


def outbox_counts(wh: Warehouse) -> dict[str, int]:
    """Rows per status (every status present, zero when none)."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for status, count in wh.fetchall(
        "select status, count(*) from notification_outbox group by status"
    ):
        counts[str(status)] = int(count)
    return counts
