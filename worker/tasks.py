"""Celery tasks: thin, ID-only wrappers around plain functions."""

from __future__ import annotations

import logging

from celery.signals import worker_process_shutdown

from .celery import app
from .db import session_scope
from .errors import TemporaryFailure
from .feeds import poll_all
from .ledger import sweep as sweep_ledger
from .queue import enqueue, follow_up
from .sending import Sender
from .settings import get_settings

log = logging.getLogger(__name__)
_sender: Sender | None = None
# Bounds of a follow-up's countdown, seconds: not a busy loop when a retry is already overdue
# (another worker holds it), and far below the broker's visibility timeout.
FOLLOW_UP_MIN = 0.2
FOLLOW_UP_MAX = 900.0


def sender() -> Sender:
    """One Sender (and so one SMTP connection) per worker process."""
    global _sender
    if _sender is None:
        _sender = Sender(get_settings())
    return _sender


@worker_process_shutdown.connect
def close_sender(**_: object) -> None:
    """A pool process that exits ends its SMTP session with QUIT instead of just dropping it."""
    global _sender
    if _sender is not None:
        _sender.close()
        _sender = None


@app.task(acks_late=True, reject_on_worker_lost=True)
def send_batch(campaign_id: int) -> dict:
    """Send due deliveries of one campaign for up to a minute, then hand over to a fresh task."""
    outcome = sender().run(campaign_id, time_budget=60.0)
    if outcome.batches and outcome.claimed and not outcome.stopped:
        # More may be waiting; a new message keeps each task short and the queue fair. Its
        # run, or the one after, ends with nothing due and takes over the branch below.
        follow_up(campaign_id)
    elif outcome.next_due_in is not None:
        # Rows wait for a retry (ours or anyone's): come back when the ledger says the first
        # is due, and so on until none waits. Each task leaves at most one successor, so the
        # number of waiting tasks never grows; beat's sweep is only the safety net.
        follow_up(campaign_id, countdown=min(max(FOLLOW_UP_MIN, outcome.next_due_in), FOLLOW_UP_MAX))
    return {"sent": outcome.sent, "retry": outcome.retry, "failed": outcome.failed}


@app.task
def sweep() -> dict:
    """Beat, every NEWSLETTER_SWEEP_INTERVAL: recover dead claims, finish campaigns, re-enqueue lost work."""
    with session_scope() as session:
        report = sweep_ledger(session, get_settings())
    for campaign_id in report.need_work:
        enqueue(campaign_id)
    return {"requeued": report.requeued, "uncertain": report.uncertain, "finished": report.finished}


@app.task
def poll_bounces() -> dict:
    """Beat, every NEWSLETTER_BOUNCE_POLL_INTERVAL when NEWSLETTER_BOUNCE_MAILBOX is set: read
    returned mail and record its bounces."""
    from .bounces.mailbox import poll_mailbox

    result = poll_mailbox(get_settings())
    return {"messages": result.messages, "recorded": result.recorded, "effects": result.effects}


@app.task
def poll() -> dict:
    """Beat, every NEWSLETTER_POLL_INTERVAL: look for new episodes in feeds and the drop folder."""
    return poll_all(get_settings())


@app.task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TemporaryFailure,),
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=6,
)
def send_joining_email(kind: str, subscriber_id: int) -> bool:
    """One confirmation or welcome email (`worker.joining_mail`). 4xx and dropped connections are
    retried with backoff (delays far below the broker's visibility timeout)."""
    from .joining_mail import send_joining_email as send

    return send(get_settings(), kind, subscriber_id)
