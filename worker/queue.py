"""Queueing work for the Celery worker by task name, so producers never import `worker.tasks`.

Publishing, the feeds poller, the CLI and the web side only say "campaign N has work": a task
message carries the campaign id and nothing else; the ledger says what to send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import get_settings

if TYPE_CHECKING:
    from kombu import Connection

# The names `worker.tasks` registers (Celery's default: module path and function name).
SEND_BATCH = "worker.tasks.send_batch"
SWEEP = "worker.tasks.sweep"
POLL = "worker.tasks.poll"
SEND_JOINING_EMAIL = "worker.tasks.send_joining_email"

# Tasks a campaign starts with: each claims batches until the campaign runs dry.
START_PARALLEL = 4


def _connection() -> Connection:
    """A connection to the broker the settings name now, with that broker's transport options,
    not the one the app saw at import (whose options may not fit it: Redis's visibility timeout
    breaks the SQLAlchemy transport), so a long-lived caller (the web process, the test suite)
    follows its settings."""
    from kombu import Connection

    from .celery import transport_options

    url = get_settings().resolved_broker_url
    return Connection(url, transport_options=transport_options(url))


def enqueue(campaign_id: int, parallel: int = START_PARALLEL) -> None:
    """Start sending a campaign: `parallel` send-batch tasks (on `_connection`). Raises what
    kombu raises when the broker cannot be reached (the caller decides: see
    `worker.publish.start`)."""
    from .celery import app  # built on first use: commands that queue nothing never need it

    with _connection() as conn:
        for _ in range(parallel):
            app.send_task(SEND_BATCH, args=(campaign_id,), connection=conn)


def follow_up(campaign_id: int, countdown: float | None = None) -> None:
    """One more send-batch task for the campaign, after `countdown` seconds (None: now)."""
    from .celery import app

    app.send_task(SEND_BATCH, args=(campaign_id,), countdown=countdown)


def joining_emails(kind: str, subscriber_ids: list[int]) -> None:
    """One `send_joining_email` task per subscriber: `kind` is "confirm" or "welcome"
    (`worker.joining_mail`). Raises what kombu raises when the broker cannot be reached."""
    from .celery import app

    with _connection() as conn:
        for sid in subscriber_ids:
            app.send_task(SEND_JOINING_EMAIL, args=(kind, sid), connection=conn)


def poll_now() -> None:
    """One pass over every feed and the drop folder, now (the beat task, queued by hand: the
    console's "Poll now"). Raises what kombu raises when the broker cannot be reached."""
    from .celery import app

    with _connection() as conn:
        app.send_task(POLL, connection=conn)
