"""Campaign commands: `publish`, `status`, `send`, `resend`, `sweep` and `demo`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..ledger import CampaignReport
from ..ledger.overview import CampaignLine
from ..models import CampaignStatus, DeliveryStatus
from ..settings import get_settings
from ._common import CampaignArg, app, campaign_arg, err, fail, out, parse_as_of, ready


@app.command()
def publish(
    episode: Annotated[Path, typer.Argument(help="Episode file.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the campaign is done.")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Send time for the event check (default now).")] = None,
    timeout: Annotated[float, typer.Option(help="With --wait: give up waiting after this many seconds.", min=0)] = 0,
    draft: Annotated[
        bool, typer.Option("--draft", help="Make it a draft: nothing is sent until `newsletter send CAMPAIGN`.")
    ] = False,
) -> None:
    """Publish an episode: one campaign, every active subscriber once (with --draft: kept until
    `newsletter send`, as feeds and the drop folder do with NEWSLETTER_AUTO_SEND=false)."""
    from ..publish import publish_file

    settings = ready()
    result = publish_file(episode, settings, as_of=parse_as_of(as_of), draft=draft)
    c = result.campaign
    if result.created and draft:
        out.print(
            f"campaign {c.id}: {result.episode.title}: a draft; `newsletter send {c.id}` sends it",
            markup=False,
            highlight=False,
        )
    elif result.created:
        out.print(f"campaign {c.id}: {result.episode.title} → {c.total} subscribers", markup=False, highlight=False)
    else:
        out.print(
            f"already published as campaign {c.id} ({c.status}); nothing new was queued", markup=False, highlight=False
        )
    if wait:
        _wait(c.id, timeout)


def _wait(campaign_id: int, timeout: float = 0) -> CampaignReport:
    """Show a progress bar (on a terminal) until the campaign is done or `timeout` seconds pass
    (0: no limit); then print its status. Returns the last report."""
    import time as _time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..db import session_scope
    from ..ledger import status as campaign_status

    settings = get_settings()
    started = _time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"campaign {campaign_id}", total=None)
        while True:
            with session_scope(settings) as session:
                st = campaign_status(session, campaign_id)
            c = st.counts
            progress.update(
                task,
                total=st.total,
                completed=st.settled,
                description=f"campaign {campaign_id}: {c.sent} sent, {c.retry} retrying, {c.failed} failed",
            )
            if st.state in (CampaignStatus.DONE, CampaignStatus.PAUSED) or (st.total and st.settled == st.total):
                break
            if timeout and _time.monotonic() - started > timeout:
                err.print("still sending; `newsletter status` shows progress", markup=False)
                break
            _time.sleep(0.3)  # polling the ledger for a progress bar
    _print_status(st)
    return st


def _print_status(st: CampaignReport) -> None:
    table = Table(show_header=True, box=None)
    shown = [
        DeliveryStatus(s) for s in ("sent", "queued", "claimed", "sending", "retry", "failed", "uncertain", "skipped")
    ]
    for s in shown:
        table.add_column(str(s), justify="right")
    table.add_row(*(str(st.counts[s]) for s in shown))
    out.print(
        f"campaign {st.campaign} ({st.episode}): {st.state}, {st.total} recipients"
        + (f", about {st.eta_seconds:.0f}s to go" if st.eta_seconds else ""),
        markup=False,
        highlight=False,
    )
    out.print(table)
    if st.reason:
        out.print(
            f"sending stopped: {st.reason} (fix it, then `newsletter send {st.campaign}`)",
            markup=False,
            highlight=False,
        )
    if st.feedback:
        reports = ", ".join(f"{n} {k}" for k, n in st.feedback.items())
        # These come from the mail system (webhooks, returned mail) and later unsubscribes, not
        # from sending: a Maildir or plain SMTP send reports no deliveries, hence the label.
        out.print(f"reports after sending: {reports}", markup=False, highlight=False)
    if st.counts.uncertain:
        out.print(
            f"{st.counts.uncertain} uncertain: `newsletter resend {st.campaign} --uncertain` resends them "
            "with the same Message-ID",
            markup=False,
            highlight=False,
        )


@app.command()
def status(
    campaign: Annotated[int | None, campaign_arg("Campaign id (default: the latest, after a list).")] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object: the campaign's counts, recent campaigns, feeds and whether a worker is seen.",
        ),
    ] = False,
) -> None:
    """Counts per delivery status, an ETA while sending, recent campaigns and failing feeds."""
    from ..db import session_scope
    from ..feeds import feed_health
    from ..ledger import status as campaign_status
    from ..ledger.overview import no_worker_seen, recent_campaigns

    settings = ready()
    with session_scope(settings) as session:
        recent = recent_campaigns(session) if campaign is None else []
        if campaign is None and recent:
            campaign = recent[0].campaign
        st = campaign_status(session, campaign) if campaign is not None else None
        # A sending campaign with queued rows and no sign of a worker for a claim lease.
        idle = st is not None and no_worker_seen(session, st.campaign, settings.claim_lease)
        feeds = feed_health(session)
    if as_json:
        shown = st.as_dict() if st else {"campaign": None}
        print(json.dumps({**shown, "no_worker": idle, "recent": [r.as_dict() for r in recent], "feeds": feeds}))
        return
    if len(recent) > 1:
        _print_recent(recent)
    if st is None:
        out.print("no campaigns yet: `newsletter publish EPISODE` makes one", markup=False, highlight=False)
    else:
        _print_status(st)
    if idle and st is not None:
        out.print(
            f"no worker seems to be running: {st.counts.queued} rows queued and no progress for over "
            f"{settings.claim_lease:.0f} s (start one: celery -A worker worker)",
            markup=False,
            highlight=False,
        )
    for f in feeds:
        if f["last_error"]:
            out.print(
                f"feed {f['url']}: failing since {f['failures']} polls: {f['last_error']}",
                markup=False,
                highlight=False,
            )


def _print_recent(recent: list[CampaignLine]) -> None:
    table = Table(show_header=True, box=None, title="recent campaigns", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("episode")
    table.add_column("state")
    table.add_column("sent", justify="right")
    table.add_column("created")
    for r in recent:
        created = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else ""
        table.add_row(str(r.campaign), r.episode or "", str(r.state), f"{r.sent}/{r.total}", created)
    out.print(table)
    out.print()


@app.command()
def resend(
    campaign: CampaignArg,
    uncertain: Annotated[
        bool, typer.Option("--uncertain", help="The deliveries left uncertain, with the same Message-ID.")
    ] = False,
    failed: Annotated[
        bool,
        typer.Option("--failed", help="The deliveries that failed on temporary errors (as `campaigns retry-failed`)."),
    ] = False,
) -> None:
    """Send again what did not surely arrive: uncertain deliveries (a worker died mid-message, or a
    server never answered the final dot) and/or those that failed on temporary errors. Addresses
    that bounced or unsubscribed are never resent."""
    from ..db import session_scope
    from ..ledger import resend_uncertain
    from ..ledger.control import retry_failed
    from ..publish import start

    if not (uncertain or failed):
        fail("say what to resend: --uncertain, --failed or both")
    settings = ready()
    with session_scope(settings) as session:
        n_uncertain = resend_uncertain(session, campaign) if uncertain else 0
        n_failed = retry_failed(session, campaign) if failed else 0
    if n_uncertain or n_failed:
        start(campaign)
    for asked, n, what in ((uncertain, n_uncertain, "uncertain"), (failed, n_failed, "failed")):
        if asked:
            out.print(f"{n} {what} deliver{'y' if n == 1 else 'ies'} queued again", markup=False)


@app.command()
def sweep() -> None:
    """Recover dead claims and finish done campaigns now (beat does this every 15 s)."""
    from ..db import session_scope
    from ..ledger import sweep as sweep_ledger
    from ..publish import start

    settings = ready()
    with session_scope(settings) as session:
        report = sweep_ledger(session, settings)
    for campaign_id in report.need_work:
        start(campaign_id)
    finished = ", ".join(str(c) for c in report.finished) or "none"
    out.print(f"requeued {report.requeued}, uncertain {report.uncertain}, campaigns finished: {finished}", markup=False)


@app.command()
def send(
    campaign: Annotated[int, campaign_arg("A draft campaign (NEWSLETTER_AUTO_SEND=false).")],
) -> None:
    """Send a draft (or scheduled) campaign now: rendered as of now, its audience frozen, its work
    queued. A paused campaign (its transport was misconfigured) resumes. The same as `campaigns
    send` and `campaigns resume`, in one command."""
    from .. import control
    from ..db import session_scope
    from ..ledger import get_campaign

    settings = ready()
    with session_scope(settings) as session:
        paused = get_campaign(session, campaign).status == CampaignStatus.PAUSED
    if paused:
        control.resume(settings, campaign)
        out.print(f"campaign {campaign} resumed", markup=False)
        return
    report = control.send_now(settings, campaign)
    out.print(f"campaign {campaign} queued for {report.total} subscribers", markup=False)


@app.command()
def demo(
    episode: Annotated[Path | None, typer.Option(help="Episode to send (default: the sample).")] = None,
    subscribers: Annotated[Path | None, typer.Option(help="Subscribers to import (default: the sample list).")] = None,
) -> None:
    """The whole job on embedded defaults: import, publish, run a worker until done."""
    import subprocess

    from ..episodes import load_episode
    from ..settings import BASE_DIR, CONFIG_DIR
    from .subscribers import subscribers_import

    settings = ready()
    episode = episode or CONFIG_DIR / "sample-episode.txt"
    subscribers = subscribers or CONFIG_DIR / "subscribers.csv"
    subscribers_import(subscribers)
    ep = load_episode(episode, settings.tz)
    # The sample's event is in the past; send "as of" the episode's date so the demo shows it.
    as_of = datetime.combine(ep.date, datetime.min.time(), settings.tz).isoformat()
    log_path = settings.path(settings.var_dir) / "worker.log"
    with open(log_path, "ab") as log_file:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "--quiet",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=BASE_DIR,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            publish(episode, wait=True, as_of=as_of, timeout=300)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    out.print(f"worker log: {log_path}", markup=False)
    outbox = settings.mail_url.split(":", 1)[1]
    out.print(f"the messages are in the Maildir outbox {settings.path(outbox) / 'new'}", markup=False)
