"""Notifications: significant events and the cycle summary reach a Discord webhook through the
outbox, valid, in order and once each, against a local server that enforces Discord's limits and
rate limits and answers 429s, 503s, stalls, garbage and refusals (tests/python/fake_discord.py).

Waits run on a FakeClock shared by the client and the server, so no test really sleeps for a
rate limit or a backoff; only the stall test spends a fraction of a second on a real timeout.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from typer.testing import CliRunner

from runner.audit import AuditTrail, Event, StoredEvent, read_events
from runner.cli.app import _global
from runner.cli.notify import notify_app
from runner.config import Settings
from runner.engine_tables import bulk_insert
from runner.notify import (
    NOTIFICATIONS_OFF,
    CycleSummary,
    DeliveryReport,
    SummaryStep,
    deliver,
    enqueue_summary,
    event_message,
    fit,
    outbox_counts,
    read_outbox,
)
from runner.notify.messages import COLOURS, PARTS_MAX, truncate
from runner.notify.outbox import OUTBOX_COLUMNS
from runner.warehouse import Warehouse
from tests.python.fake_discord import FakeClock, FakeDiscord, discord_errors, is_empty, units

# A 1×1 PNG: the cycle's charts are small PNG files.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360"
    "0000000200010005fe02fe0000000049454e44ae426082"
)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def discord(clock: FakeClock) -> Iterator[FakeDiscord]:
    fake = FakeDiscord(clock, stall_seconds=0.6).start()
    yield fake
    fake.stop()


def with_webhook(settings: Settings, url: str | None, **changes: Any) -> Settings:
    update: dict[str, Any] = {
        "discord_webhook_url": None if url is None else SecretStr(url),
        "notify_timeout_seconds": 0.3,
        "notify_budget_seconds": 600.0,
        "notify_max_attempts": 5,
        **changes,
    }
    return settings.model_copy(update=update)


def run(wh: Warehouse, settings: Settings, clock: FakeClock, **kw: Any) -> DeliveryReport:
    return deliver(wh, settings, sleep=clock.sleep, clock=clock, **kw)


def critical_alert(metric: str, value: float = 0.21) -> Event:
    return Event(
        "alert_raised",
        f"{metric} over 30 days for component trend_spx is {value}: critical",
        {"metric": metric, "status": "critical", "value": value, "threshold_value": 0.5},
        component_id="trend_spx",
        alert_id=f"al_{metric}",
    )


def cycle_events() -> list[Event]:
    """What one busy cycle records: alerts (one only a warning), a verdict, a rollout moving,
    a rollback, the circuit breaker, and events that are not announced."""
    return [
        Event("analysis_completed", "Marts built.", {"models": 12}),
        critical_alert("sharpe"),
        Event(
            "alert_raised",
            "win_rate is low: warning",
            {"metric": "win_rate", "status": "warning"},
            component_id="meanrev_ndx",
        ),
        critical_alert("max_drawdown", 0.31),
        Event(
            "optimization_completed",
            "Candidate version 3 passed every gate.",
            {
                "candidate_version": 3,
                "incumbent_version": 2,
                "gates": {"dsr": 0.97, "pbo": 0.12},
                "best_params": {"fast": 10, "slow": 50},
            },
            component_id="trend_spx",
            task_id="task_1",
        ),
        Event("optimization_rejected", "Rejected: PBO 0.6 over 0.3.", {"candidate_version": 4}),
        Event("deployment_staged", "Candidate 3 in staging.", {"version": 3}, deployment_id="d1"),
        Event("smoke_tests_passed", "All smoke tests passed.", {}, deployment_id="d1"),
        Event("ab_test_started", "A/B test t1 at 10%.", {"planned_n": 5000}, test_id="t1"),
        Event("ab_stage_advanced", "Non-inferior at 10%.", {"to_stage": 50}, test_id="t1"),
        Event("ab_test_rolled_back", "Guardrail breached.", {"automatic": True}, test_id="t1"),
        Event("deployment_rolled_back", "By hand.", {"version": 3, "restored_version": 2}),
        Event("circuit_breaker_opened", "Task task_1 failed 3 times in a row.", {"failures": 3}),
        Event("task_succeeded", "Task task_2 finished.", {}),
    ]


ANNOUNCED = 10  # cycle_events() that are significant


def record(wh: Warehouse, events: list[Event], secrets: tuple[str, ...] = ()) -> None:
    with wh.transaction():
        AuditTrail(wh, run_id="run_test", secrets=secrets).record(events)


def summary(cycle_id: str = "cyc_1") -> CycleSummary:
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    return CycleSummary(
        cycle_id=cycle_id,
        started_at=start,
        finished_at=start + timedelta(minutes=14),
        steps=[
            SummaryStep("analyze", "ok", "12 models built.", 31.2),
            SummaryStep("identify", "ok", "2 critical alerts.", 1.4),
            SummaryStep("optimize", "ok", "1 candidate passed, 1 rejected.", 640.0),
            SummaryStep("deploy", "ok", "1 rollback.", 12.9),
        ],
        metrics={"alerts_critical": 2, "candidates": 2, "rollbacks": 1},
    )


def outbox_titles(wh: Warehouse, status: str | None = None) -> list[str]:
    return [
        str((m.payload.get("embeds") or [{}])[0].get("title"))
        for m in read_outbox(wh, status=status)  # type: ignore[arg-type]
    ]


# -- building and fitting messages (pure) -------------------------------------------------------
_CHUNKS = st.sampled_from(["a", "é", "😀", " ", "\u200b", "ab cd ", "\n"])
_TEXT = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(lambda chunk, n: chunk * n, _CHUNKS, st.integers(0, 2_500)),
    st.builds(lambda chunk, n: chunk * n, _CHUNKS, st.integers(3_000, 9_000)),
)
_FIELD = st.fixed_dictionaries({"name": _TEXT, "value": _TEXT}, optional={"inline": st.booleans()})
_EMBED = st.fixed_dictionaries(
    {},
    optional={
        "title": _TEXT,
        "description": _TEXT,
        "color": st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.booleans()),
        "fields": st.lists(_FIELD, max_size=40),
        "footer": st.fixed_dictionaries({"text": _TEXT}),
        "author": st.fixed_dictionaries({"name": _TEXT}),
        "timestamp": st.sampled_from(["2026-03-02T10:00:00+00:00", "not a date", ""]),
    },
)
_MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "content": _TEXT,
        "username": st.one_of(_TEXT, st.just("Discord bot"), st.just("clyde")),
        "embeds": st.lists(_EMBED, max_size=14),
    },
)


@hyp_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MESSAGE)
def test_fit_returns_only_messages_discord_accepts(message: dict[str, Any]) -> None:
    """Whatever goes in (huge texts, astral characters, 40 fields, 14 embeds, bad colours),
    every message out passes the fake's checks, which are Discord's."""
    parts = fit(message)
    assert 1 <= len(parts) <= PARTS_MAX
    for part in parts:
        assert discord_errors(part) == [], part
        assert not is_empty(part, 0)
        assert part["allowed_mentions"] == {"parse": []}


def test_fit_on_seeded_giant_messages_splits_instead_of_rejecting() -> None:
    """A seeded generator of oversized messages (no hypothesis shrinking): nothing is rejected,
    and every field survives, in order, across the parts (up to PARTS_MAX messages)."""
    rng = random.Random(20260302)
    for _ in range(25):
        embeds = [
            {
                "title": "T" * rng.randint(0, 400),
                "description": "D" * rng.randint(0, 6000),
                "fields": [
                    {"name": f"f{e}_{i}", "value": "v" * rng.randint(1, 1500)}
                    for i in range(rng.randint(0, 60))
                ],
                "footer": {"text": "F" * rng.randint(0, 3000)},
                "color": rng.randint(-5, 2**25),
            }
            for e in range(rng.randint(1, 4))
        ]
        parts = fit({"content": "C" * rng.randint(0, 3000), "embeds": embeds})
        assert all(discord_errors(p) == [] for p in parts)
        names = [f["name"] for p in parts for e in p.get("embeds", []) for f in e.get("fields", [])]
        expected = [f["name"] for e in embeds for f in e["fields"]]
        assert names == expected[: len(names)]
        if len(names) < len(expected):  # past PARTS_MAX messages, the last one says so
            assert len(parts) == PARTS_MAX and "left out" in parts[-1]["content"]


def test_fit_truncates_long_texts_with_an_ellipsis_and_splits_over_6000() -> None:
    big = {
        "content": "c" * 2500,
        "username": "u" * 100,
        "embeds": [{"title": "t" * 300, "description": "d" * 4000} for _ in range(3)],
    }
    parts = fit(big)
    assert len(parts) == 3  # 3 × 4,256 characters: one embed per message
    assert parts[0]["content"].endswith("…") and units(parts[0]["content"]) == 2000
    assert "content" not in parts[1]
    assert parts[0]["embeds"][0]["title"].endswith("…")
    assert all(units(p["username"]) <= 80 for p in parts)
    assert truncate("😀" * 10, 5) == "😀😀…"  # 2 units each, one kept for the ellipsis


def test_an_embed_with_more_than_25_fields_continues_in_a_second_embed() -> None:
    fields = [{"name": f"m{i}", "value": str(i)} for i in range(30)]
    (part,) = fit({"embeds": [{"title": "Metrics", "fields": fields}]})
    first, second = part["embeds"]
    assert len(first["fields"]) == 25 and len(second["fields"]) == 5
    assert second["title"] == "Metrics (continued)"


def test_a_critical_alert_is_red_with_its_metrics_as_fields_and_a_warning_is_not_sent() -> None:
    stamp = datetime(2026, 3, 2, tzinfo=UTC)
    event = StoredEvent(**vars(critical_alert("sharpe")), event_id="ev_1", event_timestamp=stamp)
    built = event_message(event)
    assert built is not None
    severity, message = built
    (embed,) = message["embeds"]
    assert severity == "critical" and embed["color"] == COLOURS["critical"]
    assert embed["title"] == "Critical alert: trend_spx"
    assert [f["name"] for f in embed["fields"]][:3] == ["metric", "value", "threshold_value"]
    assert {"name": "value", "value": "0.21", "inline": True} in embed["fields"]
    assert "event ev_1" in embed["footer"]["text"] and embed["timestamp"] == stamp.isoformat()
    warning = StoredEvent(
        **{**vars(critical_alert("sharpe")), "metrics": {"status": "warning"}},
        event_id="ev_2",
        event_timestamp=stamp,
    )
    assert event_message(warning) is None


# -- the outbox and the transaction of the event ------------------------------------------------
@pytest.mark.integration
def test_events_queue_their_messages_in_the_same_transaction(warehouse: Warehouse) -> None:
    """Committed: each significant event has its pending row; rolled back: neither remains."""
    record(warehouse, cycle_events())
    rows = read_outbox(warehouse)
    assert len(rows) == ANNOUNCED and {r.status for r in rows} == {"pending"}
    events = {e.event_id: e.event_type for e in read_events(warehouse)}
    assert [events[r.event_id] for r in rows if r.event_id] == [r.kind for r in rows]
    assert [r.kind for r in rows][:3] == ["alert_raised", "alert_raised", "optimization_completed"]

    with pytest.raises(RuntimeError), warehouse.transaction():
        AuditTrail(warehouse).record([critical_alert("calmar")])
        raise RuntimeError("the step failed after recording")
    assert len(read_outbox(warehouse)) == ANNOUNCED
    assert not [e for e in read_events(warehouse) if e.alert_id == "al_calmar"]


# -- delivery ---------------------------------------------------------------------------------
@pytest.mark.integration
def test_every_message_of_a_cycle_is_delivered_valid_in_order_within_the_rate(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock, tmp_path: Path
) -> None:
    """Ten event messages and the summary with two charts: all accepted by the fake (so all
    valid), in outbox order, each once, and the client never provoked a rate-limit 429."""
    record(warehouse, cycle_events())
    charts = []
    for name in ("equity", "drawdown"):
        charts.append(tmp_path / f"{name}.png")
        charts[-1].write_bytes(PNG)
    with warehouse.transaction():
        enqueue_summary(warehouse, summary(), charts=charts)
    expected = outbox_titles(warehouse)

    report = run(warehouse, with_webhook(settings, discord.url), clock)

    assert report.ok and report.sent == ANNOUNCED + 1 and report.pending == 0
    assert discord.contents == expected
    assert discord.rejected == [] and discord.rate_limited == 0
    assert clock.slept, "12 messages at 5 per 2 s must wait for the rate limit"
    last = discord.accepted[-1]
    assert sorted(last.files.values()) == [PNG, PNG]
    images = [e["image"]["url"] for e in last.payload["embeds"][1:]]
    assert images == [f"attachment://{name}" for name in last.files]
    rows = read_outbox(warehouse)
    assert {r.status for r in rows} == {"sent"}
    assert [r.discord_message_id for r in rows] == [a.id for a in discord.accepted]
    assert all(r.sent_at is not None and r.attempts == 1 for r in rows)


@pytest.mark.integration
def test_a_burst_never_exceeds_5_per_2_seconds_nor_30_a_minute(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    record(warehouse, [critical_alert(f"metric_{i:02d}") for i in range(40)])
    report = run(warehouse, with_webhook(settings, discord.url), clock)
    assert report.sent == 40 and discord.rate_limited == 0
    times = [a.at for a in discord.accepted]
    assert all(b - a >= 2.0 for a, b in zip(times, times[5:], strict=False))
    assert all(b - a >= 60.0 for a, b in zip(times, times[30:], strict=False))


@pytest.mark.integration
def test_429_and_503_are_retried_and_each_message_arrives_once(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    record(warehouse, [critical_alert("sharpe"), critical_alert("sortino")])
    discord.script("429", "503", "503", "ok", "429")
    report = run(warehouse, with_webhook(settings, discord.url), clock)
    assert report.sent == 2 and report.retries == 4
    assert discord.contents == outbox_titles(warehouse)
    assert [s.status for s in discord.seen] == [429, 503, 503, 200, 429, 200]
    # The 429 waits are Discord's retry_after (0.75 s), not a guess.
    assert sum(1 for s in clock.slept if s == pytest.approx(0.8)) == 2  # + 0.05 margin
    assert [r.attempts for r in read_outbox(warehouse)] == [4, 2]


@pytest.mark.integration
def test_with_discord_down_messages_wait_and_the_next_run_delivers_them_in_order_once(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    record(warehouse, cycle_events())
    expected = outbox_titles(warehouse)
    configured = with_webhook(settings, discord.url)
    with discord.down():
        down = run(warehouse, configured, clock)
    assert down.sent == 0 and down.pending == ANNOUNCED
    assert down.error is not None and "could not take it after 5 attempt(s)" in down.error
    assert outbox_counts(warehouse)["pending"] == ANNOUNCED
    assert read_outbox(warehouse)[0].attempts == 5  # only the first was tried: order holds

    later = run(warehouse, configured, clock)
    again = run(warehouse, configured, clock)
    assert later.ok and later.sent == ANNOUNCED and again.sent == 0
    assert discord.contents == expected  # in order, once each


@pytest.mark.integration
@pytest.mark.parametrize(
    ("which", "status"), [("token", 401), ("id", 404)], ids=["bad-token", "unknown-webhook"]
)
def test_a_refused_webhook_stops_at_once_and_keeps_the_messages(
    warehouse: Warehouse,
    settings: Settings,
    discord: FakeDiscord,
    clock: FakeClock,
    which: str,
    status: int,
) -> None:
    record(warehouse, [critical_alert("sharpe"), critical_alert("sortino")])
    url = (
        discord.url.replace(discord.token, "revoked-token-0123456789")
        if which == "token"
        else discord.url.replace(discord.webhook_id, "1")
    )
    report = run(warehouse, with_webhook(settings, url), clock)
    assert len(discord.seen) == 1  # no retry storm: one request, then stop
    assert report.error is not None and f"HTTP {status}" in report.error
    assert "check DISCORD_WEBHOOK_URL" in report.error
    assert outbox_counts(warehouse)["pending"] == 2 and clock.slept == []


@pytest.mark.integration
def test_garbage_answers_stalls_and_dropped_replies_neither_lose_nor_duplicate(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    """A 200 with an HTML body was posted: it is not sent again. A stall past the timeout and a
    dropped connection (before the fake posts anything) are retried: each arrives once."""
    record(warehouse, [critical_alert(m) for m in ("sharpe", "sortino", "calmar")])
    discord.script("garbage", "stall", "drop")
    report = run(warehouse, with_webhook(settings, discord.url), clock)
    assert report.sent == 3 and report.retries == 2
    assert discord.contents == outbox_titles(warehouse)
    first, second, _ = read_outbox(warehouse)
    assert first.discord_message_id is None and "without a readable message id" in str(
        first.last_error
    )
    assert second.attempts == 3 and "may show it twice" in str(second.last_error)


@pytest.mark.integration
def test_an_invalid_message_is_marked_failed_and_delivery_goes_on(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    """A row written around `fit` (content over 2,000) gets Discord's 400 once: failed, with
    the reason, never retried; the message after it is delivered."""
    now = datetime.now(UTC)
    bulk_insert(
        warehouse,
        "notification_outbox",
        OUTBOX_COLUMNS,
        [
            {
                "message_id": "msg_0_bad",
                "kind": "test",
                "severity": "info",
                "payload": json.dumps({"content": "x" * 2001}),
                "attachments": "[]",
                "status": "pending",
                "attempts": 0,
                "created_at": now - timedelta(seconds=1),
            }
        ],
    )
    record(warehouse, [critical_alert("sharpe")])
    report = run(warehouse, with_webhook(settings, discord.url), clock)
    assert report.failed == 1 and report.sent == 1 and report.ok
    bad, good = read_outbox(warehouse)
    assert bad.status == "failed" and "HTTP 400, 50035" in str(bad.last_error)
    assert good.status == "sent" and len(discord.seen) == 2


@pytest.mark.integration
def test_the_time_budget_leaves_the_rest_pending_for_the_next_run(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    record(warehouse, [critical_alert(f"m{i}") for i in range(9)])
    configured = with_webhook(settings, discord.url)
    first = run(warehouse, configured, clock, budget_seconds=1.0)
    assert first.ok and first.sent == 5 and first.pending == 4
    assert first.note is not None and "budget" in first.note
    second = run(warehouse, configured, clock)
    assert second.sent == 4 and discord.contents == outbox_titles(warehouse)


@pytest.mark.integration
def test_a_429_asking_to_wait_past_the_budget_pauses_delivery(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    record(warehouse, [critical_alert("sharpe")])
    discord.retry_after = 120.0
    discord.script("429")
    report = run(warehouse, with_webhook(settings, discord.url), clock, budget_seconds=30.0)
    assert report.ok and report.pending == 1 and clock.slept == []
    assert report.note is not None and "wait 120.0 s, past the budget" in report.note
    assert read_outbox(warehouse)[0].attempts == 1


@pytest.mark.integration
def test_a_chart_gone_before_delivery_is_left_out_and_the_summary_still_sent(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock, tmp_path: Path
) -> None:
    chart = tmp_path / "equity.png"
    chart.write_bytes(PNG)
    with warehouse.transaction():
        enqueue_summary(warehouse, summary(), charts=[chart])
    chart.unlink()
    report = run(warehouse, with_webhook(settings, discord.url), clock)
    (accepted,) = discord.accepted
    assert report.sent == 1 and accepted.files == {}
    assert all("image" not in e for e in accepted.payload["embeds"])
    assert "was gone" in str(read_outbox(warehouse)[0].last_error)


@pytest.mark.integration
def test_without_a_webhook_messages_are_skipped_and_it_is_said_once(
    warehouse: Warehouse, settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    record(warehouse, cycle_events())
    with caplog.at_level(logging.INFO, logger="runner.notify"):
        report = run(warehouse, with_webhook(settings, None), clock)
    assert not report.enabled and report.skipped == ANNOUNCED
    assert report.note == NOTIFICATIONS_OFF
    assert caplog.text.count(NOTIFICATIONS_OFF) == 1
    assert outbox_counts(warehouse)["skipped"] == ANNOUNCED


# -- the webhook URL is a secret ----------------------------------------------------------------
# The end-to-end check (cycle logs, every table, outputs, report, httpx at DEBUG, a refused
# token) is tests/python/test_secrets.py.
@pytest.mark.integration
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:notaport/api/webhooks/1/SECRETtokenSECRETtoken",
        "ftp://example.invalid/api/webhooks/1/SECRETtokenSECRETtoken",
        "http://[::1/api/webhooks/1/SECRETtokenSECRETtoken",
    ],
    ids=["bad-port", "not-http", "bad-host"],
)
def test_an_unusable_webhook_url_is_an_error_that_does_not_quote_it(
    warehouse: Warehouse, settings: Settings, clock: FakeClock, url: str
) -> None:
    record(warehouse, [critical_alert("sharpe")])
    report = run(warehouse, with_webhook(settings, url), clock)
    assert report.error is not None and "DISCORD_WEBHOOK_URL" in report.error
    assert "SECRETtoken" not in json.dumps(report.to_dict())
    assert outbox_counts(warehouse)["pending"] == 1


@pytest.mark.integration
def test_a_second_delivery_run_on_postgres_leaves_the_messages_to_the_first(
    warehouse: Warehouse, settings: Settings, discord: FakeDiscord, clock: FakeClock
) -> None:
    """Two runners never send the same row: delivery holds an advisory lock per schema."""
    if warehouse.dialect != "postgres":
        pytest.skip("a DuckDB file has one process at a time")
    import psycopg

    assert settings.database_url is not None
    record(warehouse, [critical_alert("sharpe")])
    key = (f"tb:notify:{warehouse.schema}",)
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as other:
        other.execute("select pg_advisory_lock(hashtext(%s))", key)
        busy = run(warehouse, with_webhook(settings, discord.url), clock)
        # Released explicitly: a closed session frees its locks only when its backend exits.
        other.execute("select pg_advisory_unlock(hashtext(%s))", key)
    assert busy.sent == 0 and busy.note is not None and "another runner" in busy.note
    assert run(warehouse, with_webhook(settings, discord.url), clock).sent == 1


# -- the CLI ------------------------------------------------------------------------------------
def _cli_app() -> typer.Typer:
    """The root callback of runner.cli.app with only the notify group (registered elsewhere)."""
    app = typer.Typer(pretty_exceptions_show_locals=False)
    app.callback()(_global)
    app.add_typer(notify_app, name="notify")
    return app


def cli(settings: Settings, url: str | None, *args: str) -> tuple[int, str, str]:
    env = {
        "DATABASE_URL": "",
        "DISCORD_WEBHOOK_URL": url or "",
        "TRADEBASE_PROJECT_DIR": str(settings.project),
        "TRADEBASE_NOTIFY_TIMEOUT_SECONDS": "2",
        "TRADEBASE_NOTIFY_MAX_ATTEMPTS": "1",
    }
    prefix: list[str] = []
    if settings.dialect == "postgres":
        assert settings.database_url is not None
        env |= {
            "DATABASE_URL": settings.database_url.get_secret_value(),
            "TRADEBASE_SCHEMA": settings.schema,
        }
    else:
        prefix = ["--duckdb-path", str(settings.duckdb_file)]
    result = CliRunner().invoke(_cli_app(), [*prefix, "notify", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def live_discord() -> Iterator[FakeDiscord]:
    """The fake on real time (the CLI sleeps for real; it sends one or two messages)."""
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


@pytest.mark.integration
def test_notify_test_delivers_a_test_message(settings: Settings, live_discord: FakeDiscord) -> None:
    code, out, err = cli(settings, live_discord.url, "test")
    assert code == 0, err
    assert "Test message delivered" in out and live_discord.accepted[0].id in out
    assert live_discord.contents == ["Test message from tradebase"]


@pytest.mark.integration
def test_notify_test_fails_in_one_redacted_line_when_the_webhook_is_refused(
    settings: Settings, live_discord: FakeDiscord
) -> None:
    url = live_discord.url.replace(live_discord.token, "revoked-" + "z" * 40)
    code, out, err = cli(settings, url, "test")
    assert code == 1
    assert len(err.strip().splitlines()) <= 2 and "HTTP 401" in err  # rich may wrap once
    assert "z" * 40 not in out + err and live_discord.token not in out + err
    # The withdrawn test message does not turn up later.
    code, out, _ = cli(settings, live_discord.url, "flush", "--json")
    assert code == 0 and json.loads(out)["sent"] == 0 and live_discord.accepted == []


@pytest.mark.integration
def test_notify_test_without_a_webhook_says_notifications_are_off(settings: Settings) -> None:
    code, _, err = cli(settings, None, "test")
    assert code == 1 and "DISCORD_WEBHOOK_URL not set" in err


@pytest.mark.integration
def test_notify_flush_delivers_the_backlog_and_prints_counts(
    warehouse: Warehouse, settings: Settings, live_discord: FakeDiscord
) -> None:
    record(warehouse, [critical_alert("sharpe"), critical_alert("sortino")])
    if settings.dialect == "duckdb":
        warehouse.close()  # one process holds a DuckDB file; the CLI opens it
    with live_discord.down():
        code, out, err = cli(settings, live_discord.url, "flush")
    assert code == 1 and "2 pending" in out and "stay in the outbox" in out
    assert live_discord.token not in out + err
    code, out, _ = cli(settings, live_discord.url, "flush", "--json")
    report = json.loads(out)
    assert code == 0 and report["sent"] == 2 and report["outbox"]["sent"] == 2
    assert live_discord.contents == ["Critical alert: trend_spx"] * 2
