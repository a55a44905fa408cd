"""`newsletter subscribers export|erase`: the list out, and a person's data removed."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ._common import fail, out, ready, subscribers_app


@subscribers_app.command("export")
def subscribers_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    status: Annotated[Optional[str], typer.Option(help="Only this status.")] = None,  # noqa: UP045 - Typer
) -> None:
    """Write the list to stdout, streamed (any size): CSV with email, name, status, source,
    created_at, confirmed_at — it imports back with `subscribers import` — or a JSON array."""
    from ..db import session_scope
    from ..models import SubscriberStatus
    from ..privacy import export_subscribers

    if fmt not in ("csv", "json"):
        fail("--format must be csv or json")
    if status and status not in SubscriberStatus.ALL:
        fail(f"--status must be one of {', '.join(SubscriberStatus.ALL)}")
    settings = ready()
    with session_scope(settings) as session:
        for chunk in export_subscribers(session, status, fmt):
            sys.stdout.write(chunk)
    sys.stdout.flush()


@subscribers_app.command("erase")
def subscribers_erase(email: Annotated[str, typer.Argument(help="The address to erase.")]) -> None:
    """Remove an address's personal data from the subscribers and the ledger, keeping only a
    keyed hash so a later import of it is left out (the person may still sign up again)."""
    from ..db import session_scope
    from ..privacy import erase

    settings = ready()
    with session_scope(settings) as session:
        report = erase(session, settings.signing_key, email)
    if report.already:
        out.print(f"{email} was erased before; nothing more to do", markup=False, highlight=False)
    else:
        out.print(f"{email} erased ({report.deliveries} ledger rows cleared)", markup=False, highlight=False)
