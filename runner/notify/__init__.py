"""Notifications: significant events and cycle summaries as Discord messages, through an outbox.

The outbox row is written in the transaction of what it announces (`enqueue_*`); `deliver` sends
the backlog afterwards, in order, once each. The cycle calls, after its own transactions:

    with wh.transaction():
        enqueue_summary(wh, CycleSummary(...), charts=png_paths, secrets=settings.secrets())
    report = deliver(wh, settings)   # report.note says "notifications are off" when unset

httpx and tenacity load only when something is delivered.
"""

from __future__ import annotations

from runner.notify.discord import NOTIFICATIONS_OFF, DeliveryReport, deliver, redacted_http_logs
from runner.notify.messages import (
    SIGNIFICANT,
    Announcement,
    CycleSummary,
    SummaryStep,
    announcement,
    event_message,
    fit,
    summary_message,
)
from runner.notify.outbox import (
    OutboxMessage,
    enqueue,
    enqueue_events,
    enqueue_summary,
    enqueue_test,
    outbox_counts,
    pending,
    read_outbox,
)

__all__ = [
    "NOTIFICATIONS_OFF",
    "SIGNIFICANT",
    "Announcement",
    "CycleSummary",
    "DeliveryReport",
    "OutboxMessage",
    "SummaryStep",
    "announcement",
    "deliver",
    "enqueue",
    "enqueue_events",
    "enqueue_summary",
    "enqueue_test",
    "event_message",
    "fit",
    "outbox_counts",
    "pending",
    "read_outbox",
    "redacted_http_logs",
    "summary_message",
]
