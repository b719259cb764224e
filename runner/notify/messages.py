"""Discord message bodies: which events are announced, how they read, and `fit`, which makes any
body obey every limit of Discord's webhook API.

Pure functions over the JSON body (plain dicts); no I/O, no clock. Delivery is discord.py's and
the outbox outbox.py's. Lengths are counted in UTF-16 code units, never fewer than Discord's
"characters" whichever way it counts them, so what fits here fits there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, Literal, Protocol

# -- Discord's limits (Execute Webhook; Message and Embed limits) -----------------------------
CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBEDS_TOTAL_MAX = 6000  # titles, descriptions, field names and values, footers, authors
USERNAME_MAX = 80
COLOUR_MAX = 0xFFFFFF
FILES_MAX = 10

PARTS_MAX = 10  # one notification never becomes more messages than this
FIELDS_SHOWN = 18  # metrics shown per event; the rest stay in the audit trail
ELLIPSIS = "…"
EMPTY_FIELD = "—"  # Discord rejects an empty (or blank) field name or value
USERNAME = "tradebase"
# Discord refuses webhook usernames containing these words.
_RESERVED_USERNAME = re.compile(r"discord|clyde", re.I)
_ATTACHMENT_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

Severity = Literal["critical", "warning", "success", "info"]
COLOURS: dict[Severity, int] = {
    "critical": 0xE53935,  # red
    "warning": 0xFFB300,  # amber
    "success": 0x43A047,  # green
    "info": 0x1E88E5,  # blue
}
Message = dict[str, Any]


# -- which events are announced ----------------------------------------------------------------
def _critical_alert(metrics: Mapping[str, Any]) -> bool:
    # identify.py puts the alert's level in `status`; other producers may say `severity`.
    return "critical" in (metrics.get("status"), metrics.get("severity"))


@dataclass(frozen=True)
class Announcement:
    """How an event type is announced: its severity, its title, the metrics shown first, and an
    optional predicate on the metrics (an event failing it is not announced)."""

    severity: Severity
    title: str
    keys: tuple[str, ...] = ()
    when: Callable[[Mapping[str, Any]], bool] | None = None


_AB = (
    "stage",
    "to_stage",
    "n_control",
    "n_treatment",
    "estimate",
    "p_value",
    "improvement_percent",
)
SIGNIFICANT: Mapping[str, Announcement] = {
    "alert_raised": Announcement(
        "critical",
        "Critical alert",
        ("metric", "value", "threshold_value", "window_days", "evidence_count"),
        when=_critical_alert,
    ),
    "optimization_completed": Announcement(
        "success", "Candidate passed its gates", ("candidate_version", "incumbent_version")
    ),
    "optimization_rejected": Announcement(
        "info", "Candidate rejected", ("candidate_version", "incumbent_version")
    ),
    "optimization_failed": Announcement("warning", "Optimization failed", ("run_id",)),
    "deployment_created": Announcement("info", "Deployment created", ("version",)),
    "deployment_staged": Announcement("info", "Candidate staged", ("version", "incumbent_version")),
    "deployment_resumed": Announcement("info", "Deployment resumed", ("version",)),
    "smoke_tests_failed": Announcement("warning", "Smoke tests failed"),
    "ab_test_started": Announcement("info", "A/B test started", ("planned_n", "alpha", "margin")),
    "ab_stage_advanced": Announcement("success", "A/B test advanced a stage", _AB),
    "ab_stage_extended": Announcement("info", "A/B stage extended", _AB),
    "ab_test_paused": Announcement("warning", "A/B test paused", _AB),
    "ab_test_promoted": Announcement("success", "Candidate promoted", _AB),
    "ab_test_inconclusive": Announcement("warning", "A/B test inconclusive", _AB),
    "ab_test_rolled_back": Announcement("critical", "A/B test rolled back", _AB),
    "deployment_rolled_back": Announcement(
        "critical", "Deployment rolled back", ("version", "restored_version", "automatic")
    ),
    "circuit_breaker_opened": Announcement("critical", "Circuit breaker opened"),
}


def announcement(event_type: str, metrics: Mapping[str, Any]) -> Announcement | None:
    """How an event is announced, or None when it is not a significant event."""
    found = SIGNIFICANT.get(event_type)
    if found is None or (found.when is not None and not found.when(metrics)):
        return None
    return found


class EventLike(Protocol):
    """What a message needs of a stored event (runner.audit.StoredEvent has it all)."""

    @property
    def event_type(self) -> str: ...
    @property
    def trigger_reason(self) -> str: ...
    @property
    def metrics(self) -> Mapping[str, Any]: ...
    @property
    def component_id(self) -> str | None: ...
    @property
    def deployment_id(self) -> str | None: ...
    @property
    def test_id(self) -> str | None: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def event_id(self) -> str: ...
    @property
    def event_timestamp(self) -> datetime: ...


# -- building ------------------------------------------------------------------------------------
def format_value(value: Any) -> str:
    """A metric as a field value: numbers to 4 significant digits, ints grouped, lists as JSON."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", " "), sort_keys=True)


