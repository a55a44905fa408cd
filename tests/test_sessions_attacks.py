"""Attacks on the multi-session streaming path (worker/sending.py with SMTP pipelining across
messages): faults while four sessions stream, in-process on PostgreSQL (SQLite has one session)."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy import text as sa_text

from worker.db import session_scope
from worker.models import Delivery
from worker.settings import get_settings, reset_settings

from .factories import make_campaign
from .test_dkim import dkim_key  # noqa: F401 - the fixture


@pytest.fixture
def four_sessions(postgres_url, monkeypatch):
    """PostgreSQL, four sessions forced (no measuring), retries due at once, small batches."""
    from worker.db import dispose_engines, migrate

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "4")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "16")
    monkeypatch.setenv("NEWSLETTER_RETRY_BASE_DELAY", "0.001")
    monkeypatch.setenv("NEWSLETTER_RETRY_MAX_DELAY", "0.001")
    monkeypatch.setenv("NEWSLETTER_MAX_ATTEMPTS", "50")
    reset_settings()
    dispose_engines()
    migrate(get_settings())
    yield
    dispose_engines()


def ledger(campaign_id: int) -> dict[str, str]:
    """email -> status of every delivery of the campaign."""
    from worker.models import Subscriber

    with session_scope() as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.campaign_id == campaign_id)
        ).all()
    return {e.lower(): str(st) for e, st in rows}


def run_until_settled(sender, campaign_id: int, rounds: int = 400) -> None:  # noqa: ANN001
    """Run batches until no row is left to send (retries are due at once)."""
    for _ in range(rounds):
        sender.run(campaign_id)
        states = Counter(ledger(campaign_id).values())
        if not (states["queued"] or states["retry"] or states["claimed"]):
            return
    raise AssertionError(f"not settled: {Counter(ledger(campaign_id).values())}")


def fails_then_settles(sender, campaign_id: int, match: str) -> tuple[Counter, list[str]]:  # noqa: ANN001
    """One run that fails with an error matching `match`; the ledger's statuses and the claims
    left right after it; then runs until the campaign is settled."""
    from worker.models import Claim

    with pytest.raises(Exception, match=match):
        sender.run(campaign_id)
    states = Counter(ledger(campaign_id).values())
    with session_scope() as s:
        claims = list(s.scalars(select(Claim.token)))
    run_until_settled(sender, campaign_id)
    return states, claims


def no_session_threads() -> bool:
    return not any(t.name.startswith(("send-session-", "ledger-progress")) for t in threading.enumerate())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_four_streaming_sessions_with_random_faults_send_each_subscriber_once(
    four_sessions, smtp_server, seed_path, seed
):
    """421/451 on 20% of commands and 5% of connections closed after the final dot, four
    sessions streaming: the ledger's 'sent' rows are exactly the messages the server accepted,
    each once; nothing is left 'sending' or 'uncertain' by a worker that survived."""
    from worker.sending import Sender

    cid = make_campaign(seed_path, 150)
    h = smtp_server.handler
    h.random_faults, h.drop_fraction = 0.2, 0.05
    h._rng.seed(seed)
    h.reply_delay = 0.002 * (seed - 1)  # loopback, then a little distance: other interleavings
    sender = Sender(get_settings())
    try:
        run_until_settled(sender, cid)
    finally:
        sender.close()
    got = h.per_recipient()
    states = ledger(cid)
    assert sender.sessions == 4
    assert max(got.values()) == 1
    assert {e for e, st in states.items() if st == "sent"} == set(got)
    assert Counter(states.values()) == {"sent": 150}
    assert no_session_threads()


def test_a_ledger_write_failing_mid_batch_stops_every_session_and_requeues_only_unsent_rows(
    four_sessions, smtp_server, seed_path, monkeypatch
):
    """The grouped write fails after it committed (the reply lost): every session stops, the
    rows of that group go back to the queue only if their content never left, the messages
    the server had accepted are recorded sent all the same, and no thread is left behind."""
    from worker.ledger.progress import PostgresProgress
    from worker.sending import Sender

    cid = make_campaign(seed_path, 60)
    real = PostgresProgress.write_group
    calls = Counter()

    def failing(self, writes):  # noqa: ANN001, ANN202
        calls["n"] += 1
        ours = real(self, writes)
        if calls["n"] == 6:
            raise RuntimeError("the database went away after the commit")
        return ours

    monkeypatch.setattr(PostgresProgress, "write_group", failing)
    sender = Sender(get_settings())
    try:
        with pytest.raises(RuntimeError, match="went away"):
            sender.run(cid)
        assert no_session_threads()
    finally:
        sender.close()
    got = smtp_server.handler.per_recipient()
    states = ledger(cid)
    assert max(got.values()) == 1
    # a row back in the queue never had its content sent; every message accepted is 'sent'
    assert not {e for e, st in states.items() if st == "queued"} & set(got)
    assert {e for e, st in states.items() if st == "sent"} == set(got)
    assert "sending" not in states.values()


def test_a_go_ahead_whose_commit_fails_sends_no_content(four_sessions, smtp_server, seed_path):
    """The grouped write's rows come back but its commit fails (a backend killed between the
    two, here a deferred trigger): the row is still only 'claimed', so its content must not
    leave; the batch stops, the row goes back to the queue and is sent once by the next run."""
    from worker.sending import Sender

    from .test_ledger import REFUSE_COMMIT_ONCE

    cid = make_campaign(seed_path, 40)
    with session_scope() as s:
        target = s.scalars(select(Delivery.id).where(Delivery.campaign_id == cid).order_by(Delivery.id)).all()[20]
        s.execute(sa_text(REFUSE_COMMIT_ONCE.format(id=target)))
    sender = Sender(get_settings())
    try:
        with pytest.raises(Exception, match="commit refused"):
            sender.run(cid)
        assert no_session_threads()
        run_until_settled(sender, cid)
    finally:
        sender.close()
    got = smtp_server.handler.per_recipient()
    assert len(got) == 40 and max(got.values()) == 1
    assert Counter(ledger(cid).values()) == {"sent": 40}


def test_a_database_outage_mid_batch_is_released_once_the_database_is_back(
    four_sessions, smtp_server, seed_path, monkeypatch
):
    """The database goes away mid-batch (every connection closed, new ones refused, for 1.5 s:
    a restart): the batch fails, but its release waits for the database and then records what
    only this process knows (the accepted messages 'sent', the unstarted rows back in the
    queue), so nothing is left for the sweeper to call uncertain."""
    from sqlalchemy.engine import make_url

    from worker.db import dispose_engines
    from worker.sending import Sender

    from .relay import Relay

    url = make_url(os.environ["NEWSLETTER_DATABASE_URL"])
    with Relay((url.host, url.port or 5432)) as relay:
        relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", relayed)
        reset_settings()
        dispose_engines()
        cid = make_campaign(seed_path, 80)
        h = smtp_server.handler
        timers: list[threading.Timer] = []

        def outage(_: list[str]) -> None:  # the server thread, before it answers the dot
            if len(h.received) == 19 and not timers:
                relay.cut()
                timers.append(threading.Timer(1.5, relay.restore))
                timers[0].start()

        h.on_data = outage
        sender = Sender(get_settings())
        try:
            with pytest.raises(Exception, match="(?i)connection|server|closed"):
                sender.run(cid)
            assert timers and no_session_threads()
            after_outage = Counter(ledger(cid).values())
            run_until_settled(sender, cid)
        finally:
            sender.close()
            for t in timers:
                t.join()
        assert not {"sending", "claimed", "uncertain"} & set(after_outage), after_outage
        got = h.per_recipient()
        assert len(got) == 80 and max(got.values()) == 1
        assert Counter(ledger(cid).values()) == {"sent": 80}


def test_a_ledger_writer_that_cannot_open_gives_the_claimed_batch_back(
    four_sessions, smtp_server, seed_path, monkeypatch
):
    """The batch's rows are claimed, then the writer's connection dies while it prepares its
    statements (the database going away between the two): nothing is sent and the rows go
    back to the queue at once, not after the claim lease. (Found by a break-it run.)"""
    import sqlalchemy as sa

    from worker.ledger.progress import PostgresProgress
    from worker.sending import Sender

    from .conftest import POSTGRES_TEST_URL

    cid = make_campaign(seed_path, 40)
    admin = sa.create_engine(POSTGRES_TEST_URL, isolation_level="AUTOCOMMIT")
    real = PostgresProgress._prepare
    killed: list[int] = []

    def prepare_on_a_dying_backend(self):  # noqa: ANN001, ANN202
        if not killed:
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": self._pq.backend_pid})
            killed.append(self._pq.backend_pid)
        return real(self)

    monkeypatch.setattr(PostgresProgress, "_prepare", prepare_on_a_dying_backend)
    sender = Sender(get_settings())
    try:
        states, claims = fails_then_settles(sender, cid, "(?i)terminat|connection|closed")
    finally:
        sender.close()
        admin.dispose()
    assert killed and states == {"queued": 40} and not claims, (states, claims)
    got = smtp_server.handler.per_recipient()
    assert len(got) == 40 and max(got.values()) == 1


def test_a_rollback_on_the_writers_pooled_connection_does_not_break_later_batches(
    four_sessions, smtp_server, seed_path
):
    """psycopg's rollback() sends DEALLOCATE ALL once it has prepared statements of its own,
    which drops the ledger writer's too; the next writer on that pooled connection must prepare
    them again, not fail every batch with "prepared statement does not exist". (Found by a
    break-it run with lock_timeout set.)"""
    from worker.db import get_engine, session_factory
    from worker.ledger.progress import ProgressWriter
    from worker.models import Campaign
    from worker.sending import Sender

    cid = make_campaign(seed_path, 40)
    engine = get_engine()
    engine.dispose()  # one pooled connection from here on
    progress = ProgressWriter.open(engine)
    pid = progress._pq.backend_pid
    progress.close()
    with session_factory()() as s:
        assert s.connection().connection.driver_connection.info.backend_pid == pid
        for _ in range(6):  # psycopg prepares a query it has run 5 times
            s.execute(select(Campaign.status).where(Campaign.id == cid)).scalar()
        s.rollback()  # ... and so DEALLOCATE ALL here
    with engine.connect() as conn:
        assert conn.connection.driver_connection.info.backend_pid == pid
        left = conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'nl%%'").scalar()
    assert left == 0  # the writer's statements are gone from that backend
    sender = Sender(get_settings())
    try:
        sender.run(cid)
    finally:
        sender.close()
    assert Counter(ledger(cid).values()) == {"sent": 40}
    assert max(smtp_server.handler.per_recipient().values()) == 1


# Refuses the commit of the transactions holding the nth to (nth + times - 1)th row update that
# matches WHEN (a deferred constraint trigger; the count is a sequence, outside transactions).
REFUSE_NTH = """
CREATE SEQUENCE refuse_nth;
CREATE FUNCTION refuse_nth() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n bigint := nextval('refuse_nth');
BEGIN
    IF n >= {nth} AND n < {nth} + {times} THEN
        RAISE EXCEPTION 'commit refused for delivery % (% -> %)', NEW.id, OLD.status, NEW.status;
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_nth AFTER UPDATE ON deliveries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION refuse_nth();
"""


@pytest.mark.parametrize("sessions", [1, 4])
def test_a_refusal_whose_record_is_lost_is_recorded_at_the_release(
    four_sessions, smtp_server, seed_path, monkeypatch, sessions
):
    """The server answers 451 to one recipient and the commit of that row's 'retry' record fails
    (in life: its connection killed). The process knows nothing was delivered: the release
    records the refusal (not left 'sending' for the sweeper to call uncertain, never resent),
    and the recipient gets the message once, later. (Found by a break-it run.)"""
    from worker.sending import Sender

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", str(sessions))
    reset_settings()
    cid = make_campaign(seed_path, 16)
    victim = sorted(ledger(cid))[3]
    smtp_server.handler.tempfail[victim] = 1
    with session_scope() as s:
        s.execute(sa_text(REFUSE_NTH.format(when="NEW.status = 'retry' AND OLD.status = 'sending'", nth=1, times=1)))
    sender = Sender(get_settings())
    try:
        with pytest.raises(Exception, match="commit refused"):
            sender.run(cid)
        after = ledger(cid)[victim]
        run_until_settled(sender, cid)
    finally:
        sender.close()
    assert after in ("retry", "queued"), after
    got = smtp_server.handler.per_recipient()
    assert got[victim] == 1 and max(got.values()) == 1
    assert Counter(ledger(cid).values()) == {"sent": 16}


def test_a_release_the_database_refuses_is_made_in_parts(four_sessions, smtp_server, seed_path, monkeypatch):
    """The commit of an accepted message's 'sent' record is refused, and so is the release that
    records it again: the release is made again in parts, so the batch's other rows go back to
    the queue at once (not after the claim lease) and the accepted message is recorded 'sent'.
    (Found by a break-it run.)"""
    from worker.sending import Sender

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "1")
    reset_settings()
    cid = make_campaign(seed_path, 16)
    with session_scope() as s:
        s.execute(sa_text(REFUSE_NTH.format(when="NEW.status = 'sent' AND OLD.status = 'sending'", nth=3, times=2)))
    sender = Sender(get_settings())
    try:
        states, claims = fails_then_settles(sender, cid, "commit refused")
    finally:
        sender.close()
    assert not claims and not states["claimed"] and not states["sending"], (states, claims)
    got = smtp_server.handler.per_recipient()
    assert len(got) == 16 and max(got.values()) == 1
    assert Counter(ledger(cid).values()) == {"sent": 16}


def test_database_connections_killed_mid_batch_lose_no_record(four_sessions, smtp_server, seed_path, monkeypatch):
    """pg_terminate_backend on every connection of the sender (its grouped writes, its claims)
    while four sessions stream: the batch fails, but each message the server accepted is
    recorded 'sent' at the release, each message not started goes back to the queue, and the
    next runs finish the campaign with everyone once and nothing uncertain."""
    import os
    import uuid

    import psycopg
    import sqlalchemy as sa

    from worker.db import dispose_engines
    from worker.sending import Sender

    from .conftest import POSTGRES_TEST_URL

    tag = f"nl_kill_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", os.environ["NEWSLETTER_DATABASE_URL"] + f"&application_name={tag}")
    reset_settings()
    dispose_engines()
    cid = make_campaign(seed_path, 80)
    admin = sa.create_engine(POSTGRES_TEST_URL, isolation_level="AUTOCOMMIT")
    h = smtp_server.handler
    killed: list[int] = []

    def kill_at_the_twentieth(_: list[str]) -> None:  # the server thread, before it answers the dot
        if len(h.received) == 19 and not killed:
            with admin.connect() as conn:
                sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :t"
                killed.append(conn.execute(sa.text(sql), {"t": tag}).scalar_one())

    h.on_data = kill_at_the_twentieth
    sender = Sender(get_settings())
    errors = 0
    try:
        for _ in range(100):
            try:
                sender.run(cid)
            except (psycopg.Error, sa.exc.DBAPIError, RuntimeError):
                errors += 1
                continue
            if not {"queued", "retry", "claimed"} & set(ledger(cid).values()):
                break
    finally:
        sender.close()
        admin.dispose()
    assert killed and killed[0] >= 1 and errors >= 1
    got = h.per_recipient()
    assert len(got) == 80 and max(got.values()) == 1
    assert Counter(ledger(cid).values()) == {"sent": 80}
    assert no_session_threads()


def test_a_421_at_the_final_dot_with_the_next_envelope_behind_it(four_sessions, seed_path, monkeypatch):
    """421 at a dot closes the connection with the next message's envelope in flight: that
    message never left, so it is retried (never 'uncertain'); everyone gets one copy in the end."""
    from worker.sending import Sender

    from .smtp_server import FaultyHandler, SMTPServer

    class Closing(FaultyHandler):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.once = {f"reader{i}@example.org" for i in range(0, 60, 7)}

        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            rcpt = envelope.rcpt_tos[0].lower()
            with self.lock:
                hit = rcpt in self.once
                self.once.discard(rcpt)
            if hit:
                server.transport.close()  # after the reply, as a server shutting down does
                return "421 4.3.2 shutting down"
            return await super().handle_DATA(server, session, envelope)

    with SMTPServer(Closing()) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        reset_settings()
        cid = make_campaign(seed_path, 60)
        sender = Sender(get_settings())
        try:
            run_until_settled(sender, cid)
        finally:
            sender.close()
        got = server.handler.per_recipient()
    assert got == {f"reader{i}@example.org": 1 for i in range(60)}
    assert Counter(ledger(cid).values()) == {"sent": 60}


def test_a_message_that_cannot_be_built_mid_stream_fails_alone(four_sessions, smtp_server, seed_path, monkeypatch):
    """A build failure between two streamed messages: the previous verdict is still recorded,
    that one row fails for good, the rest go once."""
    from worker.errors import InputError
    from worker.message import MessageTemplate
    from worker.sending import Sender

    real = MessageTemplate.build

    def build(self, recipient, date=None):  # noqa: ANN001, ANN202
        if recipient.email in ("reader5@example.org", "reader6@example.org", "reader30@example.org"):
            raise InputError("cannot be written")
        return real(self, recipient, date)

    monkeypatch.setattr(MessageTemplate, "build", build)
    cid = make_campaign(seed_path, 40)
    sender = Sender(get_settings())
    try:
        run_until_settled(sender, cid)
    finally:
        sender.close()
    states = ledger(cid)
    bad = {"reader5@example.org", "reader6@example.org", "reader30@example.org"}
    assert {e for e, st in states.items() if st == "failed"} == bad
    assert smtp_server.handler.per_recipient() == {e: 1 for e in states if e not in bad}
    assert {e for e, st in states.items() if st == "sent"} == set(states) - bad


def test_a_refused_configuration_mid_stream_pauses_with_nothing_in_flight(
    four_sessions, smtp_server, seed_path, monkeypatch
):
    """ConfigError for one message while four sessions stream: the campaign pauses; every
    accepted message is 'sent', everything else back in the queue; no row is left 'sending'."""
    from worker.errors import ConfigError
    from worker.sending import Sender
    from worker.transports import smtp

    real = smtp._wire

    def wire(envelope_from, recipient):  # noqa: ANN001, ANN202
        if recipient == "reader21@example.org":
            raise ConfigError("the envelope sender is refused")
        return real(envelope_from, recipient)

    monkeypatch.setattr(smtp, "_wire", wire)
    cid = make_campaign(seed_path, 80)
    sender = Sender(get_settings())
    try:
        outcome = sender.run(cid)
    finally:
        sender.close()
    assert outcome.stopped and "paused" in outcome.stopped
    got = smtp_server.handler.per_recipient()
    states = ledger(cid)
    assert max(got.values()) == 1
    assert {e for e, st in states.items() if st == "sent"} == set(got)
    assert set(states.values()) <= {"sent", "queued"}
    assert states["reader21@example.org"] == "queued"


def test_the_daily_cap_reached_mid_stream(four_sessions, smtp_server, seed_path, redis_url, monkeypatch):
    """The daily cap runs out while four sessions stream: exactly the cap goes out, the rest
    wait (no attempt lost, nothing 'sending'), and what went out is 'sent'."""
    from worker.sending import Sender

    monkeypatch.setenv("NEWSLETTER_SMTP_DAILY_CAP", "25")
    reset_settings()
    cid = make_campaign(seed_path, 80)
    sender = Sender(get_settings())
    try:
        outcome = sender.run(cid)
    finally:
        sender.close()
    got = smtp_server.handler.per_recipient()
    states = ledger(cid)
    assert len(got) == 25 and max(got.values()) == 1
    assert outcome.paused_for > 10
    assert {e for e, st in states.items() if st == "sent"} == set(got)
    assert set(states.values()) <= {"sent", "queued", "retry"}


def test_closing_one_ses_transport_leaves_the_shared_client_working(moto_ses):
    """Sessions share one botocore client per process: a staff or confirmation email's transport
    closed in the same process (`with get_transport(...)`) must not break the sessions' client."""
    from worker.transports.ses import SESTransport

    from .provider_servers import ses_sent, verify_identity

    verify_identity("news@example.org")
    msg = b"From: news@example.org\r\nTo: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    session = SESTransport("ses://eu-west-1")
    assert session.send("news@example.org", "a@example.org", msg)
    with SESTransport("ses://eu-west-1") as other:
        assert other.send("news@example.org", "b@example.org", msg)
    assert session.send("news@example.org", "c@example.org", msg)
    session.close()
    assert len(ses_sent()) == 3


