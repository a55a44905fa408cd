"""Whole campaigns through each provider transport: a real Celery worker on Redis, the local
provider stand-ins (tests/provider_servers.py) and moto's SES server."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from worker.db import session_scope
from worker.episodes import load_episode
from worker.models import Delivery, Subscriber
from worker.publish import publish_episode
from worker.settings import get_settings, reset_settings

from .factories import campaign_status, cli, seed_subscribers, wait_done
from .provider_servers import ProviderServer, ProviderState, SESThrottlingFront, ses_sent, verify_identity
from .stack import wait_for

N = 60


@pytest.fixture
def migrated(settings_env):
    from worker.db import dispose_engines, migrate

    dispose_engines()
    migrate(get_settings())
    yield
    dispose_engines()


@pytest.fixture
def quick(monkeypatch, migrated):
    monkeypatch.setenv("NEWSLETTER_RETRY_BASE_DELAY", "0.5")
    monkeypatch.setenv("NEWSLETTER_RETRY_MAX_DELAY", "1")
    monkeypatch.setenv("NEWSLETTER_SWEEP_INTERVAL", "1")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "10")
    reset_settings()


def use(monkeypatch, url: str) -> None:
    monkeypatch.setenv("NEWSLETTER_MAIL_URL", url)
    reset_settings()


def start_campaign(stack, seed_path):  # noqa: ANN001, ANN201
    emails = seed_subscribers(N)
    stack.start_worker()
    settings = get_settings()
    result = publish_episode(load_episode(seed_path, settings.tz), settings)
    return emails, result.campaign.id


def assert_exactly_once(campaign_id: int, emails: list[str], got: dict[str, int]) -> None:
    st = campaign_status(campaign_id)
    assert st["sent"] == N and st["failed"] == 0 and st["uncertain"] == 0, st
    assert got == {e.lower(): 1 for e in emails}
    with session_scope() as session:
        ids = list(session.scalars(select(Delivery.provider_message_id).where(Delivery.campaign_id == campaign_id)))
    assert len(ids) == N and all(ids) and len(set(ids)) == N  # the provider's id on every row


@pytest.mark.parametrize("kind", ["postmark", "mailgun"])
def test_campaign_through_an_http_provider_delivers_exactly_once(
    kind, database, redis_url, quick, stack, seed_path, monkeypatch
):
    with ProviderServer() as server:
        use(
            monkeypatch,
            f"postmark://pm-token@?endpoint={server.url}"
            if kind == "postmark"
            else f"mailgun://mg-key@mg.news.example.org?endpoint={server.url}",
        )
        emails, cid = start_campaign(stack, seed_path)
        wait_done(cid, stack=stack)
        assert_exactly_once(cid, emails, server.state.per_recipient())


def test_campaign_through_ses_delivers_exactly_once(
    moto_ses,
    redis_url,
    quick,
    stack,
    seed_path,  # noqa: F811
    monkeypatch,
):
    verify_identity("news.example.org")
    use(monkeypatch, "ses://eu-west-1")
    emails, cid = start_campaign(stack, seed_path)
    wait_done(cid, stack=stack)
    got: dict[str, int] = {}
    for sent in ses_sent():
        got[sent.destinations[0].lower()] = got.get(sent.destinations[0].lower(), 0) + 1
    assert_exactly_once(cid, emails, got)


PAUSE = 3.0  # seconds a throttling answer asks for


def assert_every_worker_paused(log: list) -> int:
    """After each 429 at t, nobody sent anything between t + 1.5 s and t + PAUSE - 0.1 s. (The
    worker that got the 429 starts the pause when it has read the answer, and the other process
    looks at it every 0.2 s and may have a request in flight: on a loaded machine that can take
    most of a second, hence the margin.)"""
    throttles = [e.at for e in log if e.status == 429]
    for t in throttles:
        during = [e for e in log if t + 1.5 < e.at < t + PAUSE - 0.1]
        assert not during, f"requests during the pause after the 429 at {t}: {during}"
    return len(throttles)


@pytest.mark.parametrize("kind", ["postmark", "mailgun", "ses"])
def test_throttling_slows_the_whole_campaign_and_loses_nothing(
    kind, redis_url, quick, stack, seed_path, monkeypatch, request
):
    state = ProviderState(throttle_every=15, retry_after=str(int(PAUSE)))
    # SES sends no Retry-After: the pause is then NEWSLETTER_RETRY_BASE_DELAY.
    monkeypatch.setenv("NEWSLETTER_RETRY_BASE_DELAY", str(PAUSE))
    monkeypatch.setenv("NEWSLETTER_RETRY_MAX_DELAY", str(PAUSE))
    reset_settings()
    if kind == "ses":
        upstream = request.getfixturevalue("moto_ses")
        verify_identity("news.example.org")
        server = SESThrottlingFront(upstream, state)
    else:
        server = ProviderServer(state)
    with server:
        if kind == "ses":
            monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", server.url)
            use(monkeypatch, "ses://eu-west-1")
        elif kind == "postmark":
            use(monkeypatch, f"postmark://pm-token@?endpoint={server.url}")
        else:
            use(monkeypatch, f"mailgun://mg-key@mg.news.example.org?endpoint={server.url}")
        emails, cid = start_campaign(stack, seed_path)
        wait_done(cid, timeout=180, stack=stack)
        throttles = assert_every_worker_paused(state.log)
    assert throttles >= N // 15
    if kind == "ses":
        got: dict[str, int] = {}
        for sent in ses_sent():
            got[sent.destinations[0].lower()] = got.get(sent.destinations[0].lower(), 0) + 1
    else:
        got = state.per_recipient()
    assert_exactly_once(cid, emails, got)
    with session_scope() as session:
        # Throttled tries gave their attempt back: nobody is nearer to 'failed'.
        attempts = list(session.scalars(select(Delivery.attempts).where(Delivery.campaign_id == cid)))
    assert max(attempts) == 1


def test_a_configuration_error_stops_the_campaign_with_one_line_and_blames_nobody(
    redis_url, quick, stack, seed_path, monkeypatch
):
    with ProviderServer() as server:
        use(monkeypatch, f"mailgun://wrong-key@mg.news.example.org?endpoint={server.url}")
        emails, cid = start_campaign(stack, seed_path)
        assert_paused_blaming_nobody(cid, stack, "mailgun refused our key")
        assert server.state.delivered == []
        # Fixed: the workers get the right key and `newsletter send` resumes the campaign.
        stack.shut_down_workers()
        use(monkeypatch, f"mailgun://mg-key@mg.news.example.org?endpoint={server.url}")
        stack.start_worker()
        assert "resumed" in cli("send", cid, check=True).stdout
        wait_done(cid, stack=stack)
        assert_exactly_once(cid, emails, server.state.per_recipient())


def assert_paused_blaming_nobody(cid: int, stack, reason: str) -> None:  # noqa: ANN001
    st = wait_for(
        lambda: (s := campaign_status(cid))["state"] == "paused" and s,
        60,
        "the campaign to pause",
        details=stack.logs,
    )
    assert reason in st["reason"] and "\n" not in st["reason"]
    # Let any batch still in flight settle, then look: nothing failed, nobody suppressed.
    wait_for(lambda: (s := campaign_status(cid))["sending"] == 0 and s["claimed"] == 0, 30, "batches to end")
    st = campaign_status(cid)
    assert st["failed"] == 0 and st["sent"] == 0 and st["queued"] == N
    with session_scope() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}
        assert set(session.scalars(select(Delivery.attempts))) == {0}
    shown = cli("status", cid, check=True).stdout
    assert shown.count(f"sending stopped: {reason}") == 1


def test_postmark_unknown_sender_pauses_the_campaign(redis_url, quick, stack, seed_path, monkeypatch):
    with ProviderServer(ProviderState(senders={"someone-else@example.com"})) as server:
        use(monkeypatch, f"postmark://pm-token@?endpoint={server.url}")
        _, cid = start_campaign(stack, seed_path)
        assert_paused_blaming_nobody(cid, stack, "postmark refused our account or sender")
        assert server.state.delivered == []


def test_ses_unverified_sender_pauses_the_campaign(moto_ses, redis_url, quick, stack, seed_path, monkeypatch):
    use(monkeypatch, "ses://eu-west-1")
    _, cid = start_campaign(stack, seed_path)
    assert_paused_blaming_nobody(cid, stack, "ses refused our sender")
    assert ses_sent() == []


@pytest.fixture
def postmark_four_sessions(postgres_url, redis_url, quick, monkeypatch):
    """Postmark's stand-in as the transport, four sessions forced, PostgreSQL migrated and N
    subscribers: yields (the stand-in, their addresses)."""
    from worker.db import migrate

    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "4")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")
    with ProviderServer() as server:
        use(monkeypatch, f"postmark://pm-token@?endpoint={server.url}")
        migrate(get_settings())
        yield server, seed_subscribers(N)


def send_all(seed_path) -> tuple[int, int]:  # noqa: ANN001
    """Publish the episode and send it through one Sender: (campaign id, messages sent)."""
    from worker.sending import Sender

    settings = get_settings()
    cid = publish_episode(load_episode(seed_path, settings.tz), settings).campaign.id
    sender = Sender(settings)
    try:
        return cid, sender.run(cid).sent
    finally:
        sender.close()


def test_several_sessions_through_an_http_provider_deliver_exactly_once(postmark_four_sessions, seed_path):
    """Four sessions of one process, each with its own HTTP client, against the provider's
    stand-in: everyone once, the provider's id on every row, a connection per session."""
    server, emails = postmark_four_sessions
    cid, sent = send_all(seed_path)
    assert sent == N
    assert len({e.peer for e in server.state.log}) >= 2  # several connections
    assert_exactly_once(cid, emails, server.state.per_recipient())


def test_a_provider_id_that_cannot_be_recorded_loses_no_accepted_message(postmark_four_sessions, seed_path):
    """The provider accepted a message but recording its id fails (a refused commit here): only
    that message's bounce matching suffers; it is still recorded 'sent', everyone once."""
    from sqlalchemy import text

    from worker.db import session_scope

    from .test_sessions_attacks import REFUSE_NTH

    server, emails = postmark_four_sessions
    with session_scope() as s:
        when = "NEW.provider_message_id IS DISTINCT FROM OLD.provider_message_id"
        s.execute(text(REFUSE_NTH.format(when=when, nth=5, times=1)))
    cid, sent = send_all(seed_path)
    assert sent == N
    st = campaign_status(cid)
    assert st["sent"] == N and st["failed"] == 0 and st["uncertain"] == 0, st
    assert server.state.per_recipient() == {e.lower(): 1 for e in emails}
    with session_scope() as s:
        missing = s.scalar(text("SELECT count(*) FROM deliveries WHERE provider_message_id IS NULL"))
    assert missing == 1  # the one refused
