"""One clock for leases, heartbeats and due times: the database's (issue 16).

A worker whose host clock runs 10 minutes behind (libfaketime) sends beside one with the right
time while a host with the right time sweeps every half second with a lease of 10 s. With
heartbeats on the workers' own clocks, the sweeper took every claim of the slow clock for a dead
worker's; on the database's clock nothing is recovered, nothing is uncertain and everyone gets
one copy.
"""

from __future__ import annotations

from worker.episodes import load_episode
from worker.publish import publish_episode
from worker.settings import get_settings, reset_settings

from ..factories import campaign_status, seed_subscribers
from ..stack import wait_for
from .hosts import skewed_clock

N = 1000


def test_a_worker_ten_minutes_behind_is_not_taken_for_dead(
    postgres_url, redis_url, smtp_server, stack, seed_path, monkeypatch
):
    from worker.db import dispose_engines, migrate
    from worker.tasks import sweep as sweep_task

    for key, value in {
        "NEWSLETTER_CLAIM_LEASE": "10",  # far below the 10 min skew; wide enough for a loaded CI host
        "NEWSLETTER_SWEEP_INTERVAL": "1",
        "NEWSLETTER_SEND_RATE": "200",
        "NEWSLETTER_BATCH_SIZE": "50",
        "NEWSLETTER_RETRY_BASE_DELAY": "0.5",
        "NEWSLETTER_RETRY_MAX_DELAY": "1",
        "NEWSLETTER_MAX_ATTEMPTS": "10",
    }.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    dispose_engines()
    migrate(get_settings())
    emails = seed_subscribers(N)
    handler = smtp_server.handler
    handler.tempfail.update({e: 1 for e in emails[::20]})  # due times matter too
    behind = stack.start_worker(concurrency=1, env=skewed_clock("-10m"))
    stack.start_worker(concurrency=1)
    settings = get_settings()
    cid = publish_episode(load_episode(seed_path, settings.tz), settings).campaign.id
    recovered = []

    def swept_and_done() -> bool:
        # The sweep beat would run, here on this process's (right) clock.
        report = sweep_task()
        recovered.append(report["requeued"] + report["uncertain"])
        return campaign_status(cid)["state"] == "done"

    wait_for(
        swept_and_done,
        120,
        f"campaign {cid} to finish",
        interval=0.5,
        details=lambda: f"{campaign_status(cid)}\n{stack.logs()}",
    )
    st = campaign_status(cid)
    got = handler.per_recipient()
    logs = stack.logs()
    assert behind.poll() is None, logs
    assert st["sent"] == N and st["uncertain"] == 0 and st["failed"] == 0, st
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    # the sweeper never recovered a claim: no live worker was taken for a dead one
    assert len(recovered) > 5 and sum(recovered) == 0, recovered
    # and the slow clock did send its share
    assert (
        "ForkPoolWorker" in (stack.log_dir / "worker-1.log").read_text()
        and " sent, " in (stack.log_dir / "worker-1.log").read_text()
    )