class Resetting:
    """A server that resets the connection (RST, no reply) at the final dot of each listed
    recipient, once, and says so on `reset` (the reset has reached the client by then: loopback)."""

    def __init__(self, once: set[str]):
        import asyncio  # noqa: F401 - aiosmtpd's loop runs the handler

        from .smtp_server import FaultyHandler

        outer = self
        self.once = set(once)
        self.reset = threading.Event()

        class Handler(FaultyHandler):
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
                import socket
                import struct

                rcpt = envelope.rcpt_tos[0].lower()
                with self.lock:
                    hit = rcpt in outer.once
                    outer.once.discard(rcpt)
                if hit:
                    sock = server.transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    server.transport.abort()
                    outer.reset.set()
                    return "250 never seen"
                return await super().handle_DATA(server, session, envelope)

        self.handler = Handler()


def test_a_reset_after_the_dot_is_no_verdict_of_acceptance():
    """The server resets the connection after a message's final dot; the next pipelined
    envelope's write fails (smtplib then closes the connection itself). The first message's
    verdict is a lost connection, not "accepted", and the second fails as a transport error
    with the connection dropped. (It was an AttributeError from reading the closed connection,
    and `begin` got None: the first message would have been recorded as sent.)"""
    import select

    from worker.errors import TemporaryFailure
    from worker.transports.smtp import SMTPTransport

    from .smtp_server import SMTPServer

    server_side = Resetting({"a@example.org"})
    verdicts: list[object] = []

    def begin(verdict):  # noqa: ANN001, ANN202
        verdicts.append(verdict)
        return lambda: True

    msg = b"Subject: x\r\n\r\nhi\r\n"
    with SMTPServer(server_side.handler) as server:
        t = SMTPTransport(server.url, timeout=5)
        assert t.send_streaming("s@example.org", "a@example.org", msg, begin)
        assert server_side.reset.wait(5)
        select.select([t._conn.sock], [], [], 5)  # the reset is in: the socket reads as ready
        with pytest.raises(TemporaryFailure):
            t.send_streaming("s@example.org", "b@example.org", msg, begin)
        assert t._conn is None
        assert t.send_streaming("s@example.org", "c@example.org", msg, begin)
        assert t.finish() is None
        t.close()
    assert verdicts[0] is None and isinstance(verdicts[1], TemporaryFailure)
    assert "a@example.org" in str(verdicts[1])
    assert server_side.handler.per_recipient() == {"c@example.org": 1}


