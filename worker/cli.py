"""The `newsletter` command. Each command is a thin shell over plain functions in the package."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import InputError, NewsletterError, NotFound
from .settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Turn podcast episodes into email digests and send them to subscribers.")
subscribers_app = typer.Typer(no_args_is_help=True, help="Manage the subscriber list.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True, soft_wrap=True)


def main() -> None:
    """Entry point: input errors are one line on stderr and exit code 2, never a traceback."""
    try:
        app(standalone_mode=True)
    except (InputError, NotFound) as exc:  # a bad argument: a file, a field, an id that is not there
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except NewsletterError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


def fail(message: str) -> None:
    raise InputError(message)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), get_settings().tz)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--as-of: expected a date like 2023-11-23 or 2023-11-23T18:00, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=get_settings().tz)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path` and rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
def render(
    episode: Annotated[Path, typer.Argument(help="Episode file: page layout (.txt) or Markdown with front matter.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for body.html, body.txt, message.eml, event.ics.")],
    to: Annotated[str, typer.Option(help="The recipient to personalise for.")] = "subscriber@example.com",
    name: Annotated[str, typer.Option(help="The recipient's name.")] = "",
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Send time (date or date-time); "
                                                 "an event over by then is left out. Default: the episode's date.")] = None,
) -> None:
    """Render one episode into the exact email a subscriber would receive."""
    from .episodes import load_episode
    from .message import Recipient, compose
    from .subscribers import normalise_email

    settings = get_settings()
    address = normalise_email(to, where="--to")
    ep = load_episode(episode, settings.tz)
    template = compose(ep, settings, _as_of(as_of))
    recipient = Recipient(address, name)
    message, _ = template.build(recipient)
    html, text = template.personalised(recipient)
    files = {"body.html": html.encode(), "body.txt": text.encode(), "message.eml": message}
    if template.ics:
        files["event.ics"] = template.ics
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        write_atomic(out_dir / fname, data)
    if not template.ics:
        (out_dir / "event.ics").unlink(missing_ok=True)  # a stale one from an earlier render would mislead
    for w in ep.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    table = Table(show_header=True, box=None)
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for fname, data in files.items():
        table.add_row(fname, f"{len(data):,}")
    out.print(f"{ep.title} → {address}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"written to {out_dir.resolve()}", markup=False, highlight=False, soft_wrap=True)
    out.print(table)


def _ready():
    """Settings plus a migrated database: every command that touches the ledger starts here."""
    from .db import migrate

    settings = get_settings()
    migrate(settings)
    return settings


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema."""
    _ready()
    out.print(f"database is up to date: {get_settings().resolved_database_url}", markup=False)


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[Path, typer.Argument(help="CSV with an 'email' column and an optional 'name' column.")],
) -> None:
    """Import subscribers. Bad rows are reported by line; good rows go in, all in one transaction."""
    from .db import session_scope
    from .subscribers import import_rows, read_csv

    settings = _ready()
    rows, report = read_csv(file)
    with session_scope(settings) as session:
        import_rows(session, rows, report)
    for line, reason in report.bad[:200]:
        err.print(f"{file}: line {line}: {reason}", markup=False, highlight=False)
    if len(report.bad) > 200:
        err.print(f"{file}: … and {len(report.bad) - 200} more bad rows", markup=False)
    out.print(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
              f"left unsubscribed/suppressed {report.not_reactivated}, duplicates {report.duplicates}, "
              f"rejected {len(report.bad)}", markup=False, highlight=False)


