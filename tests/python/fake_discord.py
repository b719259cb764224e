"""A local stand-in for Discord's Execute Webhook endpoint, for the notification tests.

It checks every request as Discord does (shared/reference/discord.md: the limits table, at least
one of content/embeds/files, non-empty fields, colour range, multipart payload_json + files[n]),
answers 400 code 50035/50006 on a violation, enforces 5 requests per 2 s per webhook (and 30 a
minute per channel) with X-RateLimit-* headers on every answer, and can be scripted to answer
429, 5xx, stall past the client's timeout, drop the connection, answer garbage, or refuse
connections (stopped). Lengths are counted in UTF-16 code units, the strictest reading.
Standard library only; its clock can be a FakeClock shared with the client, so no test sleeps.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIMITS = {
    "content": 2000,
    "embeds": 10,
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field.name": 256,
    "field.value": 1024,
    "footer.text": 2048,
    "author.name": 256,
    "embeds_total": 6000,
    "username": 80,
    "colour": 16_777_215,
    "upload_bytes": 10 * 1024 * 1024,
    "files": 10,
}
_PATH = re.compile(r"^/api/webhooks/(?P<id>\d+)/(?P<token>[^/]+)$")
_FILE_PART = re.compile(r"^files\[(\d+)\]$")


def units(text: str) -> int:
    """UTF-16 code units: never fewer than Discord's characters, whichever way it counts."""
    return len(text.encode("utf-16-le")) // 2


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def discord_errors(payload: Any, n_files: int = 0) -> list[str]:
    """Every rule of the Execute Webhook body that `payload` breaks (empty: Discord accepts it)."""
    errors: list[str] = []
    if not isinstance(payload, dict):
        return ["body is not a JSON object"]
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        errors.append("content is not a string")
    elif content and units(content) > LIMITS["content"]:
        errors.append(f"content over {LIMITS['content']}")
    username = payload.get("username")
    if username is not None:
        if not isinstance(username, str) or not username.strip():
            errors.append("username empty")
        elif units(username) > LIMITS["username"]:
            errors.append("username over 80")
        elif re.search("discord|clyde", username, re.I):
            errors.append("username contains a reserved word")
    mentions = payload.get("allowed_mentions")
    if mentions is not None and (
        not isinstance(mentions, dict)
        or not set(mentions.get("parse", [])) <= {"roles", "users", "everyone"}
    ):
        errors.append("allowed_mentions invalid")
    embeds = payload.get("embeds")
    if embeds is not None and not isinstance(embeds, list):
        errors.append("embeds is not a list")
        embeds = []
    embeds = embeds or []
    if len(embeds) > LIMITS["embeds"]:
        errors.append(f"{len(embeds)} embeds (max 10)")
    total = 0
    for i, embed in enumerate(embeds):
        where = f"embeds[{i}]"
        if not isinstance(embed, dict):
            errors.append(f"{where} is not an object")
            continue
        for key, limit in (("title", "title"), ("description", "description")):
            value = embed.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                errors.append(f"{where}.{key} is not a string")
                continue
            total += units(value)
            if units(value) > LIMITS[limit]:
                errors.append(f"{where}.{key} over {LIMITS[limit]}")
        for key in ("footer", "author"):
            part = embed.get(key)
            if part is None:
                continue
            attr = "text" if key == "footer" else "name"
            value = part.get(attr) if isinstance(part, dict) else None
            if not isinstance(value, str) or not value.strip():
                errors.append(f"{where}.{key}.{attr} missing")
                continue
            total += units(value)
            if units(value) > LIMITS[f"{key}.{attr}"]:
                errors.append(f"{where}.{key}.{attr} over {LIMITS[f'{key}.{attr}']}")
        colour = embed.get("color")
        if colour is not None and (not _is_int(colour) or not 0 <= colour <= LIMITS["colour"]):
            errors.append(f"{where}.color out of range: {colour!r}")
        stamp = embed.get("timestamp")
        if stamp is not None:
            try:
                datetime.fromisoformat(str(stamp))
            except ValueError:
                errors.append(f"{where}.timestamp is not ISO 8601")
        for key in ("image", "thumbnail"):
            media = embed.get(key)
            if media is not None and not (
                isinstance(media, dict) and isinstance(media.get("url"), str)
            ):
                errors.append(f"{where}.{key}.url missing")
        fields = embed.get("fields")
        if fields is None:
            continue
        if not isinstance(fields, list):
            errors.append(f"{where}.fields is not a list")
            continue
        if len(fields) > LIMITS["fields"]:
            errors.append(f"{where}: {len(fields)} fields (max 25)")
        for j, f in enumerate(fields):
            if not isinstance(f, dict):
                errors.append(f"{where}.fields[{j}] is not an object")
                continue
            for attr in ("name", "value"):
                value = f.get(attr)
                if not isinstance(value, str) or not value.strip():
                    errors.append(f"{where}.fields[{j}].{attr} empty")
                    continue
                total += units(value)
                if units(value) > LIMITS[f"field.{attr}"]:
                    errors.append(f"{where}.fields[{j}].{attr} over {LIMITS[f'field.{attr}']}")
            if "inline" in f and not isinstance(f["inline"], bool):
                errors.append(f"{where}.fields[{j}].inline is not a boolean")
    if total > LIMITS["embeds_total"]:
        errors.append(f"embeds total {total} over 6000")
    attachments = payload.get("attachments")
    if attachments is not None:
        ids = {a.get("id") for a in attachments if isinstance(a, dict)}
        if not ids <= set(range(n_files)):
            errors.append("attachments refer to files that were not uploaded")
    return errors