def metric_fields(
    metrics: Mapping[str, Any], first: Sequence[str] = (), shown: int = FIELDS_SHOWN
) -> list[dict[str, Any]]:
    """The metrics as embed fields: `first` in that order, then the other scalars, then one level
    of nested mappings (`gates.dsr`); past `shown`, one field says how many were left out."""
    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            for sub, inner in value.items():
                nested[f"{key}.{sub}"] = inner
        else:
            flat[str(key)] = value
    ordered = [k for k in first if k in flat]
    ordered += sorted(k for k in flat if k not in ordered)
    items = [(k, flat[k]) for k in ordered] + sorted(nested.items())
    fields = [_field(name, format_value(value)) for name, value in items[:shown]]
    if len(items) > shown:
        fields.append(_field("more", f"{len(items) - shown} more in the audit trail", False))
    return fields


def _field(name: str, value: str, inline: bool | None = None) -> dict[str, Any]:
    return {"name": name, "value": value, "inline": len(value) <= 40 if inline is None else inline}


def _footer(**ids: str | None) -> dict[str, str]:
    return {"text": " · ".join(f"{k} {v}" for k, v in ids.items() if v)}


def base_message(embeds: list[dict[str, Any]], content: str | None = None) -> Message:
    """The envelope every message shares: our username and no mentions, whatever the text says."""
    message: Message = {"username": USERNAME, "allowed_mentions": {"parse": []}, "embeds": embeds}
    if content:
        message["content"] = content
    return message


def event_message(event: EventLike) -> tuple[Severity, Message] | None:
    """The message announcing `event` (already redacted), or None when it is not significant."""
    found = announcement(event.event_type, event.metrics)
    if found is None:
        return None
    title = f"{found.title}: {event.component_id}" if event.component_id else found.title
    embed = {
        "title": title,
        "description": event.trigger_reason,
        "color": COLOURS[found.severity],
        "fields": metric_fields(event.metrics, found.keys),
        "footer": _footer(
            component=event.component_id,
            deployment=event.deployment_id,
            test=event.test_id,
            task=event.task_id,
            event=event.event_id,
        ),
        "timestamp": event.event_timestamp.isoformat(),
    }
    return found.severity, base_message([embed])


@dataclass(frozen=True)
class SummaryStep:
    """One step of a cycle as the summary shows it: analyze/identify/optimize/deploy, its status
    (ok, failed, skipped), one sentence, and how long it took."""

    name: str
    status: str
    summary: str
    seconds: float | None = None


@dataclass(frozen=True)
class CycleSummary:
    """What one cycle did, for its summary message. `metrics` become fields (counts, durations);
    `notes` are extra sentences (such as "notifications are off")."""

    cycle_id: str
    started_at: datetime
    finished_at: datetime
    steps: Sequence[SummaryStep]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()
    dry_run: bool = False

    @property
    def severity(self) -> Severity:
        if any(s.status == "failed" for s in self.steps):
            return "critical"
        if any(s.status == "skipped" for s in self.steps):
            return "warning"
        return "success"


_STEP_MARK = {"ok": "✅", "failed": "❌", "skipped": "⏭️"}


