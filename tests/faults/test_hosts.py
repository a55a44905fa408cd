"""The multi-host fault suite: two worker hosts (network namespaces with their own addresses)
reach PostgreSQL, Redis and the SMTP server over veth links; beat runs on host b.

Each scenario sends a 2,000-subscriber campaign through a fault and reports delivered once /
duplicates / missing / uncertain (printed, and appended to $FAULTS_REPORT as JSON lines). The
promises (issue 16): 0 missing without a record; duplicates no more than the SMTP sessions cut
off mid-message; every uncertain row reported by `newsletter status`; the campaign finishes
with nobody stepping in. Where namespaces cannot be made the suite fails saying so: it needs
root, as CI has.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from worker.db import dispose_engines, migrate, session_scope
from worker.episodes import load_episode
from worker.ledger import status
from worker.models import Delivery
from worker.publish import publish_episode
from worker.settings import get_settings, reset_settings

from ..factories import seed_subscribers
from ..smtp_server import FaultyHandler, free_port
from ..stack import Stack, wait_for
from .hosts import SERVICES, Network, PostgresCluster, RedisServer, pause, skewed_clock

N = 2000
LEASE = 3.0  # NEWSLETTER_CLAIM_LEASE: short, so faults outlast it
SMTP_TIMEOUT = 3.0
SESSIONS = 4  # sending sessions per worker process: each may have one message in flight
FAULT_ENV = {
    "NEWSLETTER_CLAIM_LEASE": str(LEASE),
    "NEWSLETTER_SWEEP_INTERVAL": "1",
    "NEWSLETTER_RETRY_BASE_DELAY": "0.2",
    "NEWSLETTER_RETRY_MAX_DELAY": "1",
    "NEWSLETTER_MAX_ATTEMPTS": "30",
    "NEWSLETTER_BATCH_SIZE": "50",
    "NEWSLETTER_SMTP_TIMEOUT": str(SMTP_TIMEOUT),
    # ~10 s of sending: long enough for a fault to land mid-campaign
    "NEWSLETTER_SEND_RATE": "200",
    "NEWSLETTER_SESSIONS_PER_WORKER": str(SESSIONS),
    "NEWSLETTER_SESSIONS_AUTO": "false",  # all of them, even on loopback
}


@pytest.fixture(scope="module")
def services():
    with Network(("a", "b")) as net, PostgresCluster() as pg:
        yield net, pg


class TarpitHandler(FaultyHandler):
    """`tarpit` recipients: the server takes the whole message, then says nothing for `stall`
    seconds (past the client's timeout), then keeps it anyway, as a server may that accepted
    a message whose reply never arrived (RFC 1047)."""

    def __init__(self, **kw):  # noqa: ANN003
        super().__init__(**kw)
        self.tarpit: set[str] = set()
        self.stall = SMTP_TIMEOUT + 2
        self.tarpitted = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        with self.lock:
            hit = [r for r in rcpts if r in self.tarpit]
            self.tarpit.difference_update(hit)
            self.tarpitted += len(hit)
        if hit:
            await asyncio.sleep(self.stall)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Hosts:
    net: Network
    pg: PostgresCluster
    redis: RedisServer
    handler: TarpitHandler
    stack: Stack
    seed_path: object

    def start(self, skew: dict[str, str] | None = None) -> None:
        """A worker on each host (one process each), beat on host b; `skew` gives a host a
        faketime offset, e.g. {"a": "-10m"}."""
        for host in self.net.hosts:
            env = skewed_clock(skew[host]) if skew and host in skew else None
            self.stack.start_worker(concurrency=1, prefix=self.net.prefix(host), env=env)
        self.stack.start_beat(prefix=self.net.prefix("b"))

    def publish(self) -> tuple[list[str], int]:
        emails = seed_subscribers(N)
        settings = get_settings()
        return emails, publish_episode(load_episode(self.seed_path, settings.tz), settings).campaign.id

    def received(self) -> int:
        return len(self.handler.received)

    def wait_received(self, n: int) -> None:
        wait_for(lambda: self.received() >= n, 60, f"{n} messages", details=self.stack.logs)

    def wait_done(self, cid: int, timeout: float = 150) -> dict:
        def done():  # noqa: ANN202
            with session_scope() as s:
                st = status(s, cid).as_dict()
            return st if st["state"] == "done" else None

        return wait_for(done, timeout, f"campaign {cid} to finish", interval=0.5, details=lambda: self.stack.logs())

    def report(self, name: str, emails: list[str], cid: int, *, cut_sessions: int, st: dict) -> dict:
        got = self.handler.per_recipient()
        with session_scope() as s:
            rows = {d.email: d.status for d in s.scalars(select(Delivery).where(Delivery.campaign_id == cid))}
        figures = {
            "scenario": name,
            "subscribers": len(emails),
            "delivered_once": sum(1 for e in emails if got.get(e) == 1),
            "duplicates": sum(n - 1 for n in got.values() if n > 1),
            "missing": sum(1 for e in emails if e not in got and rows.get(e) not in ("uncertain", "failed")),
            "without_record": sum(1 for e in emails if e not in rows),
            "uncertain": sum(1 for v in rows.values() if v == "uncertain"),
            "cut_sessions": cut_sessions,
        }
        print(f"\n{json.dumps(figures)}")
        if path := os.environ.get("FAULTS_REPORT"):
            with open(path, "a") as fh:
                fh.write(json.dumps(figures) + "\n")
        assert figures["without_record"] == 0 and figures["missing"] == 0, figures
        assert figures["duplicates"] <= cut_sessions, figures
        assert st["uncertain"] == figures["uncertain"], (st, figures)  # every uncertain row is reported
        return figures


@pytest.fixture
def hosts(services, stack, seed_path, monkeypatch, request):
    net, pg = services
    database = "f_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40]
    handler = TarpitHandler()
    port = free_port()
    controller = Controller(handler, hostname=SERVICES, port=port, data_size_limit=10 * 1024 * 1024)
    with RedisServer() as redis:
        controller.start()
        try:
            env = {
                **FAULT_ENV,
                "NEWSLETTER_DATABASE_URL": pg.create_database(database),
                "NEWSLETTER_BROKER_URL": redis.url,
                "NEWSLETTER_MAIL_URL": f"smtp://{SERVICES}:{port}?starttls=off",
            }
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            reset_settings()
            dispose_engines()
            migrate(get_settings())
            yield Hosts(net, pg, redis, handler, stack, seed_path)
        finally:
            stack.stop()  # before the services they talk to go
            for host in net.hosts:
                net.restore(host)
            controller.stop()
            dispose_engines()


def test_a_worker_host_cut_off_for_longer_than_the_lease(hosts):
    hosts.start()
    emails, cid = hosts.publish()
    hosts.wait_received(500)
    hosts.net.cut("a")
    pause(3 * LEASE)  # host a's claims expire; host b and the sweeper carry on
    hosts.net.restore("a")
    st = hosts.wait_done(cid)
    # host a had one process: at most one message per session of its was cut off mid-way
    hosts.report(
        f"worker host's link cut for {3 * LEASE:.0f} s (lease {LEASE:.0f} s), then restored",
        emails,
        cid,
        cut_sessions=SESSIONS,
        st=st,
    )


def test_a_worker_host_ten_minutes_behind(hosts):
    hosts.start(skew={"a": "-10m"})
    emails, cid = hosts.publish()
    st = hosts.wait_done(cid)
    figures = hosts.report("one worker host's clock 10 minutes behind", emails, cid, cut_sessions=0, st=st)
    assert figures["uncertain"] == 0 and figures["delivered_once"] == N
    assert "back in the queue" not in hosts.stack.logs()  # no live claim was taken for a dead one


def test_postgresql_restarted_mid_campaign(hosts):
    hosts.start()
    emails, cid = hosts.publish()
    hosts.wait_received(500)
    hosts.pg.stop("immediate")  # the server process goes, as in a crash; then it comes back
    pause(2)
    hosts.pg.start()
    dispose_engines()  # this process's own pooled connections died with it
    st = hosts.wait_done(cid)
    # a session whose database went away mid-message leaves that row uncertain, never sends it twice
    figures = hosts.report(
        "PostgreSQL restarted mid-campaign (immediate stop, 2 s down)", emails, cid, cut_sessions=0, st=st
    )
    assert figures["uncertain"] <= 2 * SESSIONS  # two processes


def test_redis_down_for_longer_than_a_retry_delay(hosts):
    emails_tempfail = {f"reader{i}@example.org": 1 for i in range(0, N, 25)}
    hosts.handler.tempfail.update(emails_tempfail)  # retries are waiting when Redis goes
    hosts.start()
    emails, cid = hosts.publish()
    hosts.wait_received(500)
    hosts.redis.stop()  # no persistence: every queued task is lost with it
    pause(3)  # retry delays here are 0.2-1 s
    hosts.redis.start()
    st = hosts.wait_done(cid)
    figures = hosts.report(
        "Redis down 3 s mid-campaign (queue lost), retries pending", emails, cid, cut_sessions=0, st=st
    )
    assert figures["delivered_once"] == N and figures["uncertain"] == 0


def test_smtp_server_stops_answering_mid_data(hosts):
    stalled = {f"reader{i}@example.org" for i in (600, 1200, 1800)}
    hosts.handler.tarpit.update(stalled)
    hosts.start()
    emails, cid = hosts.publish()
    st = hosts.wait_done(cid)
    figures = hosts.report(
        f"SMTP server silent in DATA past the {SMTP_TIMEOUT:.0f} s timeout (×3)",
        emails,
        cid,
        cut_sessions=hosts.handler.tarpitted,
        st=st,
    )
    # no reply to the final dot: the message may have been taken, so it is uncertain, not resent
    with session_scope() as s:
        uncertain = set(s.scalars(select(Delivery.email).where(Delivery.status == "uncertain")))
    assert hosts.handler.tarpitted == 3 and stalled <= uncertain and figures["duplicates"] == 0
    # (a loaded host may miss a heartbeat while a session waits out the stall: the sweeper then
    # calls another in-flight row uncertain, reported like the rest)
    assert figures["uncertain"] <= 3 + 2 * SESSIONS
