"""Retries finish a campaign on their own: no beat, no sweeper, only workers.

A batch that records 4xx failures must leave a follow-up for the ledger's next due time, and so
must every follow-up, until no row waits for a retry (issue 16: before, one follow-up was
scheduled for the earliest retry and the rows due seconds later waited for the sweeper).
"""

from __future__ import annotations

from worker.episodes import load_episode
from worker.publish import publish_episode
from worker.settings import get_settings, reset_settings

from ..factories import seed_subscribers, wait_done
from ..smtp_server import FaultyHandler, SMTPServer


def test_a_campaign_with_retries_finishes_without_beat(postgres_url, redis_url, stack, seed_path, monkeypatch):
    from worker.db import dispose_engines, migrate

    handler = FaultyHandler()
    # every 7th subscriber's first RCPT is answered 451, as in the reproduction
    handler.tempfail.update({f"reader{i}@example.org": 1 for i in range(0, 400, 7)})
    with SMTPServer(handler) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        monkeypatch.setenv("NEWSLETTER_RETRY_BASE_DELAY", "3")
        monkeypatch.setenv("NEWSLETTER_RETRY_MAX_DELAY", "6")
        monkeypatch.setenv("NEWSLETTER_MAX_ATTEMPTS", "30")
        monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "100")
        # The sweeper would hide the bug; nothing runs it here (no beat), and a long interval
        # says so to anyone reading the logs.
        monkeypatch.setenv("NEWSLETTER_SWEEP_INTERVAL", "3600")
        reset_settings()
        dispose_engines()
        migrate(get_settings())
        emails = seed_subscribers(400)
        stack.start_worker()  # and no beat
        settings = get_settings()
        cid = publish_episode(load_episode(seed_path, settings.tz), settings).campaign.id
        # 400 messages, 58 of them refused once, retry delays of 1.5-6 s: well under
        # a minute when follow-ups chase the ledger's due times; never when they do not.
        st = wait_done(cid, timeout=90, stack=stack)
        got = handler.per_recipient()
        assert sum(handler.attempts.values()) == 400 + len(range(0, 400, 7))
        assert st["sent"] == 400 and st["retry"] == 0 and st["failed"] == 0 and st["uncertain"] == 0
        assert sorted(got) == sorted(emails) and set(got.values()) == {1}
