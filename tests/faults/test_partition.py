"""A worker that stops hearing from PostgreSQL must not send what its lease no longer covers.

The worker reaches the database through a relay that, at the fault, keeps passing the worker's
statements on but holds every reply (a one-way partition: the kind TCP keepalives cannot see,
since the worker's own link is fine). Its row is then durably 'sending' while it waits to hear
so. A sweeper on a healthy host sees the claim's heartbeat stop, marks the row uncertain after
the lease, and an operator resends uncertain rows, which a healthy worker delivers. When the
replies flow again, the cut-off worker must not send that message a second time: it gives up
on its claim once the lease since its last confirmed heartbeat has run out (issue 16).
"""

from __future__ import annotations

import re
import time

from sqlalchemy import select
from sqlalchemy.engine import make_url

from worker.db import dispose_engines, migrate, session_scope
from worker.episodes import load_episode
from worker.ledger import resend_uncertain, sweep
from worker.models import Delivery
from worker.publish import publish_episode
from worker.settings import get_settings, reset_settings

from ..factories import campaign_status, seed_subscribers
from ..relay import Relay
from ..stack import wait_for

LEASE = 3.0


SESSIONS = 3  # sending sessions of the cut-off worker: each may have one row in flight


def completed_batches(log: str) -> int:
    return len(re.findall(r"send_batch\[[^\]]+\] (?:succeeded|raised)", log))


def test_a_worker_that_stops_hearing_the_database_sends_nothing_its_lease_no_longer_covers(
    postgres_url, redis_url, smtp_server, stack, seed_path, monkeypatch
):
    for key, value in {
        "NEWSLETTER_CLAIM_LEASE": str(LEASE),
        "NEWSLETTER_SEND_RATE": "100",
        "NEWSLETTER_BATCH_SIZE": "50",
        "NEWSLETTER_SWEEP_INTERVAL": "3600",  # this test sweeps, at the moments it chooses
        "NEWSLETTER_SESSIONS_PER_WORKER": str(SESSIONS),
        "NEWSLETTER_SESSIONS_AUTO": "false",
    }.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    dispose_engines()
    settings = get_settings()
    migrate(settings)
    emails = seed_subscribers(300)
    handler = smtp_server.handler
    url = make_url(postgres_url)
    with Relay((url.host, url.port or 5432)) as relay:
        relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        cut_off = stack.start_worker(concurrency=1, env={"NEWSLETTER_DATABASE_URL": relayed})
        log = stack.log_dir / "worker-1.log"
        cid = publish_episode(load_episode(seed_path, settings.tz), settings).campaign.id
        wait_for(lambda: len(handler.received) >= 60, 60, "60 messages", details=stack.logs)
        relay.hold = True  # its statements still land; it hears nothing back
        held_at = time.monotonic()
        # only the cut-off worker runs yet: these connections are its sessions
        with handler.lock:
            its_connections = {r.peer for r in handler.received}
        done_before = completed_batches(log.read_text())

        def swept_uncertain() -> int:
            with session_scope() as s:
                return sweep(s, get_settings()).uncertain

        # the lease runs out on the database's clock; the rows its sessions were about to send
        # (one each at most) are uncertain
        uncertain = wait_for(swept_uncertain, 4 * LEASE, "the cut-off worker's rows to be marked uncertain")
        assert 1 <= uncertain <= SESSIONS
        with session_scope() as s:
            resent = set(s.scalars(select(Delivery.email).where(Delivery.status == "uncertain")))
            assert resend_uncertain(s, cid) == uncertain  # the operator's `newsletter resend --uncertain`
        stack.start_worker(concurrency=1)  # a healthy host finishes the campaign
        wait_for(lambda: campaign_status(cid)["state"] == "done", 60, "the campaign to finish",
                 details=stack.logs)  # fmt: skip
        relay.hold = False  # the replies flow again
        wait_for(lambda: completed_batches(log.read_text()) > done_before, 30,
                 "the cut-off worker to end its batch", details=stack.logs)  # fmt: skip
        assert cut_off.poll() is None
    got = handler.per_recipient()
    assert sorted(got) == sorted(emails)
    late = [r.rcpt for r in handler.received if r.peer in its_connections and r.at > held_at + LEASE]
    assert late == [], "the cut-off worker sent past its lease"
    # An uncertain row may have been delivered before the lease ran out (its "sent" write was
    # what went unanswered); the operator's resend can then deliver it twice, and nothing else.
    assert {e for e, n in got.items() if n > 1} <= resent
    assert all(n <= 2 for n in got.values())
    assert "no longer covered by its claim" in log.read_text()
