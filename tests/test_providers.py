"""Provider transports against local stand-ins: Postmark and Mailgun as small HTTP servers
implementing their documented endpoints, auth and error answers; SES through moto's server mode."""

from __future__ import annotations

import time
from email import policy
from email.parser import BytesParser

import pytest

from worker.errors import (
    ConfigError,
    MessageRejected,
    RecipientRejected,
    TemporaryFailure,
    Throttled,
    TransportConfigError,
)
from worker.message import Recipient, compose
from worker.ratelimit import RateLimiter
from worker.settings import Settings, get_settings, reset_settings
from worker.transports import Transport, get_transport, transport_rate
from worker.transports.mailgun import MailgunTransport
from worker.transports.postmark import PostmarkTransport
from worker.transports.provider import retry_after
from worker.transports.ses import SESTransport

from .provider_servers import ProviderServer, ProviderState, SESThrottlingFront, ses_sent, verify_identity


@pytest.fixture
def digest(settings, seed_path):
    from worker.episodes import load_episode

    template = compose(load_episode(seed_path, settings.tz), settings)
    message, mid = template.build(Recipient("reader@example.org", "Ada Reader"))
    return message, mid


@pytest.fixture
def provider():
    with ProviderServer() as server:
        yield server


def test_postmark_sends_our_parts_and_headers_and_keeps_its_id(provider, digest):
    message, mid = digest
    t = PostmarkTransport(f"postmark://pm-token@?endpoint={provider.url}")
    assert t.send("newsletter@news.example.org", "reader@example.org", message) is True
    rcpt, data = provider.state.delivered[0]
    assert rcpt == "reader@example.org"
    ours = BytesParser(policy=policy.default).parsebytes(message)
    headers = {h["Name"]: h["Value"] for h in data["Headers"]}
    # Every header we set goes out unchanged, one-click unsubscribe included.
    assert headers["Message-ID"] == mid
    assert headers["List-Unsubscribe"] == ours["List-Unsubscribe"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert data["HtmlBody"] == ours.get_body(("html",)).get_content()
    assert data["TextBody"] == ours.get_body(("plain",)).get_content()
    assert data["TrackLinks"] == "None" and data["TrackOpens"] is False and data["MessageStream"] == "broadcast"
    assert t.provider_message_id and len(t.provider_message_id) == 36


def test_postmark_answers_map_onto_the_error_tree(provider, digest):
    message, _ = digest
    state = provider.state
    with pytest.raises(TransportConfigError, match="ErrorCode 10"):
        PostmarkTransport(f"postmark://wrong@?endpoint={provider.url}").send("x@y", "reader@example.org", message)
    t = PostmarkTransport(f"postmark://pm-token@?endpoint={provider.url}")
    state.senders = {"someone-else@example.com"}
    with pytest.raises(TransportConfigError, match="ErrorCode 400"):
        t.send("x@y", "reader@example.org", message)
    state.senders = {"newsletter@news.example.org"}
    state.inactive = {"gone@example.org"}
    with pytest.raises(RecipientRejected) as gone:
        t.send("x@y", "gone@example.org", message)
    assert gone.value.suppress is True
    state.throttle_every, state.retry_after = 1, "7"
    with pytest.raises(Throttled) as slow:
        t.send("x@y", "reader@example.org", message)
    assert slow.value.retry_after == 7.0
    assert state.delivered == []


def test_mailgun_sends_our_exact_bytes(provider, digest):
    message, mid = digest
    t = MailgunTransport(f"mailgun://mg-key@mg.news.example.org?endpoint={provider.url}")
    assert t.send("bounces@news.example.org", "reader@example.org", message) is True
    assert provider.state.delivered == [("reader@example.org", message)]
    assert t.provider_message_id == mid.strip("<>")


def test_mailgun_answers_map_onto_the_error_tree(provider, digest):
    message, _ = digest
    with pytest.raises(TransportConfigError, match="401 Forbidden"):
        MailgunTransport(f"mailgun://bad@mg.news.example.org?endpoint={provider.url}").send(
            "x@y", "r@example.org", message
        )
    with pytest.raises(TransportConfigError, match="Domain not found"):
        MailgunTransport(f"mailgun://mg-key@other.example.org?endpoint={provider.url}").send(
            "x@y", "r@example.org", message
        )
    provider.state.throttle_every = 1
    with pytest.raises(Throttled) as slow:
        MailgunTransport(f"mailgun://mg-key@mg.news.example.org?endpoint={provider.url}").send(
            "x@y", "r@example.org", message
        )
    assert slow.value.retry_after == 1.0


def test_unreachable_provider_is_temporary(digest):
    message, _ = digest
    with pytest.raises(TemporaryFailure):
        MailgunTransport("mailgun://k@d.example.org?endpoint=http://127.0.0.1:9").send("x@y", "r@example.org", message)


def test_mail_urls_and_provider_environment_variables(monkeypatch):
    def make(url: str):  # noqa: ANN202
        return get_transport(Settings(mail_url=url))

    eu = make("mailgun://key-1@mg.example.org?region=eu")
    assert eu.base_url == "https://api.eu.mailgun.net" and eu.domain == "mg.example.org"
    assert make("mailgun://key-1@mg.example.org").base_url == "https://api.mailgun.net"
    pm = make("postmark://tok@?stream=outbound")
    assert pm.stream == "outbound" and pm.client.headers["X-Postmark-Server-Token"] == "tok"
    ses = make("ses://eu-west-2?configuration_set=newsletter")
    assert ses.region == "eu-west-2" and ses.configuration_set == "newsletter"
    for url, what in [
        ("postmark://", "server token"),
        ("mailgun://", "API key"),
        ("ses://", "region"),
        ("mailgun://k@d?region=mars", "region"),
    ]:
        with pytest.raises(ConfigError, match=what):
            make(url)
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", "from-env")
    monkeypatch.setenv("MAILGUN_API_KEY", "mg-env")
    monkeypatch.setenv("MAILGUN_DOMAIN", "env.example.org")
    assert make("postmark://").client.headers["X-Postmark-Server-Token"] == "from-env"
    assert make("mailgun://").domain == "env.example.org"


def test_a_secret_in_a_bad_mail_url_is_not_repeated(settings, monkeypatch):
    from worker.errors import SettingsError
    from worker.settings import get_settings, reset_settings

    monkeypatch.setenv("NEWSLETTER_MAIL_URL", "pigeon://user:hunter2@host")
    reset_settings()
    with pytest.raises(SettingsError, match="NEWSLETTER_MAIL_URL") as exc:
        get_settings()
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError) as refused:  # a bad port reaches the transport
        get_transport(Settings(mail_url="smtp://user:hunter2@host:99999"))
    assert "hunter2" not in str(refused.value)


