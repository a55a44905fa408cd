"""`newsletter subscribers import|list|count|remove`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._common import err, fail, out, ready, subscribers_app


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[Path, typer.Argument(help="CSV with an 'email' column and optional 'name' and 'status' columns.")],
    pending: Annotated[
        bool,
        typer.Option(
            "--pending/--confirmed",
            help="New rows without a status: pending (they get a confirmation email, at the send rate) "
            "or confirmed (active; consent recorded elsewhere).",
        ),
    ] = False,
) -> None:
    """Import subscribers. Bad rows are reported by line; good rows go in, all in one transaction.
    Addresses erased before are left out."""
    from ..db import session_scope
    from ..joining import claim_confirmations, enqueue_email
    from ..models import SubscriberStatus
    from ..subscribers import import_advice, import_rows, read_csv

    settings = ready()
    rows, report = read_csv(file)
    status = SubscriberStatus.PENDING if pending else SubscriberStatus.ACTIVE
    with session_scope(settings) as session:
        import_rows(session, rows, report, status=status, signing_key=settings.signing_key)
        due = claim_confirmations(session, report.pending)
    enqueue_email(settings, "confirm", due)
    for warning in report.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for line, reason in report.bad[:200]:
        err.print(f"{file}: line {line}: {reason}", markup=False, highlight=False)
    if len(report.bad) > 200:
        err.print(f"{file}: … and {len(report.bad) - 200} more bad rows", markup=False)
    out.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"left unsubscribed/suppressed {report.not_reactivated}, erased before {report.erased}, "
        f"duplicates {report.duplicates}, rejected {len(report.bad)}, confirmation emails queued {len(due)}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if report.bad:  # the good rows are in; the exit status says that some were not
        err.print(f"error: {import_advice(report)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@subscribers_app.command("list")
def subscribers_list(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list instead of CSV.")] = False,
) -> None:
    """List subscribers (CSV on stdout, or JSON)."""
    import csv

    from ..db import session_scope
    from ..models import SubscriberStatus
    from ..subscribers import export_cell, list_subscribers

    if status and status not in SubscriberStatus.ALL:
        fail(f"--status must be one of {', '.join(SubscriberStatus.ALL)}")
    settings = ready()
    with session_scope(settings) as session:
        rows = list_subscribers(session, status)
    if as_json:
        print(json.dumps([{"email": e, "name": n, "status": st} for e, n, st in rows], ensure_ascii=False))
        return
    writer = csv.writer(sys.stdout)
    writer.writerow(["email", "name", "status"])
    for e, n, st in rows:
        writer.writerow([export_cell(e), export_cell(n), st])


@subscribers_app.command("count")
def subscribers_count() -> None:
    """Subscribers per status."""
    from ..db import session_scope
    from ..subscribers import count_by_status

    settings = ready()
    with session_scope(settings) as session:
        counts = count_by_status(session)
    print(json.dumps(counts))


@subscribers_app.command("remove")
def subscribers_remove(email: Annotated[str, typer.Argument()]) -> None:
    """Unsubscribe an address (kept, so it can never be imported back to active)."""
    from ..db import session_scope
    from ..models import SubscriberStatus
    from ..subscribers import set_status

    settings = ready()
    with session_scope(settings) as session:
        found = set_status(session, email, SubscriberStatus.UNSUBSCRIBED, "removed by staff")
    if not found:
        fail(f"no subscriber {email!r}")
    out.print(f"{email} unsubscribed", markup=False, highlight=False)