def test_a_reset_after_the_dot_mid_campaign_loses_and_strands_nobody(four_sessions, seed_path, monkeypatch):
    """The same reset inside a campaign: the reset message is retried, not recorded as sent
    unseen (it was: that subscriber never got it); the next one is not left 'sending' (uncertain
    for the sweeper) although its content never left; the batch does not crash (it raised
    AttributeError); everyone gets one copy. One session, so "the next message" is fixed."""
    import select

    from worker.message import MessageTemplate
    from worker.sending import Sender

    from .smtp_server import SMTPServer

    victims = {f"reader{i}@example.org" for i in (3, 17, 29)}
    server_side = Resetting(victims)
    real = MessageTemplate.build
    after_victim = threading.local()

    def build(self, recipient, date=None):  # noqa: ANN001, ANN202
        # The session's next message waits until the server has reset the previous one's
        # connection, so its envelope meets the reset (at full speed it may or may not); not
        # when that one was its batch's last (its verdict already read).
        waiting, after_victim.yes = getattr(after_victim, "yes", False), False
        t = sender.transport
        if waiting and t._pending is not None:
            assert server_side.reset.wait(5)
            select.select([t._conn.sock], [], [], 5)  # the reset is in: the socket reads as ready
        server_side.reset.clear()
        with server_side.handler.lock:  # a victim's first message only: the reset is once
            after_victim.yes = recipient.email in server_side.once
        return real(self, recipient, date)

    monkeypatch.setattr(MessageTemplate, "build", build)
    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "1")  # one stream: "the next" is fixed
    with SMTPServer(server_side.handler) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        reset_settings()
        cid = make_campaign(seed_path, 40)
        sender = Sender(get_settings())
        try:
            run_until_settled(sender, cid)
        finally:
            sender.close()
        got = server.handler.per_recipient()
    assert got == {f"reader{i}@example.org": 1 for i in range(40)}
    assert Counter(ledger(cid).values()) == {"sent": 40}