def attachment_name(path: str) -> str:
    """The file name an attachment is uploaded under (what `attachment://…` refers to): the
    file's name made safe, prefixed by a digest of its path so two charts never share one."""
    stem = _ATTACHMENT_SAFE.sub("_", PurePath(path).name).strip("._") or "file"
    return f"{hashlib.sha1(path.encode()).hexdigest()[:6]}_{stem[-60:]}"


def summary_message(summary: CycleSummary, charts: Sequence[str] = ()) -> tuple[Severity, Message]:
    """The cycle's summary: one embed with a line per step and the metrics as fields, then one
    embed per chart (at most nine: a message carries ten embeds and ten files)."""
    severity = summary.severity
    colour = COLOURS[severity]
    outcome = {"critical": "a step failed", "warning": "a step was skipped"}.get(severity, "ok")
    lines = []
    for step in summary.steps:
        took = f" ({step.seconds:.1f} s)" if step.seconds is not None else ""
        mark = _STEP_MARK.get(step.status, "•")
        lines.append(f"{mark} **{step.name}** {step.status}{took}: {step.summary}")
    lines += [f"ℹ️ {note}" for note in summary.notes]
    seconds = (summary.finished_at - summary.started_at).total_seconds()
    metrics = {"duration_seconds": round(seconds, 1), **summary.metrics}
    embeds: list[dict[str, Any]] = [
        {
            "title": f"{'Dry run' if summary.dry_run else 'Cycle'} {summary.cycle_id}: {outcome}",
            "description": "\n".join(lines) or "No step ran.",
            "color": colour,
            "fields": metric_fields(metrics, ("duration_seconds",)),
            "footer": _footer(cycle=summary.cycle_id),
            "timestamp": summary.finished_at.isoformat(),
        }
    ]
    for path in charts[: EMBEDS_MAX - 1]:
        name = attachment_name(path)
        embeds.append(
            {
                "title": PurePath(path).stem,
                "color": colour,
                "image": {"url": f"attachment://{name}"},
            }
        )
    return severity, base_message(embeds)


def test_message(now: datetime) -> tuple[Severity, Message]:
    return "info", base_message(
        [
            {
                "title": "Test message from tradebase",
                "description": "The webhook works: notifications of the improvement cycle "
                "will arrive in this channel.",
                "color": COLOURS["info"],
                "footer": {"text": "runner notify test"},
                "timestamp": now.isoformat(),
            }
        ]
    )


# -- fitting to Discord's limits -----------------------------------------------------------------
def size(text: str) -> int:
    """Length in UTF-16 code units (≥ code points): the stricter of the two ways to count."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` units, ending with an ellipsis when it was cut."""
    if size(text) <= limit:
        return text
    if limit < 1:
        return ""
    used = kept = 0
    for ch in text:
        step = 2 if ord(ch) > 0xFFFF else 1
        if used + step > limit - 1:  # one unit is kept for the ellipsis
            break
        used += step
        kept += 1
    return text[:kept].rstrip() + ELLIPSIS