def is_empty(payload: Any, n_files: int) -> bool:
    return (
        isinstance(payload, dict)
        and not (payload.get("content") or "").strip()
        and not payload.get("embeds")
        and n_files == 0
    )


class FakeClock:
    """Time that moves only when someone sleeps: shared by the client (sleep, clock) and the
    server (rate limits), so waits are exact and instant."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now += max(seconds, 0.0)


@dataclass(frozen=True)
class Accepted:
    """A message the fake posted: its id, body and uploaded files (name → bytes)."""

    id: str
    payload: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = 0.0


@dataclass
class Seen:
    """Every request as answered: status and the URL path with query (for leak checks)."""

    status: int
    path: str
    at: float
    note: str = ""


class FakeDiscord:
    """The server. `url` is the webhook URL (token `token`); `script(...)` queues behaviours for
    the next requests: "429", "500"/"502"/"503", "stall", "drop", "garbage", "401", "404", or
    "ok" (answer as usual)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        webhook_id: str = "112233445566778899",
        token: str = "tbFAKE-t0ken_SECRET-abcdefghijklmnopqrstuvwxyz0123456789",
        rate: tuple[int, float] = (5, 2.0),
        channel_rate: tuple[int, float] = (30, 60.0),
        retry_after: float = 0.75,
        stall_seconds: float = 1.0,
    ) -> None:
        self.clock = clock
        self.webhook_id = webhook_id
        self.token = token
        self.rate = rate
        self.channel_rate = channel_rate
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.accepted: list[Accepted] = []
        self.seen: list[Seen] = []
        self.rejected: list[list[str]] = []
        self.rate_limited = 0  # 429s the limiter (not the script) gave
        self._script: deque[str] = deque()
        self._window: deque[float] = deque()
        self._channel: deque[float] = deque()
        self._lock = threading.Lock()
        self._next_id = 1_100_000_000_000_000_000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- life cycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/{self.webhook_id}/{self.token}"

    def start(self) -> FakeDiscord:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()` (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def script(self, *actions: str) -> None:
        with self._lock:
            self._script.extend(actions)

    @property
    def contents(self) -> list[str]:
        """Each accepted message's first embed title (or content), in order."""
        out = []
        for message in self.accepted:
            embeds = message.payload.get("embeds") or [{}]
            out.append(str(embeds[0].get("title") or message.payload.get("content") or ""))
        return out

    # -- the endpoint ------------------------------------------------------------------------
    def _rate_check(self) -> tuple[bool, dict[str, str], float]:
        """Whether this request is over a limit, the headers to send and the retry_after."""
        now = self.clock()
        limit, window = self.rate
        climit, cwindow = self.channel_rate
        for queue, width in ((self._window, window), (self._channel, cwindow)):
            while queue and queue[0] <= now - width:
                queue.popleft()
        over = len(self._window) >= limit or len(self._channel) >= climit
        retry = 0.0
        if len(self._window) >= limit:
            retry = max(retry, self._window[0] + window - now)
        if len(self._channel) >= climit:
            retry = max(retry, self._channel[0] + cwindow - now)
        if not over:
            self._window.append(now)
            self._channel.append(now)
        remaining = max(limit - len(self._window), 0)
        reset_after = (self._window[0] + window - now) if self._window else window
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": "fakebucket",
        }
        return over, headers, retry

    def handle(self, request: _Request) -> _Answer | None:
        match = _PATH.match(urlsplit(request.path).path)
        if match is None or match["id"] != self.webhook_id:
            return _Answer(404, {"message": "Unknown Webhook", "code": 10015})
        if match["token"] != self.token:
            return _Answer(401, {"message": "Invalid Webhook Token", "code": 50027})
        with self._lock:
            action = self._script.popleft() if self._script else None
        if action == "429":
            return _rate_limited(self.retry_after, scripted=True)
        if action in ("500", "502", "503"):
            return _Answer(int(action), b"upstream connect error or disconnect/reset")
        if action in ("401", "404"):
            code = {"401": 50027, "404": 10015}[action]
            return _Answer(int(action), {"message": "refused", "code": code})
        if action == "stall":
            time.sleep(self.stall_seconds)  # past the client's timeout; nothing posted
            return _Answer(503, b"too late")
        if action == "drop":
            return None
        with self._lock:
            over, headers, retry = self._rate_check()
            if over:
                self.rate_limited += 1
                answer = _rate_limited(retry, scripted=False)
                answer.headers.update(headers)
                answer.headers["X-RateLimit-Remaining"] = "0"
                return answer
        payload, files, problem = _parse(request)
        if problem is not None:
            self.rejected.append([problem.body.get("message", "")])  # type: ignore[union-attr]
            problem.headers.update(headers)
            return problem
        errors = discord_errors(payload, len(files))
        if errors or is_empty(payload, len(files)):
            self.rejected.append(errors or ["empty message"])
            body = (
                {"code": 50035, "message": "Invalid Form Body", "errors": errors}
                if errors
                else {"code": 50006, "message": "Cannot send an empty message"}
            )
            return _Answer(400, body, headers)
        with self._lock:
            self._next_id += 1
            message_id = str(self._next_id)
            self.accepted.append(Accepted(message_id, payload, files, self.clock()))
        if action == "garbage":
            return _Answer(200, b"<html><body>502 Bad Gateway</body></html>", headers)
        if parse_qs(urlsplit(request.path).query).get("wait") != ["true"]:
            return _Answer(204, b"", headers)
        body = {
            "id": message_id,
            "channel_id": "998877665544332211",
            "webhook_id": self.webhook_id,
            "content": payload.get("content", ""),
            "embeds": payload.get("embeds", []),
            "attachments": [{"id": str(i), "filename": n} for i, n in enumerate(files)],
        }
        return _Answer(200, body, headers)


@dataclass
class _Request:
    path: str
    content_type: str
    body: bytes


@dataclass
class _Answer:
    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)


def _rate_limited(retry_after: float, *, scripted: bool) -> _Answer:
    return _Answer(
        429,
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
        {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Scope": "user" if scripted else "shared",
        },
    )


def _parse(request: _Request) -> tuple[Any, dict[str, bytes], _Answer | None]:
    """The JSON payload and the uploaded files (name → bytes), or the 400/413 answer."""
    kind = request.content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            return json.loads(request.body), {}, None
        except ValueError:
            return (
                None,
                {},
                _Answer(400, {"code": 50109, "message": "The request body contains invalid JSON."}),
            )
    if kind != "multipart/form-data":
        return (
            None,
            {},
            _Answer(400, {"code": 50035, "message": f"Unsupported content type {kind}"}),
        )
    if len(request.body) > LIMITS["upload_bytes"]:
        return None, {}, _Answer(413, {"code": 40005, "message": "Request entity too large"})
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(
        f"Content-Type: {request.content_type}\r\n\r\n".encode() + request.body
    )
    payload: Any = None
    files: dict[str, bytes] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if name == "payload_json":
            try:
                payload = json.loads(data)
            except ValueError:
                return (
                    None,
                    {},
                    _Answer(400, {"code": 50109, "message": "payload_json is not JSON"}),
                )
        elif name and _FILE_PART.match(name):
            files[part.get_filename() or name] = data
        else:
            return (
                None,
                {},
                _Answer(400, {"code": 50035, "message": f"unexpected form part {name!r}"}),
            )
    if payload is None:
        payload = {}
    if len(files) > LIMITS["files"]:
        return None, {}, _Answer(400, {"code": 50035, "message": "too many files"})
    return payload, files, None


def _handler(fake: FakeDiscord) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("Content-Length") or 0)
            request = _Request(
                self.path, self.headers.get("Content-Type", ""), self.rfile.read(length)
            )
            answer = fake.handle(request)
            at = fake.clock()
            if answer is None:  # drop: close without a word
                fake.seen.append(Seen(0, self.path, at, "dropped"))
                self.close_connection = True
                return
            fake.seen.append(Seen(answer.status, self.path, at))
            body = (
                answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            )
            try:
                self.send_response(answer.status)
                kind = "text/html" if isinstance(answer.body, bytes) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (stall)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet: the tests read `seen`

    return Handler