@pytest.mark.parametrize("how", ["pause", "cancel"])
def test_pausing_or_cancelling_while_four_sessions_stream(four_sessions, smtp_server, seed_path, how):
    """Staff stop the campaign after the 20th message while four sessions stream: every session
    stops (within the status check), what went out is 'sent', nothing is left 'sending' or
    'claimed', and the rest waits (paused) or is cancelled."""
    from worker.ledger.control import cancel, pause
    from worker.sending import Sender

    cid = make_campaign(seed_path, 600)
    h = smtp_server.handler
    h.reply_delay = 0.01  # a little distance, so the campaign outlasts the status check
    seen = Counter()

    def stop_at_20(rcpts):  # noqa: ANN001, ANN202
        with h.lock:
            seen["n"] += 1
            now = seen["n"] == 20
        if now:
            with session_scope() as s:
                pause(s, cid, "staff") if how == "pause" else cancel(s, cid, "staff")

    h.on_data = stop_at_20
    sender = Sender(get_settings())
    try:
        sender.run(cid)
    finally:
        sender.close()
    got = h.per_recipient()
    states = ledger(cid)
    assert 20 <= len(got) < 600 and max(got.values()) == 1
    assert {e for e, st in states.items() if st == "sent"} == set(got)
    rest = "queued" if how == "pause" else "cancelled"
    assert set(states.values()) == {"sent", rest}
    assert no_session_threads()


