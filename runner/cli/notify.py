"""`runner notify test` and `runner notify flush`: check the Discord webhook, deliver the outbox.

A Typer group, registered by runner/cli/__init__.py with `app.add_typer(notify_app, name="notify")`.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from runner.cli.app import console, err_console, session, settings_of
from runner.cli.render import to_json
from runner.config import Settings
from runner.notify import NOTIFICATIONS_OFF, deliver, enqueue_test, outbox_counts, read_outbox
from runner.notify.outbox import mark_skipped
from runner.redact import redact

notify_app = typer.Typer(
    name="notify",
    help="Discord: send a test message, deliver the waiting messages.\n\n"
    "Example: [bold]runner notify test[/bold]  (with DISCORD_WEBHOOK_URL set)",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

Budget = Annotated[
    float | None,
    typer.Option(
        "--budget", help="Seconds delivery may take (default TRADEBASE_NOTIFY_BUDGET_SECONDS)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the delivery report as JSON.")]


def _fail(settings: Settings, message: str) -> NoReturn:
    err_console.print(
        f"[bold red]Error:[/] {escape(redact(message, settings.secrets()))}",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)


@notify_app.command("test")
def notify_test(ctx: typer.Context, budget: Budget = None, as_json: AsJson = False) -> None:
    """Send a test message to the webhook (after any backlog, in order).

    Exits 1 with the reason when it cannot be delivered; the test message is then withdrawn.

    Example: [bold]DISCORD_WEBHOOK_URL=https://discord.com/api/webhooks/… runner notify test[/bold]
    """
    settings = settings_of(ctx)
    if settings.discord_webhook_url is None:
        _fail(settings, f"{NOTIFICATIONS_OFF}: set it to the webhook's URL and try again.")
    with session(settings) as wh:
        with wh.transaction():
            ids = enqueue_test(wh)
        report = deliver(wh, settings, budget_seconds=budget)
        delivered = set(ids) <= set(report.delivered)
        if not delivered:
            # A test that arrives hours later, after the cause is fixed, would only confuse.
            mark_skipped(wh, ids, "test message withdrawn: not delivered when asked")
        sent = {m.message_id: m for m in read_outbox(wh, status="sent")}
    if as_json:
        typer.echo(to_json({**report.to_dict(), "test_delivered": delivered}))
    if not delivered:
        _fail(settings, report.error or report.note or "the test message was not delivered.")
    if not as_json:
        discord_ids = [sent[i].discord_message_id for i in ids if i in sent]
        console.print(
            f"[green]Test message delivered[/] (Discord message {', '.join(map(str, discord_ids))}"
            f"; {report.sent} sent in all).",
            highlight=False,
        )


@notify_app.command("flush")
def notify_flush(ctx: typer.Context, budget: Budget = None, as_json: AsJson = False) -> None:
    """Deliver the messages waiting in the outbox, oldest first.

    Exits 1 when something stopped delivery (webhook refused, Discord unreachable); what was not delivered stays in the outbox for the next run.

    Example: [bold]runner notify flush --json[/bold]
    """
    settings = settings_of(ctx)
    with session(settings) as wh:
        report = deliver(wh, settings, budget_seconds=budget)
        counts = outbox_counts(wh)
    if as_json:
        typer.echo(to_json({**report.to_dict(), "outbox": counts}))
    else:
        colour = "green" if report.ok else "red"
        console.print(f"[{colour}]{escape(report.summary())}[/]", highlight=False)
        console.print(
            "[dim]Outbox: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + "[/]",
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)
