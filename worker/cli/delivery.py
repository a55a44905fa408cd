"""`newsletter bounces poll` and `newsletter dns-records`."""

from __future__ import annotations

import typer

from ._common import app, out, ready

bounces_app = typer.Typer(no_args_is_help=True, help="Returned mail (bounces) from the bounce mailbox.")
app.add_typer(bounces_app, name="bounces")


@bounces_app.command("poll")
def bounces_poll() -> None:
    """Read NEWSLETTER_BOUNCE_MAILBOX once: record each returned message's bounces (beat does this
    every NEWSLETTER_BOUNCE_POLL_INTERVAL)."""
    from ..bounces.mailbox import poll_mailbox

    result = poll_mailbox(ready())
    effects = ", ".join(f"{n} {what}" for what, n in sorted(result.effects.items())) or "no changes"
    out.print(
        f"{result.messages} messages, {result.recorded} new bounce reports: {effects}", markup=False, highlight=False
    )


@app.command("dns-records")
def dns_records() -> None:
    """The SPF, DKIM and DMARC records to publish for the sending domain."""
    from ..dkim import dns_records as records

    for name, kind, value, why in records(ready()):
        out.print(f'; {why}\n{name}. IN {kind} "{value}"', markup=False, highlight=False, soft_wrap=True)
