"""The Celery app: `celery -A worker worker` and `celery -A worker beat`.

Tasks carry IDs only. Messages are acknowledged late and rejected (so redelivered) when the
worker process dies; that is safe because a task only ever claims rows from the ledger.
"""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import worker_process_init

from .errors import SettingsError
from .settings import get_settings

# Redis redelivers a message nobody acknowledged within this many seconds. Every delay we
# schedule (retries, countdowns) stays well below it, or tasks would run twice.
VISIBILITY_TIMEOUT = 3600


def transport_options(broker_url: str) -> dict[str, int]:
    """The kombu transport options for this broker: only Redis knows a visibility timeout (the
    SQLAlchemy transport passes its options to create_engine, which refuses unknown ones)."""
    return {"visibility_timeout": VISIBILITY_TIMEOUT} if broker_url.startswith(("redis", "rediss")) else {}


def make_app() -> Celery:
    """The Celery app from the settings; a bad setting stops the worker with one line, exit 2."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.retry_max_delay >= VISIBILITY_TIMEOUT / 2:
        raise ValueError("NEWSLETTER_RETRY_MAX_DELAY must stay below half the broker visibility timeout")
    app = Celery("worker", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_default_queue="newsletter",
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings.broker_url),
        worker_hijack_root_logger=False,
        timezone="UTC",
        beat_schedule={
            "sweep": {"task": "worker.tasks.sweep", "schedule": float(settings.sweep_interval)},
            "poll": {"task": "worker.tasks.poll", "schedule": float(settings.poll_interval)},
            **(
                {"bounces": {"task": "worker.tasks.poll_bounces", "schedule": float(settings.bounce_poll_interval)}}
                if settings.bounce_mailbox
                else {}
            ),
        },
        beat_schedule_filename=str(settings.path(settings.var_dir) / "celerybeat-schedule"),
    )
    return app


app = make_app()


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:  # noqa: ANN003
    # Connections opened before the fork belong to the parent; never share them.
    from .db import dispose_engines

    dispose_engines()