def test_silence_after_a_dot_mid_stream_makes_that_one_uncertain(four_sessions, seed_path, monkeypatch):
    """A server silent after one final dot (past the timeout) while the session's next envelope
    is behind it: that message is 'uncertain' (it may have arrived), the next one, whose content
    never left, is retried and sent, and nobody else is uncertain."""
    import asyncio

    from worker.sending import Sender

    from .smtp_server import FaultyHandler, SMTPServer

    class Silent(FaultyHandler):
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            with self.lock:
                hit = envelope.rcpt_tos[0].lower() == "reader5@example.org" and not self.attempts["silent"]
                self.attempts["silent"] += hit
            if hit:
                await asyncio.sleep(2.5)  # the server's behaviour: past the client's 1 s timeout
            return await super().handle_DATA(server, session, envelope)

    with SMTPServer(Silent()) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        monkeypatch.setenv("NEWSLETTER_SMTP_TIMEOUT", "1")
        reset_settings()
        cid = make_campaign(seed_path, 40)
        sender = Sender(get_settings())
        try:
            run_until_settled(sender, cid)
        finally:
            sender.close()
        states = ledger(cid)
        assert states.pop("reader5@example.org") == "uncertain"
        assert set(states.values()) == {"sent"}
        got = server.handler.per_recipient()
        assert {e: n for e, n in got.items() if e != "reader5@example.org"} == {e: 1 for e in states}


