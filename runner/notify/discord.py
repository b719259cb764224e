"""Delivery of the outbox to the Discord webhook: oldest first, once each, within Discord's rate
limits and the run's time budget; what cannot go now stays pending, in order, for a later run.

It owns the HTTP exchange (httpx), the retries (tenacity), the rate limiting and keeping the
webhook URL out of every log line, error and report. It builds no message (messages.py) and
writes nothing but the delivery state of outbox rows (outbox.py).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from runner.notify.messages import FILES_MAX, attachment_name
from runner.notify.outbox import (
    OutboxMessage,
    mark_attempted,
    mark_failed,
    mark_sent,
    pending,
    skip_pending,
)
from runner.redact import redact

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState

    from runner.config import Settings
    from runner.warehouse import Warehouse

NOTIFICATIONS_OFF = "notifications are off (DISCORD_WEBHOOK_URL not set)"
# Discord's documented rates: about 5 requests per 2 s per webhook, 30 messages a minute per
# channel. Headers can only lower these; nothing raises them.
RATE_WINDOWS: tuple[tuple[int, float], ...] = ((5, 2.0), (30, 60.0))
RATE_MARGIN_SECONDS = 0.05  # on top of every computed wait, against clock skew with Discord
MAX_UPLOAD_BYTES = (
    8 * 1024 * 1024
)  # under the 10 MiB of an unboosted server, with room for the form
BACKOFF_MAX_SECONDS = 30.0
# Loggers that can see the request URL (httpx logs it at INFO); each gets the redacting filter
# (a filter on a parent logger does not apply to its children's records).
HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)

_log = logging.getLogger("runner.notify")

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery run did. `error` says why it stopped early when something is wrong (the
    webhook refused, Discord unreachable); `note` says why it paused or did nothing (notifications
    off, time budget spent, rate limit); both are redacted and one sentence."""

    enabled: bool
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    pending: int = 0
    retries: int = 0
    error: str | None = None
    note: str | None = None
    delivered: tuple[str, ...] = field(default=())  # outbox message ids sent, in order

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        if not self.enabled:
            return f"{NOTIFICATIONS_OFF[0].upper()}{NOTIFICATIONS_OFF[1:]}; {self.skipped} skipped."
        text = f"Sent {self.sent}, failed {self.failed}, {self.pending} pending"
        why = self.error or self.note
        return f"{text}: {why}" if why else f"{text}."

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        value["delivered"] = list(self.delivered)
        value["ok"] = self.ok
        return value


