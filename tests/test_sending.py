"""End to end: a real Celery worker and beat on Redis, a real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from worker.db import session_scope
from worker.episodes import load_episode
from worker.message import Recipient, compose, without_date
from worker.models import Delivery, Subscriber
from worker.publish import publish_episode
from worker.sending import sessions_for
from worker.settings import get_settings, reset_settings

from .factories import campaign_status, cli, make_campaign, seed_subscribers, wait_done
from .stack import wait_for


def test_every_subscriber_gets_exactly_one(database, redis_url, smtp_server, fast_retries, stack, seed_path, tmp_path):
    emails = seed_subscribers(500)
    settings = get_settings()
    episode = load_episode(seed_path, settings.tz)
    stack.start_worker()
    result = publish_episode(episode, settings)
    assert result.created and result.campaign.total == 500
    st = wait_done(result.campaign.id, stack=stack)
    assert st["sent"] == 500 and st["failed"] == 0 and st["uncertain"] == 0
    got = smtp_server.handler.per_recipient()
    assert got == {e.lower(): 1 for e in emails}

    # The bytes each subscriber got equal what `render --to` builds, but for the Date header.
    sample = next(r for r in smtp_server.handler.received if r.rcpt == "reader7@example.org")
    template = compose(episode, settings, as_of=result.campaign.as_of)
    expected, _ = template.build(Recipient("reader7@example.org", "Reader 7"))
    assert without_date(sample.data) == without_date(expected)
    rendered = tmp_path / "render"
    cli(
        "render",
        seed_path,
        "--out",
        rendered,
        "--to",
        "reader7@example.org",
        "--name",
        "Reader 7",
        "--as-of",
        result.campaign.as_of.isoformat(),
        check=True,
    )
    assert without_date(sample.data) == without_date((rendered / "message.eml").read_bytes())
    with session_scope() as session:
        mids = {d.message_id for d in session.scalars(select(Delivery))}
    assert len(mids) == 500 and None not in mids

    # Publishing the same episode again creates nothing and sends nothing.
    again = publish_episode(episode, settings)
    assert not again.created and again.campaign.id == result.campaign.id
    stack.start_beat()
    wait_for(
        lambda: b"worker.tasks.sweep" in b"".join(p.read_bytes() for p in stack.log_dir.glob("beat-*.log")),
        30,
        "beat to run a sweep",
    )
    assert sum(smtp_server.handler.per_recipient().values()) == 500


def test_a_worker_shutting_down_ends_its_smtp_sessions_with_quit(
    database, redis_url, smtp_server, fast_retries, stack, seed_path
):
    seed_subscribers(40)
    settings = get_settings()
    stack.start_worker()
    result = publish_episode(load_episode(seed_path, settings.tz), settings)
    wait_done(result.campaign.id, stack=stack)
    sessions = smtp_server.handler.sessions
    assert sessions["ehlo"] >= 1 and sessions["quit"] == 0  # kept open between batches
    stack.shut_down_workers()
    assert sessions["quit"] == sessions["ehlo"], stack.logs()


def test_temporary_failures_retry_and_permanent_ones_suppress(
    database, redis_url, smtp_server, fast_retries, stack, seed_path, tmp_path
):
    emails = seed_subscribers(60)
    handler = smtp_server.handler
    for e in emails[:10]:
        handler.tempfail[e] = 2  # 451 twice, then accepted
    handler.drop_data[emails[10]] = 1  # connection dropped mid-DATA once
    for e in emails[20:25]:
        handler.permfail.add(e)  # 550
    settings = get_settings()
    stack.start_worker()
    stack.start_beat()
    result = publish_episode(load_episode(seed_path, settings.tz), settings)
    st = wait_done(result.campaign.id, stack=stack)
    assert st["sent"] == 55 and st["failed"] == 5 and st["uncertain"] == 0
    got = handler.per_recipient()
    for e in emails[:11]:
        assert got.get(e) == 1, e  # 4xx recipients arrive after retries, once
    for e in emails[20:25]:
        assert e not in got
    assert handler.attempts[emails[0]] == 3
    with session_scope() as session:
        bounced = set(session.scalars(select(Subscriber.email).where(Subscriber.status == "bounced")))
        retried = session.scalars(select(Delivery).where(Delivery.email == emails[0])).one()
        assert retried.attempts == 3 and retried.status == "sent"
    assert bounced == set(emails[20:25])

    # The next campaign skips the suppressed addresses entirely.
    second = tmp_path / "ep2.txt"
    second.write_text("Episode Two\n\n1 Dec 2023\n\nIntro.\n\nTranscript words here.\n")
    before = sum(handler.attempts[e] for e in emails[20:25])
    r2 = publish_episode(load_episode(second, settings.tz), settings)
    assert r2.campaign.total == 55
    st2 = wait_done(r2.campaign.id, stack=stack)
    assert st2["sent"] == 55
    assert sum(handler.attempts[e] for e in emails[20:25]) == before


SESSIONS = 4  # sending sessions per worker process in the kill test


def test_sigkill_mid_campaign_loses_nobody(
    database, redis_url, smtp_server, fast_retries, stack, seed_path, monkeypatch
):
    monkeypatch.setenv("NEWSLETTER_SEND_RATE", "150")  # slow enough to kill it mid-way
    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", str(SESSIONS))
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    reset_settings()
    sessions = sessions_for(get_settings())  # one on SQLite
    emails = seed_subscribers(500)
    settings = get_settings()
    stack.start_worker()
    stack.start_beat()
    result = publish_episode(load_episode(seed_path, settings.tz), settings)
    cid = result.campaign.id
    wait_for(lambda: 50 <= len(smtp_server.handler.received), 60, "some messages to go out")
    killed = stack.kill_all_workers()
    sent_at_kill = len(smtp_server.handler.received)
    assert sent_at_kill < 500, "the campaign finished before the kill; the test proves nothing"
    stack.start_worker()
    st = wait_done(cid, timeout=180, stack=stack)

    got = smtp_server.handler.per_recipient()
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    with session_scope() as session:
        rows = {d.email: d.status for d in session.scalars(select(Delivery).where(Delivery.campaign_id == cid))}
    assert set(rows) == set(emails)  # every subscriber has a record
    missing = [e for e in emails if e not in got and rows[e] != "uncertain"]
    assert missing == []  # nobody silently lost: not received means reported uncertain
    assert duplicates <= killed * sessions
    # at most one in-flight message per session of each killed process
    assert st["uncertain"] <= killed * sessions
    print(
        f"\nkill test: {killed} processes killed after {sent_at_kill} sends; "
        f"{st['sent']} sent, {st['uncertain']} uncertain, {duplicates} duplicates, {sessions} sessions a process"
    )
    assert all(rows[e] in ("sent", "uncertain") for e in emails)


@pytest.mark.parametrize("sessions", [1, 3], ids=["one-session", "three-sessions"])
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "plain"])
def test_each_row_is_durably_sending_before_its_content_arrives(
    database, smtp_server, seed_path, pipelining, sessions, monkeypatch
):
    """The ledger write overlaps the envelope round trip, but the content waits for its commit:
    read from another connection the moment each message arrives, its row already says 'sending'
    (whether the commit was the session's own or a group's)."""
    from worker.sending import Sender

    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "7")  # several batches: the writer's set-up is reused
    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", str(sessions))
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    reset_settings()
    cid = make_campaign(seed_path, 30)
    handler = smtp_server.handler
    handler.pipelining = pipelining
    seen: dict[str, str] = {}

    def on_data(rcpts: list[str]) -> None:
        with session_scope() as s:
            for r in rcpts:
                seen[r] = s.scalar(select(Delivery.status).where(Delivery.email == r))

    handler.on_data = on_data
    sender = Sender(get_settings())
    outcome = sender.run(cid)
    sender.close()
    per_batch = max(7, 8 * sessions) if database == "postgres" and sessions > 1 else 7
    assert outcome.sent == 30 and outcome.batches == -(-30 // per_batch)
    assert seen == {f"reader{i}@example.org": "sending" for i in range(30)}
    assert campaign_status(cid)["sent"] == 30


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "plain"])
def test_a_row_taken_over_during_its_envelope_gets_no_content(
    database, smtp_server, seed_path, pipelining, monkeypatch
):
    """Claimed by this batch, then swept and claimed by someone else before our write landed: the
    session that takes it learns so after the envelope, sends no content and records nothing over
    the new owner; the other sessions carry on (three sessions on PostgreSQL, one on SQLite)."""
    from worker.sending import Sender

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "3")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    reset_settings()
    cid = make_campaign(seed_path, 10)
    handler = smtp_server.handler
    handler.pipelining = pipelining
    stolen: list[str] = []

    def on_data(rcpts: list[str]) -> None:
        if stolen:
            return
        with session_scope() as s:  # the last row nobody has started changes hands before its write
            victim = s.scalars(
                select(Delivery).where(Delivery.status == "claimed").order_by(Delivery.id.desc()).limit(1)
            ).one()
            victim.claim_token = "thief"
            stolen.append(victim.email)

    handler.on_data = on_data
    sender = Sender(get_settings())
    outcome = sender.run(cid)
    sender.close()
    victim = stolen[0]
    assert outcome.sent == 9 and outcome.skipped_rows == 1
    assert handler.attempts[victim] == 1 and victim not in handler.per_recipient()  # envelope only
    assert len(handler.per_recipient()) == 9
    with session_scope() as s:
        row = s.scalars(select(Delivery).where(Delivery.email == victim)).one()
        assert (row.claim_token, row.status, row.attempts) == ("thief", "claimed", 0)


def test_several_sessions_send_each_subscriber_once(database, smtp_server, seed_path, monkeypatch):
    """Several sessions in one process (threads) against the test server: every row sent once,
    recorded sent with its Message-ID, no row left in flight."""
    from worker.sending import Sender

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "6")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "40")
    reset_settings()
    cid = make_campaign(seed_path, 150)
    sender = Sender(get_settings())
    assert sender.sessions == (6 if database == "postgres" else 1)
    outcome = sender.run(cid)
    sender.close()
    # 48 rows a batch for six sessions (8 each) on PostgreSQL; 40 for the one on SQLite
    assert (outcome.sent, outcome.batches) == (150, 4)
    assert smtp_server.handler.per_recipient() == {f"reader{i}@example.org": 1 for i in range(150)}
    st = campaign_status(cid)
    assert (st["sent"], st["sending"], st["state"]) == (150, 0, "done")
    with session_scope() as s:
        assert None not in set(s.scalars(select(Delivery.message_id).where(Delivery.campaign_id == cid)))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("wall_ms", "cpu_ms", "maximum", "expected"),
    [
        (0.6, 0.3, 32, 1),  # loopback: waiting is as short as the work, one session
        (0.8, 0.3, 32, 1),  # below MIN_RATIO
        (3.0, 0.3, 32, 10),  # a LAN relay a few ms away
        (80.0, 0.3, 32, 32),  # 40 ms away: the maximum
        (80.0, 0.3, 1, 1),  # SQLite or a single-session setting
    ],
)
def test_the_session_count_is_a_message_wall_time_over_its_cpu_time(wall_ms, cpu_ms, maximum, expected):
    from worker.sending import SessionSizer

    sizer = SessionSizer(maximum)
    assert sizer.current == 1
    done = [sizer.record(wall_ms / 1000, cpu_ms / 1000) for _ in range(SessionSizer.PROBE_MESSAGES)]
    assert done == [False] * (SessionSizer.PROBE_MESSAGES - 1) + [True] or maximum == 1
    assert sizer.current == expected


def test_a_distant_server_gets_several_sessions_and_everyone_once(database, smtp_server, seed_path, monkeypatch):
    """The process measures its first messages on one session; with every reply 20 ms late it
    opens more (up to NEWSLETTER_SESSIONS_PER_WORKER), and still sends each subscriber once."""
    from worker.sending import Sender, SessionSizer

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "5")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "20")
    reset_settings()
    cid = make_campaign(seed_path, 80)
    smtp_server.handler.reply_delay = 0.02
    sender = Sender(get_settings())
    outcome = sender.run(cid)
    threads = {t.name for t in threading.enumerate()}
    sender.close()
    expected = 5 if database == "postgres" else 1
    assert sender.sessions == expected
    assert smtp_server.handler.sessions["ehlo"] == expected  # one connection per session
    assert outcome.sent == 80 and not any(n.startswith("send-session-") for n in threads)
    assert smtp_server.handler.per_recipient() == {f"reader{i}@example.org": 1 for i in range(80)}
    # the first batch was sized before the measurement (20), the next ones for 5 sessions (40)
    assert outcome.claimed == 80 and outcome.batches == (3 if expected == 5 else 4)
    assert SessionSizer.PROBE_MESSAGES < 20


def test_a_process_held_back_by_the_destination_cap_claims_small_batches(
    postgres_url, redis_url, smtp_server, seed_path, monkeypatch
):
    """Other processes hold most of NEWSLETTER_SESSIONS_PER_DESTINATION: this one sends on what
    is left and claims only what those sessions send soon (8 rows each), not its usual batch,
    which would keep the rows from processes with more sessions."""
    from worker.db import migrate
    from worker.sending import ROWS_PER_SESSION, Sender
    from worker.slots import DestinationSlots, destination_of

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "4")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_DESTINATION", "5")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "100")
    reset_settings()
    settings = get_settings()
    migrate(settings)
    others = DestinationSlots(destination_of(settings.mail_url), 5, "another-host:1", redis_url)
    assert others.hold(4) == 4
    cid = make_campaign(seed_path, 3 * ROWS_PER_SESSION)
    sender = Sender(settings)
    outcome = sender.run(cid)
    sender.close()
    others.release()
    assert (outcome.sent, outcome.batches) == (3 * ROWS_PER_SESSION, 3)
    assert smtp_server.handler.sessions["ehlo"] == 1  # one session: the cap's last place