def embed_size(embed: Mapping[str, Any]) -> int:
    """The characters of an embed that count toward the 6,000 of a message."""
    total = size(embed.get("title", "")) + size(embed.get("description", ""))
    total += size(embed.get("footer", {}).get("text", ""))
    total += size(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", []):
        total += size(f["name"]) + size(f["value"])
    return total


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _non_empty(value: Any, limit: int) -> str:
    text = truncate(_text(value), limit)
    return text if text.strip() else EMPTY_FIELD


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def _fit_embed(embed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One embed within every per-embed limit: texts truncated; fields beyond 25, or beyond the
    6,000 characters, moved to continuation embeds (same title, "(continued)")."""
    head: dict[str, Any] = {
        k: v
        for k, v in embed.items()
        if k not in ("title", "description", "fields", "footer", "author", "color", "timestamp")
    }
    title = truncate(_text(embed.get("title")), TITLE_MAX)
    if title.strip():
        head["title"] = title
    description = truncate(_text(embed.get("description")), DESCRIPTION_MAX)
    if description.strip():
        head["description"] = description
    author = embed.get("author")
    if isinstance(author, Mapping):
        name = truncate(_text(author.get("name")), AUTHOR_MAX)
        if name.strip():
            head["author"] = {**author, "name": name}
    colour = embed.get("color")
    if isinstance(colour, int | float) and not isinstance(colour, bool) and math.isfinite(colour):
        head["color"] = min(max(int(colour), 0), COLOUR_MAX)
    stamp = _timestamp(embed.get("timestamp"))
    if stamp is not None:
        head["timestamp"] = stamp
    footer = embed.get("footer")
    if isinstance(footer, Mapping):
        # title + author + description leave at least 6000 - 256 - 256 - 4096 for the footer.
        room = EMBEDS_TOTAL_MAX - embed_size(head)
        text = truncate(_text(footer.get("text")), min(FOOTER_MAX, room))
        if text.strip():
            head["footer"] = {**footer, "text": text}
    fields = [
        {
            "name": _non_empty(f.get("name"), FIELD_NAME_MAX),
            "value": _non_empty(f.get("value"), FIELD_VALUE_MAX),
            **({"inline": f["inline"]} if isinstance(f.get("inline"), bool) else {}),
        }
        for f in embed.get("fields") or []
        if isinstance(f, Mapping)
    ]
    out = [head]
    current, used = head, embed_size(head)
    for f in fields:
        cost = size(f["name"]) + size(f["value"])
        if len(current.get("fields", [])) >= FIELDS_MAX or used + cost > EMBEDS_TOTAL_MAX:
            current = {"title": truncate(f"{title or 'Details'} (continued)", TITLE_MAX)}
            if "color" in head:
                current["color"] = head["color"]
            used = embed_size(current)
            out.append(current)
        current.setdefault("fields", []).append(f)
        used += cost
    return out


def fit(message: Mapping[str, Any]) -> list[Message]:
    """`message` as one or more messages that obey every limit Discord enforces.

    Truncated (ending in "…"): content (2,000), username (80), each title, description, field
    name and value, footer and author name; a colour is clamped to 0…0xFFFFFF; an empty field name
    or value becomes "—". Split: an embed with more than 25 fields, or more than 6,000
    characters, continues in further embeds; more than 10 embeds, or more than 6,000 characters
    across a message's embeds, continue in further messages, in order (content stays on the
    first). At most PARTS_MAX messages: past that, the last one says how many embeds were left
    out. Mentions are always disabled.
    """
    envelope: Message = {
        k: v for k, v in message.items() if k not in ("content", "embeds", "username")
    }
    envelope["allowed_mentions"] = {"parse": []}
    username = truncate(_text(message.get("username")), USERNAME_MAX).strip()
    envelope["username"] = (
        username if username and not _RESERVED_USERNAME.search(username) else USERNAME
    )
    content = truncate(_text(message.get("content")), CONTENT_MAX)
    embeds = [
        part
        for embed in message.get("embeds") or []
        if isinstance(embed, Mapping)
        for part in _fit_embed(embed)
    ]
    groups: list[list[dict[str, Any]]] = []
    used = 0
    for embed in embeds:
        cost = embed_size(embed)
        if not groups or len(groups[-1]) >= EMBEDS_MAX or used + cost > EMBEDS_TOTAL_MAX:
            groups.append([])
            used = 0
        groups[-1].append(embed)
        used += cost
    if len(groups) > PARTS_MAX:
        left_out = sum(len(g) for g in groups[PARTS_MAX - 1 :])
        groups = groups[: PARTS_MAX - 1] + [[]]
        last_note = f"{left_out} more embeds were left out of this notification (too long)."
    else:
        last_note = ""
    parts: list[Message] = []
    for index, group in enumerate(groups or [[]]):
        part: Message = dict(envelope)
        text = content if index == 0 else ""
        if index == len(groups) - 1 and last_note:
            text = last_note
        if text.strip():
            part["content"] = text
        if group:
            part["embeds"] = group
        if "content" not in part and "embeds" not in part:
            part["content"] = "(empty notification)"
        parts.append(part)
    return parts


def referenced_attachments(message: Mapping[str, Any]) -> set[str]:
    """The attachment names a message's embeds show (`attachment://name`)."""
    found: set[str] = set()
    for embed in message.get("embeds") or []:
        for key in ("image", "thumbnail"):
            url = _text((embed.get(key) or {}).get("url"))
            if url.startswith("attachment://"):
                found.add(url.removeprefix("attachment://"))
    return found