def test_transport_rate_is_the_lower_of_the_two():
    assert transport_rate(Settings(mail_url="ses://eu-west-1", send_rate=0, ses_send_rate=14)) == 14
    assert transport_rate(Settings(mail_url="ses://eu-west-1", send_rate=5, ses_send_rate=14)) == 5
    assert transport_rate(Settings(mail_url="smtp://h", send_rate=0)) == 0


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None and retry_after(None) is None


# -- SES through moto ------------------------------------------------------------------------


def raw(sent) -> bytes:  # noqa: ANN001
    data = sent.raw_data
    return data if isinstance(data, bytes) else data.encode()


def test_ses_sends_our_bytes_and_keeps_the_ses_message_id(moto_ses, digest):
    message, _ = digest
    verify_identity("news.example.org")
    t = SESTransport("ses://eu-west-1")
    assert t.send("newsletter@news.example.org", "reader@example.org", message) is True
    sent = ses_sent()
    assert len(sent) == 1 and sent[0].destinations[0] == "reader@example.org"
    assert raw(sent[0]).replace(b"\r\n", b"\n") == message.replace(b"\r\n", b"\n")
    assert t.provider_message_id == sent[0].id


def test_ses_unverified_sender_is_a_configuration_error(moto_ses, digest):
    message, _ = digest
    with pytest.raises(TransportConfigError, match="MessageRejected"):
        SESTransport("ses://eu-west-1").send("newsletter@news.example.org", "reader@example.org", message)