def test_a_throttled_dot_costs_the_envelope_behind_it_no_attempt(four_sessions, seed_path, monkeypatch):
    """421 "rate" at a final dot closes the connection with the next message's envelope in
    flight, unanswered. Throttling never brings a recipient nearer to 'failed', so neither
    message spends an attempt: with one attempt allowed, both are still sent (the next one
    was failed for good, never refused by anyone)."""
    from worker.sending import Sender

    from .smtp_server import FaultyHandler, SMTPServer

    class RateAtTheDot(FaultyHandler):
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            with self.lock:
                hit = envelope.rcpt_tos[0].lower() == "reader3@example.org" and not self.attempts["rate"]
                self.attempts["rate"] += hit
            if hit:
                return "421 4.7.28 unusual rate of mail, try again later"
            return await super().handle_DATA(server, session, envelope)

    with SMTPServer(RateAtTheDot()) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        monkeypatch.setenv("NEWSLETTER_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "1")  # one stream: reader4 is behind reader3
        reset_settings()
        cid = make_campaign(seed_path, 10)
        sender = Sender(get_settings())
        try:
            run_until_settled(sender, cid)
        finally:
            sender.close()
        assert server.handler.attempts["rate"] == 1
        assert server.handler.per_recipient() == {f"reader{i}@example.org": 1 for i in range(10)}
    assert Counter(ledger(cid).values()) == {"sent": 10}


def test_dkim_signed_messages_from_four_streaming_sessions_verify_and_equal_the_render(
    four_sessions,
    smtp_server,
    seed_path,
    dkim_key,  # noqa: F811 - test_dkim's fixture
):
    """DKIM wraps each session's SMTP transport in the streaming path: every message arrives
    signed, the signature verifies, and under it are exactly the bytes `render --to` builds."""
    from worker.episodes import load_episode
    from worker.message import Recipient, compose, without_date
    from worker.models import Campaign
    from worker.sending import Sender

    from .test_dkim import verified

    cid = make_campaign(seed_path, 60)
    sender = Sender(get_settings())
    try:
        run_until_settled(sender, cid)
    finally:
        sender.close()
    received = smtp_server.handler.received
    assert sorted(r.rcpt for r in received) == sorted(f"reader{i}@example.org" for i in range(60))
    settings = get_settings()
    with session_scope() as s:
        as_of = s.get(Campaign, cid).as_of
    template = compose(load_episode(seed_path, settings.tz), settings, as_of=as_of)
    for r in received:
        assert r.data.startswith(b"DKIM-Signature:") and verified(r.data, dkim_key)
        unsigned = r.data[r.data.index(b"\r\nFrom:") + 2 :]
        i = int(r.rcpt.removeprefix("reader").split("@")[0])
        expected, _ = template.build(Recipient(r.rcpt, f"Reader {i}"))
        assert without_date(unsigned) == without_date(expected)


def test_a_message_that_cannot_be_signed_fails_alone(
    four_sessions,
    smtp_server,
    seed_path,
    dkim_key,  # noqa: F811 - test_dkim's fixture
    monkeypatch,
):
    """Signing one message fails (dkimpy raises) while four sessions stream: that delivery fails,
    as a message that cannot be built does, instead of crashing every session and leaving its
    row 'sending' (uncertain for the sweeper) though nothing of it left."""
    from worker.dkim import Signer
    from worker.sending import Sender

    real = Signer.sign

    def sign(self, message):  # noqa: ANN001, ANN202
        if b"To: Reader 7 <reader7@example.org>" in message:
            raise ValueError("dkimpy could not canonicalise this message")
        return real(self, message)

    monkeypatch.setattr(Signer, "sign", sign)
    cid = make_campaign(seed_path, 40)
    sender = Sender(get_settings())
    try:
        run_until_settled(sender, cid)
    finally:
        sender.close()
    states = ledger(cid)
    assert states.pop("reader7@example.org") == "failed"
    assert set(states.values()) == {"sent"}
    assert smtp_server.handler.per_recipient() == {e: 1 for e in states}
    assert no_session_threads()


def test_refusals_at_the_dot_and_at_rcpt_between_streamed_messages(four_sessions, smtp_server, seed_path):
    """552/554 at final dots and 550 at RCPT, interleaved while four sessions stream (a refused
    RCPT arrives while the previous message's verdict is still unread): each refusal lands on
    its own row, only RCPT refusals suppress, and every other subscriber gets one copy."""
    from worker.models import Subscriber
    from worker.sending import Sender

    h = smtp_server.handler
    at_dot = {f"reader{i}@example.org" for i in range(1, 60, 6)}
    at_rcpt = {f"reader{i}@example.org" for i in range(2, 60, 6)}
    h.data_replies = {e: ("552 5.3.4 message too big" if i % 2 else "554 5.7.1 spam") for i, e in enumerate(at_dot)}
    h.permfail |= at_rcpt
    cid = make_campaign(seed_path, 60)
    sender = Sender(get_settings())
    try:
        run_until_settled(sender, cid)
    finally:
        sender.close()
    states = ledger(cid)
    assert {e for e, st in states.items() if st == "failed"} == at_dot | at_rcpt
    assert h.per_recipient() == {e: 1 for e, st in states.items() if st == "sent"}
    assert len(h.per_recipient()) == 60 - len(at_dot | at_rcpt)
    with session_scope() as s:
        suppressed = {e.lower() for e in s.scalars(select(Subscriber.email).where(Subscriber.status != "active"))}
    assert suppressed == at_rcpt


def test_a_server_that_drops_what_follows_a_dot_costs_one_timeout_not_every_other_message():
    """A server that says PIPELINING but discards its input once it has answered a final dot
    loses the envelope streamed behind it. That costs one timeout; from then on the transport
    sends each message on its own (it cost a timeout and an attempt every other message, so
    with enough attempts spent a subscriber could fail for good, refused by nobody)."""
    import asyncio

    from worker.errors import TemporaryFailure
    from worker.transports.smtp import SMTPTransport

    from .smtp_server import FaultyHandler, SMTPServer

    class Discarding(FaultyHandler):
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            # aiosmtpd's own input buffer (private): wait briefly for a pipelined envelope, then
            # throw away whatever is there, as such a server does
            for _ in range(40):
                if b"MAIL FROM" in bytes(server._reader._buffer):
                    break
                await asyncio.sleep(0.005)
            server._reader._buffer.clear()
            return await super().handle_DATA(server, session, envelope)

    outcomes: list[object] = []
    msg = b"Subject: x\r\n\r\nhi\r\n"
    with SMTPServer(Discarding()) as server:
        t = SMTPTransport(server.url, timeout=1)
        for r in "abcde":
            try:
                outcomes.append(t.send_streaming("s@example.org", f"{r}@example.org", msg, lambda v: lambda: True))
            except TemporaryFailure as exc:
                outcomes.append(type(exc).__name__)
        assert t.finish() is None
        t.close()
        got = server.handler.per_recipient()
    assert outcomes == [True, "TemporaryFailure", True, True, True]
    assert got == {f"{r}@example.org": 1 for r in "acde"}