# -- what can happen to one request -------------------------------------------------------------
class _Retryable(Exception):
    """Not delivered, and certainly not posted (or, `uncertain`, the reply was lost): retry."""

    def __init__(
        self, reason: str, retry_after: float | None = None, uncertain: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.uncertain = uncertain


class _Rejected(Exception):
    """Discord will never take this message as it is (400 and most 4xx): give it up."""


class _Stop(Exception):
    """Nothing more can be delivered in this run (the webhook refused, the budget spent)."""

    def __init__(self, reason: str, *, is_error: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.is_error = is_error


@dataclass(frozen=True)
class _Outcome:
    """How one message's delivery ended in this run: sent, failed (given up), or stopped (stays
    pending; `is_error` tells a fault from a pause)."""

    status: Literal["sent", "failed", "stopped"]
    attempts: int
    text: str | None = None  # the note on a sent row, or why it failed or stopped
    discord_message_id: str | None = None
    is_error: bool = False


# -- rate limits and budget --------------------------------------------------------------------
class _RateGate:
    """Waits before a request so that neither the documented rates nor the latest
    X-RateLimit-Remaining/Reset-After headers are exceeded."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sent: deque[float] = deque(maxlen=max(n for n, _ in RATE_WINDOWS))
        self._blocked_until = 0.0

    def delay(self) -> float:
        now = self._clock()
        wait = self._blocked_until - now
        for count, window in RATE_WINDOWS:
            recent = [t for t in self._sent if t > now - window]
            if len(recent) >= count:
                wait = max(wait, recent[-count] + window - now + RATE_MARGIN_SECONDS)
        return max(wait, 0.0)

    def sending(self) -> None:
        self._sent.append(self._clock())

    def observe(self, headers: Mapping[str, str]) -> None:
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset_after = _number(headers.get("x-ratelimit-reset-after"))
        if remaining is not None and remaining <= 0 and reset_after is not None:
            until = self._clock() + reset_after + RATE_MARGIN_SECONDS
            self._blocked_until = max(self._blocked_until, until)


@dataclass(frozen=True)
class _Budget:
    clock: Clock
    deadline: float

    def remaining(self) -> float:
        return self.deadline - self.clock()


def _number(text: object) -> float | None:
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


# -- keeping the URL secret --------------------------------------------------------------------
class RedactingFilter(logging.Filter):
    """Rewrites a log record's message with secrets (the webhook URL and token) masked."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


@contextmanager
def redacted_http_logs(secrets: tuple[str, ...]) -> Iterator[None]:
    """While open, every record of the HTTP client's loggers has the secrets masked."""
    redacting = RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in HTTP_LOGGERS]
    for logger in loggers:
        logger.addFilter(redacting)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("https", "http") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        usable = False
    if not usable:
        return (
            "DISCORD_WEBHOOK_URL is not an http(s) URL; it should look like "
            "https://discord.com/api/webhooks/<id>/<token>."
        )
    return None


def _exclusive(wh: Warehouse) -> AbstractContextManager[bool]:
    """One delivery run at a time per schema."""
    from runner.warehouse import session_lock

    return session_lock(wh, f"tb:notify:{wh.schema}")


# -- delivery ----------------------------------------------------------------------------------
def deliver(
    wh: Warehouse,
    settings: Settings,
    *,
    budget_seconds: float | None = None,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    transport: httpx.BaseTransport | None = None,
) -> DeliveryReport:
    """Send the pending outbox rows, oldest first, each once; return what happened.

    Stops at the first message that cannot be delivered now (Discord down past the retries, the
    budget of `budget_seconds` (default settings.notify_budget_seconds) spent, the webhook
    refused) so the order holds: it and those after it stay pending for the next run. A message
    Discord rejects as invalid (400) is marked failed and delivery goes on. Without a webhook,
    pending rows are marked skipped and the report says notifications are off.

    Call it outside any transaction: each row's state is committed as soon as it is known.
    """
    webhook = settings.discord_webhook_url
    if webhook is None:
        skipped = skip_pending(wh, NOTIFICATIONS_OFF)
        _log.info(NOTIFICATIONS_OFF)
        return DeliveryReport(enabled=False, skipped=skipped, note=NOTIFICATIONS_OFF)
    secrets = settings.secrets()
    rows = pending(wh)
    problem = _url_problem(webhook.get_secret_value())
    if problem is not None:
        _log.error(problem)
        return DeliveryReport(enabled=True, pending=len(rows), error=problem)
    if not rows:
        return DeliveryReport(enabled=True)
    budget = settings.notify_budget_seconds if budget_seconds is None else budget_seconds
    with _exclusive(wh) as held:
        if not held:
            note = "another runner is delivering notifications; this run left them to it"
            return DeliveryReport(enabled=True, pending=len(rows), note=note)
        with redacted_http_logs(secrets):
            courier = _Courier(
                wh,
                settings,
                budget=_Budget(clock, clock() + budget),
                sleep=sleep,
                clock=clock,
            )
            return courier.run(pending(wh), transport)


class _Courier:
    """One delivery run: the client, the rate gate and the budget it shares across messages."""

    def __init__(
        self, wh: Warehouse, settings: Settings, *, budget: _Budget, sleep: Sleep, clock: Clock
    ) -> None:
        from tenacity import wait_exponential_jitter

        assert settings.discord_webhook_url is not None
        self.wh = wh
        self.settings = settings
        self.url = settings.discord_webhook_url.get_secret_value()
        self.secrets = settings.secrets()
        self.budget = budget
        self.sleep = sleep
        self.gate = _RateGate(clock)
        self.retries = 0
        initial = settings.notify_backoff_seconds
        self._backoff = wait_exponential_jitter(
            initial=initial, max=BACKOFF_MAX_SECONDS, jitter=initial
        )

    def run(
        self, rows: Sequence[OutboxMessage], transport: httpx.BaseTransport | None
    ) -> DeliveryReport:
        import httpx

        sent: list[str] = []
        failed = 0
        error = note = None
        with httpx.Client(
            timeout=self.settings.notify_timeout_seconds,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "tradebase-notify"},
        ) as client:
            for index, row in enumerate(rows):
                outcome = self._deliver_one(client, row)
                attempts = row.attempts + outcome.attempts
                if outcome.status == "sent":
                    mark_sent(
                        self.wh,
                        row.message_id,
                        attempts=attempts,
                        discord_message_id=outcome.discord_message_id,
                        note=outcome.text,
                        now=datetime.now(UTC),
                    )
                    sent.append(row.message_id)
                    continue
                reason = outcome.text or "not delivered"
                if outcome.status == "failed":
                    failed += 1
                    mark_failed(self.wh, row.message_id, attempts=attempts, error=reason)
                    _log.warning("Notification %s was rejected: %s", row.message_id, reason)
                    continue
                if outcome.attempts:
                    mark_attempted(self.wh, row.message_id, attempts=attempts, error=reason)
                message = (
                    f"{reason}; {len(rows) - index} message(s) stay in the outbox for the next run"
                )
                if outcome.is_error:
                    error = message
                    _log.warning("Notifications paused: %s", message)
                else:
                    note = message
                    _log.info("Notifications paused: %s", message)
                break
        return DeliveryReport(
            enabled=True,
            sent=len(sent),
            failed=failed,
            pending=len(rows) - len(sent) - failed,
            retries=self.retries,
            error=error,
            note=note,
            delivered=tuple(sent),
        )

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)[:500]

    # -- one message, with its retries ---------------------------------------------------------
    def _deliver_one(self, client: httpx.Client, row: OutboxMessage) -> _Outcome:
        from tenacity import Retrying, retry_if_exception_type

        if self.budget.remaining() <= 0:
            return _Outcome("stopped", 0, "the run's time budget is spent")
        request, notes = self._request(row)
        attempts = 0
        uncertain = False

        def attempt() -> tuple[str | None, str | None]:
            nonlocal attempts, uncertain
            wait = self.gate.delay()
            if wait > self.budget.remaining():
                raise _Stop("the rate limit leaves no time in the run's budget", is_error=False)
            if wait > 0:
                self.sleep(wait)
            attempts += 1
            self.gate.sending()
            try:
                return self._post(client, request)
            except _Retryable as exc:
                uncertain = uncertain or exc.uncertain
                raise

        retrying = Retrying(
            sleep=self.sleep,
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=self._stop,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            discord_id, answer_note = retrying(attempt)
        except _Rejected as exc:
            return _Outcome("failed", attempts, self._clean(str(exc)))
        except _Stop as exc:
            return _Outcome("stopped", attempts, self._clean(exc.reason), is_error=exc.is_error)
        except _Retryable as exc:
            if exc.retry_after is not None:  # a pause, not a fault
                why = (
                    f"Discord's rate limit asks to wait {exc.retry_after:.1f} s, past the budget"
                    if exc.retry_after >= self.budget.remaining()
                    else f"Discord rate-limited it {attempts} time(s) in a row"
                )
                return _Outcome("stopped", attempts, why)
            why = f"Discord could not take it after {attempts} attempt(s) ({exc.reason})"
            return _Outcome("stopped", attempts, self._clean(why), is_error=True)
        if uncertain:
            notes.append("a reply was lost before this delivery: Discord may show it twice")
            _log.warning("Notification %s: a reply was lost; sent again", row.message_id)
        if answer_note:
            notes.append(answer_note)
        text = self._clean("; ".join(notes)) if notes else None
        return _Outcome("sent", attempts, text, discord_message_id=discord_id)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after + RATE_MARGIN_SECONDS  # Discord says how long; no guessing
        return float(self._backoff(state))

    def _stop(self, state: RetryCallState) -> bool:
        return (
            state.attempt_number >= self.settings.notify_max_attempts
            or state.upcoming_sleep > self.budget.remaining()
        )

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        _log.info(
            "Notification retry in %.2f s: %s",
            state.upcoming_sleep,
            self._clean(getattr(exc, "reason", type(exc).__name__)),
        )

    def _request(self, row: OutboxMessage) -> tuple[dict[str, Any], list[str]]:
        """The httpx arguments for a row: JSON, or multipart with payload_json and files[n]."""
        notes: list[str] = []
        files: list[tuple[str, bytes]] = []
        total = 0
        for path in row.attachments:
            name = attachment_name(path)
            try:
                content = Path(path).read_bytes()
            except OSError:
                notes.append(f"attachment {Path(path).name} was gone; sent without it")
                continue
            if len(files) >= FILES_MAX or total + len(content) > MAX_UPLOAD_BYTES:
                notes.append(f"attachment {Path(path).name} left out (over the upload limit)")
                continue
            files.append((name, content))
            total += len(content)
        kept = {name for name, _ in files}
        payload = _without_missing_images(row.payload, kept)
        if not files:
            return {"json": payload}, notes
        payload["attachments"] = [{"id": i, "filename": name} for i, (name, _) in enumerate(files)]
        return {
            "data": {"payload_json": json.dumps(payload, ensure_ascii=False)},
            "files": [
                (f"files[{i}]", (name, content, mimetypes.guess_type(name)[0] or "image/png"))
                for i, (name, content) in enumerate(files)
            ],
        }, notes

    def _post(
        self, client: httpx.Client, request: Mapping[str, Any]
    ) -> tuple[str | None, str | None]:
        import httpx

        try:
            response = client.post(self.url, params={"wait": "true"}, **request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Retryable(f"{type(exc).__name__}: {self._clean(str(exc))}") from None
        except (httpx.WriteTimeout, httpx.WriteError) as exc:
            # The body did not get through whole: Discord cannot have posted it.
            raise _Retryable(f"{type(exc).__name__}: {self._clean(str(exc))}") from None
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # The request went out and the reply was lost: Discord may have posted it. Retried
            # all the same (nothing is lost; at worst it shows twice), and noted on the row.
            raise _Retryable(
                f"{type(exc).__name__}: {self._clean(str(exc))}", uncertain=True
            ) from None
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {self._clean(str(exc))}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _Stop(
                f"DISCORD_WEBHOOK_URL cannot be used ({type(exc).__name__}: {self._clean(str(exc))})"
            ) from None
        except Exception as exc:  # anything else may quote the URL too: never let it out raw
            raise _Stop(
                f"sending failed unexpectedly ({type(exc).__name__}: {self._clean(str(exc))})"
            ) from None
        self.gate.observe(response.headers)
        return self._judge(response)

    def _judge(self, response: httpx.Response) -> tuple[str | None, str | None]:
        status = response.status_code
        if 200 <= status < 300:
            body = _json(response)
            found = body.get("id") if isinstance(body, dict) else None
            if found:
                return str(found), None
            # Posted (2xx) but unreadable: never resent, which would post it twice.
            return None, f"Discord accepted it (HTTP {status}) without a readable message id"
        detail = self._detail(response)
        if status == 429:
            raise _Retryable(f"rate limited (HTTP 429{detail})", retry_after=_retry_after(response))
        if status >= 500:
            raise _Retryable(f"Discord answered HTTP {status}{detail}")
        if status in (401, 403, 404):
            raise _Stop(
                f"the webhook was refused (HTTP {status}{detail}); check DISCORD_WEBHOOK_URL "
                "(wrong, or the webhook was deleted)"
            )
        if 400 <= status < 500:
            raise _Rejected(f"Discord rejected the message (HTTP {status}{detail})")
        raise _Stop(f"unexpected answer HTTP {status} from the webhook; check DISCORD_WEBHOOK_URL")

    def _detail(self, response: httpx.Response) -> str:
        body = _json(response)
        if not isinstance(body, dict):
            return ""
        parts = [str(body[k]) for k in ("code", "message") if body.get(k) is not None]
        if body.get("errors"):
            parts.append(json.dumps(body["errors"], separators=(",", ":"))[:300])
        return self._clean(", " + ": ".join(parts)) if parts else ""


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait after a 429: the body's retry_after, else the Retry-After header, else
    X-RateLimit-Reset-After, else one second."""
    body = _json(response)
    candidates = [
        body.get("retry_after") if isinstance(body, dict) else None,
        response.headers.get("retry-after"),
        response.headers.get("x-ratelimit-reset-after"),
    ]
    for candidate in candidates:
        value = _number(candidate) if candidate is not None else None
        if value is not None:
            return max(value, 0.0)
    return 1.0


def _without_missing_images(payload: Mapping[str, Any], kept: set[str]) -> dict[str, Any]:
    """The payload without image/thumbnail references to files that are not uploaded."""
    copy = json.loads(json.dumps(payload))
    for embed in copy.get("embeds") or []:
        for key in ("image", "thumbnail"):
            url = str((embed.get(key) or {}).get("url", ""))
            if url.startswith("attachment://") and url.removeprefix("attachment://") not in kept:
                del embed[key]
    result: dict[str, Any] = copy
    return result