def test_ses_throttling_answer_is_throttled(moto_ses, digest, monkeypatch):
    message, _ = digest
    verify_identity("news.example.org")
    with SESThrottlingFront(moto_ses, ProviderState(throttle_every=2)) as front:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", front.url)
        t = SESTransport("ses://eu-west-1")
        t.send("x@y", "one@example.org", message)
        with pytest.raises(Throttled, match="TooManyRequestsException"):
            t.send("x@y", "two@example.org", message)
    assert [s.destinations[0] for s in ses_sent()] == ["one@example.org"]


def test_a_throttle_pauses_every_limiter_sharing_the_key(redis_url):
    a = RateLimiter(0, redis_url, key="test:throttle")
    b = RateLimiter(0, redis_url, key="test:throttle")
    assert b.paused_for() == 0
    a.throttle(1.0)
    time.sleep(0.25)  # let b's cached look at the pause expire (PAUSE_CHECK_EVERY)
    left = b.paused_for()
    assert 0.5 < left <= 1.0
    started = time.monotonic()
    b.acquire()
    assert 0.4 < time.monotonic() - started <= 1.0
    # Under a set rate the shared schedule also slows down after a throttle.
    c = RateLimiter(100, redis_url, key="test:throttle-rate")
    c.throttle(0.0)
    c.acquire()
    started = time.monotonic()
    c.acquire()
    assert time.monotonic() - started >= 0.015  # 20 ms slots instead of 10 ms


@pytest.mark.parametrize(
    ("reply", "throttled"),
    [
        ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail", True),
        ("451 4.7.500 Server busy, throttled; try again later", True),
        ("454 4.7.0 Too many messages, slow down", True),
        ("451 4.3.0 temporary failure", False),
        ("421 4.7.0 too busy, closing", False),
    ],
)
def test_smtp_rate_answers_are_throttling(reply, throttled):
    from worker.transports.smtp import SMTPTransport

    from .smtp_server import FaultyHandler, SMTPServer

    with SMTPServer(FaultyHandler()) as server:
        server.handler.data_replies["fast@example.org"] = reply
        t = SMTPTransport(server.url, timeout=10)
        with pytest.raises(TemporaryFailure) as exc:
            t.send("a@example.org", "fast@example.org", b"Subject: x\r\n\r\nbody\r\n")
        t.close()
    assert isinstance(exc.value, Throttled) is throttled


def test_no_answer_after_the_request_left_is_uncertain_and_never_resent(database, provider, monkeypatch, seed_path):
    """The provider accepted the message but its answer never came: the delivery is 'uncertain'
    (reported; `newsletter resend --uncertain` would resend it), not retried into a duplicate."""
    from worker.episodes import load_episode
    from worker.errors import DeliveryUncertain
    from worker.ledger import status
    from worker.publish import publish_episode
    from worker.sending import Sender

    from .factories import seed_subscribers

    monkeypatch.setenv("NEWSLETTER_MAIL_URL", f"postmark://pm-token@?endpoint={provider.url}")
    monkeypatch.setenv("NEWSLETTER_SMTP_TIMEOUT", "0.5")
    monkeypatch.setenv("NEWSLETTER_RETRY_BASE_DELAY", "0.01")
    reset_settings()
    settings = get_settings()
    emails = seed_subscribers(4)
    provider.state.slow[emails[1]] = 1.5
    t = PostmarkTransport(f"postmark://pm-token@?endpoint={provider.url}", timeout=0.5)
    with pytest.raises(DeliveryUncertain):
        t.send("x@y", emails[1], b"From: newsletter@news.example.org\r\nSubject: s\r\n\r\nhi\r\n")
    provider.state.delivered.clear()
    monkeypatch.setattr("worker.publish.start", lambda campaign_id: None)
    result = publish_episode(load_episode(seed_path, settings.tz), settings)
    for _ in range(3):  # however often the batch loop runs, the uncertain row is not sent again
        Sender(settings).run(result.campaign.id)
    from worker.db import session_scope

    with session_scope() as session:
        st = status(session, result.campaign.id).as_dict()
    assert (st["sent"], st["uncertain"], st["retry"], st["failed"]) == (3, 1, 0, 0)
    assert provider.state.per_recipient() == {e: 1 for e in emails}