@subscribers_app.command("list")
def subscribers_list(
    status: Annotated[Optional[str], typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List subscribers (CSV on stdout, or JSON)."""
    import csv

    from sqlalchemy import select

    from .db import session_scope
    from .models import Subscriber, SubscriberStatus
    from .subscribers import export_cell

    if status and status not in SubscriberStatus.ALL:
        fail(f"--status must be one of {', '.join(SubscriberStatus.ALL)}")
    settings = _ready()
    with session_scope(settings) as session:
        query = select(Subscriber).order_by(Subscriber.id)
        if status:
            query = query.where(Subscriber.status == status)
        rows = [(s.email, s.name, s.status) for s in session.scalars(query)]
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
    from .db import session_scope
    from .subscribers import count_by_status

    settings = _ready()
    with session_scope(settings) as session:
        counts = count_by_status(session)
    print(json.dumps(counts))


@subscribers_app.command("remove")
def subscribers_remove(email: Annotated[str, typer.Argument()]) -> None:
    """Unsubscribe an address (kept, so it can never be imported back to active)."""
    from .db import session_scope
    from .models import SubscriberStatus
    from .subscribers import set_status

    settings = _ready()
    with session_scope(settings) as session:
        found = set_status(session, email, SubscriberStatus.UNSUBSCRIBED, "removed by staff")
    if not found:
        fail(f"no subscriber {email!r}")
    out.print(f"{email} unsubscribed", markup=False, highlight=False)


@app.command()
def publish(
    episode: Annotated[Path, typer.Argument(help="Episode file.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the campaign is done.")] = False,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Send time for the event check (default now).")] = None,
    timeout: Annotated[float, typer.Option(help="With --wait: give up waiting after this many seconds.")] = 0,
) -> None:
    """Publish an episode: one campaign, every active subscriber once."""
    from .publish import publish_file

    settings = _ready()
    result = publish_file(episode, settings, as_of=_as_of(as_of))
    c = result.campaign
    if result.created:
        out.print(f"campaign {c.id}: {result.episode.title} → {c.total} subscribers", markup=False, highlight=False)
    else:
        out.print(f"already published as campaign {c.id} ({c.status}); nothing new was queued",
                  markup=False, highlight=False)
    if wait:
        _wait(c.id, timeout)


def _wait(campaign_id: int, timeout: float = 0) -> dict:
    import time as _time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .db import session_scope
    from .ledger import status as campaign_status

    settings = get_settings()
    started = _time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=False, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"campaign {campaign_id}", total=None)
        while True:
            with session_scope(settings) as session:
                st = campaign_status(session, campaign_id)
            settled = st["total"] - sum(st[s] for s in ("queued", "claimed", "sending", "retry"))
            progress.update(task, total=st["total"], completed=settled,
                            description=f"campaign {campaign_id}: {st['sent']} sent, {st['retry']} retrying, "
                                        f"{st['failed']} failed")
            if st["state"] == "done" or (st["total"] and settled == st["total"]):
                break
            if timeout and _time.monotonic() - started > timeout:
                err.print("still sending; `newsletter status` shows progress", markup=False)
                break
            _time.sleep(0.3)  # polling the ledger for a progress bar
    _print_status(st)
    return st


def _print_status(st: dict) -> None:
    table = Table(show_header=True, box=None)
    for key in ("sent", "queued", "claimed", "sending", "retry", "failed", "uncertain", "skipped"):
        table.add_column(key, justify="right")
    table.add_row(*(str(st[k]) for k in ("sent", "queued", "claimed", "sending", "retry", "failed",
                                         "uncertain", "skipped")))
    out.print(f"campaign {st['campaign']} ({st['episode']}): {st['state']}, {st['total']} recipients"
              + (f", about {st['eta_seconds']:.0f}s to go" if st.get("eta_seconds") else ""),
              markup=False, highlight=False)
    out.print(table)
    if st["uncertain"]:
        out.print(f"{st['uncertain']} uncertain: `newsletter resend {st['campaign']} --uncertain` resends them "
                  "with the same Message-ID", markup=False, highlight=False)


@app.command()
def status(
    campaign: Annotated[Optional[int], typer.Argument(help="Campaign id (default: the latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts per delivery status, and an ETA while sending."""
    from .db import session_scope
    from .ledger import latest_campaign
    from .ledger import status as campaign_status

    settings = _ready()
    with session_scope(settings) as session:
        if campaign is None:
            latest = latest_campaign(session)
            if latest is None:
                fail("no campaigns yet")
            campaign = latest.id
        st = campaign_status(session, campaign)
        feeds = _feed_status(session)
    if as_json:
        print(json.dumps({**st, "feeds": feeds}))
        return
    _print_status(st)
    for f in feeds:
        if f["last_error"]:
            out.print(f"feed {f['url']}: failing since {f['failures']} polls: {f['last_error']}",
                      markup=False, highlight=False)


def _feed_status(session) -> list[dict]:  # noqa: ANN001
    from sqlalchemy import select

    from .models import Feed

    return [{"url": f.url, "last_error": f.last_error, "failures": f.failures,
             "last_ok_at": f.last_ok_at.isoformat() if f.last_ok_at else None}
            for f in session.scalars(select(Feed).order_by(Feed.id))]


@app.command()
def resend(
    campaign: Annotated[int, typer.Argument()],
    uncertain: Annotated[bool, typer.Option("--uncertain", help="Resend the deliveries left uncertain.")] = False,
) -> None:
    """Resend deliveries left uncertain by a dead worker (same Message-ID)."""
    from .db import session_scope
    from .ledger import resend_uncertain
    from .publish import start

    if not uncertain:
        fail("say what to resend: --uncertain")
    settings = _ready()
    with session_scope(settings) as session:
        n = resend_uncertain(session, campaign)
    if n:
        start(campaign)
    out.print(f"{n} uncertain deliveries queued again", markup=False)


@app.command()
def sweep() -> None:
    """Recover dead claims and finish done campaigns now (beat does this every 15 s)."""
    from .db import session_scope
    from .ledger import sweep as sweep_ledger
    from .publish import start

    settings = _ready()
    with session_scope(settings) as session:
        report = sweep_ledger(session, settings)
    for campaign_id in report.need_work or []:
        start(campaign_id)
    out.print(f"requeued {report.requeued}, uncertain {report.uncertain}, finished {report.finished}", markup=False)


@app.command()
def demo(
    episode: Annotated[Optional[Path], typer.Option(help="Episode to send (default: the sample).")] = None,
    subscribers: Annotated[Optional[Path], typer.Option(help="Subscribers to import (default: the sample list).")] = None,
) -> None:
    """The whole job on embedded defaults: import, publish, run a worker until done."""
    import subprocess

    from .episodes import load_episode
    from .settings import CONFIG_DIR, PROJECT_DIR

    settings = _ready()
    episode = episode or CONFIG_DIR / "sample-episode.txt"
    subscribers = subscribers or CONFIG_DIR / "subscribers.csv"
    subscribers_import(subscribers)
    ep = load_episode(episode, settings.tz)
    # The sample's event is in the past; send "as of" the episode's date so the demo shows it.
    as_of = datetime.combine(ep.date, datetime.min.time(), settings.tz).isoformat()
    log_path = settings.path(settings.var_dir) / "worker.log"
    with open(log_path, "ab") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "--quiet", "worker", "--pool", "solo",
             "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=PROJECT_DIR, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            publish(episode, wait=True, as_of=as_of, timeout=300)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    out.print(f"worker log: {log_path}", markup=False)
    outbox = settings.mail_url.split(":", 1)[1]
    out.print(f"the messages are in the Maildir outbox {settings.path(outbox) / 'new'}", markup=False)


@app.command()
def send(campaign: Annotated[int, typer.Argument(help="A draft campaign (NEWSLETTER_AUTO_SEND=false).")]) -> None:
    """Send a draft campaign: freeze its audience now and queue it."""
    from .db import session_scope
    from .ledger import freeze_audience, get_campaign
    from .publish import start

    settings = _ready()
    with session_scope(settings) as session:
        c = get_campaign(session, campaign)
        if c.status != "draft":
            fail(f"campaign {campaign} is not a draft ({c.status})")
        added = freeze_audience(session, c)
    start(campaign)
    out.print(f"campaign {campaign} queued for {added} subscribers", markup=False)


@app.command()
def poll(
    feed: Annotated[Optional[str], typer.Argument(help="One feed URL or file (default: NEWSLETTER_FEEDS "
                                                       "and NEWSLETTER_EPISODES_DIR).")] = None,
    send_backlog: Annotated[bool, typer.Option("--send-backlog", help="On a feed's first poll, send its "
                                               "existing items too (normally only recorded as seen).")] = False,
) -> None:
    """One polling pass by hand: new episodes become campaigns."""
    from .feeds import poll_all, poll_feed

    settings = _ready()
    if feed:
        reports = [poll_feed(feed, settings, send_backlog=send_backlog).as_dict()]
    else:
        reports = poll_all(settings)["reports"]
    failed = False
    for r in reports:
        if r["error"]:
            failed = True
            err.print(f"{r['source']}: {r['error']}", markup=False, highlight=False)
        else:
            note = " (first poll: back catalogue recorded, nothing sent)" if r["primed"] and not send_backlog else ""
            out.print(f"{r['source']}: {len(r['new'])} new, {r['seen']} already seen{note}",
                      markup=False, highlight=False)
            for slug in r["new"]:
                out.print(f"  new: {slug}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command("send-test")
def send_test_cmd(
    episode: Annotated[Path, typer.Argument(help="Episode file.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient on NEWSLETTER_STAFF_ALLOWLIST (repeatable).")],
    as_of: Annotated[Optional[str], typer.Option("--as-of")] = None,
) -> None:
    """Send the email to staff, marked [TEST]; never touches the campaign ledger."""
    from .episodes import load_episode
    from .staff import send_test

    settings = _ready()
    ep = load_episode(episode, settings.tz)
    results = send_test(ep, to, settings, requested_by="cli")
    for r in results:
        out.print(f"{r.recipient}: {'sent ' + (r.message_id or '') if r.ok else 'FAILED ' + (r.error or '')}",
                  markup=False, highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def web(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the episode archive, unsubscribe pages and staff tools."""
    import uvicorn

    from .web import create_app

    settings = _ready()
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True, log_level="info")


if __name__ == "__main__":  # pragma: no cover
    main()