class _Counting(Transport):
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, envelope_from, recipient, message, confirm=None):  # noqa: ANN001, ANN201
        self.sent.append(recipient)
        return True


def test_the_daily_cap_is_shared_and_waits_until_midnight(redis_url):
    from worker.transports.wrappers import DailyCap

    a_inner, b_inner = _Counting(), _Counting()
    a = DailyCap(a_inner, 3, f"test{time.time_ns()}", redis_url)
    b = DailyCap(b_inner, 3, a.name, redis_url)  # another worker process, same transport
    a.send("x@y", "1@example.org", b"m")
    b.send("x@y", "2@example.org", b"m")
    a.send("x@y", "3@example.org", b"m")
    with pytest.raises(Throttled) as exc:
        b.send("x@y", "4@example.org", b"m")
    assert sorted(a_inner.sent + b_inner.sent) == ["1@example.org", "2@example.org", "3@example.org"]
    assert 0 < exc.value.retry_after <= 86_401  # until the next UTC midnight


def test_get_transport_wraps_the_cap(monkeypatch):
    from worker.transports.wrappers import DailyCap

    t = get_transport(Settings(mail_url="mailgun://k@d.example.org", mailgun_daily_cap=50_000))
    assert isinstance(t, DailyCap) and t.cap == 50_000 and isinstance(t.inner, MailgunTransport)


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        ("TooManyRequestsException", 429, "Maximum sending rate exceeded.", Throttled),
        ("LimitExceededException", 400, "Daily message quota exceeded.", Throttled),
        ("SendingPausedException", 400, "Sending is paused for this account.", TransportConfigError),
        (
            "MessageRejected",
            400,
            "Email address is not verified. The following identities failed",
            TransportConfigError,
        ),
        ("MessageRejected", 400, "Transaction failed: message contains a virus", MessageRejected),
        ("BadRequestException", 400, "Illegal address", RecipientRejected),
        (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
            TransportConfigError,
        ),
        ("InternalFailure", 500, "", TemporaryFailure),
    ],
)
def test_ses_error_codes_map_onto_the_error_tree(code, status, message, expected):
    from botocore.exceptions import ClientError

    from worker.transports.ses import classify

    err = ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail"
    )
    assert type(classify(err, "r@example.org")) is expected


def test_sending_sessions_share_what_is_thread_safe(monkeypatch):
    """Each sending session gets its own transport; SES sessions share one botocore client (it
    is thread-safe, and each new one loads the service model again, ~9 MB), HTTP providers one
    TLS context; a changed AWS environment (another endpoint, other keys) gets a client of its own."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", "http://127.0.0.1:1")
    first, second = SESTransport("ses://eu-west-1"), SESTransport("ses://eu-west-1")
    assert first is not second and first.client is second.client
    assert SESTransport("ses://us-east-1").client is not first.client
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", "http://127.0.0.1:2")
    moved = SESTransport("ses://eu-west-1").client
    assert moved is not first.client and moved.meta.endpoint_url == "http://127.0.0.1:2"
    a, b = PostmarkTransport("postmark://t@"), MailgunTransport("mailgun://k@mg.example.org")
    assert a.client is not b.client
    assert a.client._transport._pool._ssl_context is b.client._transport._pool._ssl_context


def test_closing_one_ses_session_leaves_the_shared_client_to_the_others(moto_ses):
    verify_identity("news.example.org")
    first, second = SESTransport("ses://eu-west-1"), SESTransport("ses://eu-west-1")
    shared = first.client
    first.close()
    message = b"From: a@news.example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nhi\r\n"
    assert second.client is shared and second.send("a@news.example.org", "b@example.org", message)
    second.close()
