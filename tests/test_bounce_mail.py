"""Returned mail: VERP envelope senders, DSNs (RFC 3464 and qmail's non-standard form) read
from a Maildir and from a local IMAP server, matched by VERP token, then Message-ID."""

from __future__ import annotations

import mailbox
import uuid

import pytest
from sqlalchemy import select

from worker.bounces.dsn import parse_returned
from worker.bounces.mailbox import poll_mailbox
from worker.bounces.verp import VERP
from worker.db import session_scope
from worker.errors import ConfigError, TemporaryFailure
from worker.models import Delivery, DeliveryEvent, Subscriber
from worker.settings import Settings, get_settings, reset_settings

from .factories import cli
from .feedback_helpers import sent_delivery
from .imap_server import IMAPServer, Mailbox, POP3Server

VERP_ADDR = "bounces@news.example.org"


def dsn(
    to: str,
    failed: str,
    original_mid: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
) -> bytes:
    """A Postfix-style RFC 3464 delivery status notification."""
    boundary = "B" + uuid.uuid4().hex
    return (
        f"""Return-Path: <>
Delivered-To: {to}
Received: by mx.news.example.org (Postfix) id 3F1; Sun, 29 Nov 2026 12:00:09 +0000 (UTC)
Date: Sun, 29 Nov 2026 12:00:09 +0000 (UTC)
From: MAILER-DAEMON@mx.remote.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"
Message-Id: <{uuid.uuid4().hex}@mx.remote.example>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example
Arrival-Date: Sun, 29 Nov 2026 12:00:08 +0000 (UTC)

Final-Recipient: rfc822; {failed}
Original-Recipient: rfc822;{failed}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic.format(rcpt=failed)}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: The Roundup <newsletter@news.example.org>
To: <{failed}>
Subject: Episode
Message-ID: {original_mid}

--{boundary}--
"""
    ).encode()


def qmail_bounce(to: str, failed: str, original_mid: str) -> bytes:
    return (
        f"""Return-Path: <>
Delivered-To: {to}
Date: 29 Nov 2026 12:00:09 -0000
From: MAILER-DAEMON@qmail.remote.example
To: {to}
Subject: failure notice

Hi. This is the qmail-send program at qmail.remote.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{failed}>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 unknown user
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

Return-Path: <newsletter@news.example.org>
From: The Roundup <newsletter@news.example.org>
To: <{failed}>
Subject: Episode
Message-ID: {original_mid}

Hello
"""
    ).encode()


VACATION = b"""From: someone@example.org
To: bounces@news.example.org
Subject: Out of office
Auto-Submitted: auto-replied

I am away until Monday.
"""


@pytest.fixture
def verp_env(database, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_VERP_ADDR", VERP_ADDR)
    reset_settings()
    return get_settings()


def sent(email: str) -> Delivery:
    with session_scope() as session:
        d = sent_delivery(session, email)
        session.expunge(d)
        return d


def subscriber_status(email: str) -> str:
    with session_scope() as session:
        return session.scalar(select(Subscriber.status).where(Subscriber.email_key == email))


def test_verp_addresses_are_signed_and_read_back(settings):
    v = VERP(Settings(verp_addr=VERP_ADDR, secret_key="k1"))
    addr = v.address(1234)
    assert addr.startswith("bounces+d1234-") and addr.endswith("@news.example.org")
    assert v.delivery_id(addr) == 1234 and v.delivery_id(addr.upper()) == 1234
    assert v.delivery_id(addr.replace("d1234", "d1235")) is None  # someone else's delivery
    assert VERP(Settings(verp_addr=VERP_ADDR, secret_key="k2")).delivery_id(addr) is None
    assert v.delivery_id("bounces@news.example.org") is None
    with pytest.raises(ConfigError, match="NEWSLETTER_VERP_ADDR"):
        VERP(Settings(verp_addr="not an address"))


def test_dsn_forms_are_read(verp_env):
    v = VERP(verp_env)
    hard = parse_returned(dsn(v.address(7), "gone@example.org", "<m1@news.example.org>"), verp_env, v)
    assert [(r.kind, r.delivery_id) for r in hard] == [("hard_bounce", 7)]
    soft = parse_returned(
        dsn(
            v.address(8),
            "full@example.org",
            "<m2@x>",
            action="delayed",
            status="4.2.2",
            diagnostic="smtp; 452 4.2.2 Mailbox full",
        ),
        verp_env,
        v,
    )
    assert [(r.kind, r.delivery_id) for r in soft] == [("soft_bounce", 8)]
    q = parse_returned(qmail_bounce(VERP_ADDR, "gone@example.org", "<m3@news.example.org>"), verp_env, v)
    assert [(r.kind, r.email, r.message_id) for r in q] == [
        ("hard_bounce", "gone@example.org", "<m3@news.example.org>")
    ]
    assert parse_returned(VACATION, verp_env, v) == []


def write_maildir(path, messages: list[bytes]) -> None:  # noqa: ANN001
    box = mailbox.Maildir(str(path), create=True)
    for raw in messages:
        box.add(raw)


def test_returned_mail_in_a_maildir_suppresses_the_right_address(verp_env, monkeypatch, tmp_path):
    v = VERP(verp_env)
    by_verp = sent("verp-gone@example.org")
    by_mid = sent("mid-gone@example.org")
    soft = sent("soft@example.org")
    sent("forged@example.org")
    box = tmp_path / "bounces"
    write_maildir(
        box,
        [
            dsn(v.address(by_verp.id), "some-alias@example.org", "<unrelated@x>"),  # VERP wins over the text
            qmail_bounce(VERP_ADDR, "mid-gone@example.org", by_mid.message_id),
            dsn(
                v.address(soft.id),
                "soft@example.org",
                soft.message_id,
                action="delayed",
                status="4.2.2",
                diagnostic="smtp; 452 4.2.2 Mailbox full",
            ),
            qmail_bounce(VERP_ADDR, "forged@example.org", "<guessed@news.example.org>"),  # matches no delivery
            VACATION,
        ],
    )
    monkeypatch.setenv("NEWSLETTER_BOUNCE_MAILBOX", f"maildir:{box}")
    reset_settings()
    proc = cli("bounces", "poll", check=True)
    assert "5 messages, 4 new bounce reports" in proc.stdout
    assert subscriber_status("verp-gone@example.org") == "bounced"
    assert subscriber_status("mid-gone@example.org") == "bounced"
    assert subscriber_status("soft@example.org") == "active"  # one soft bounce is only counted
    assert subscriber_status("forged@example.org") == "active"
    with session_scope() as session:
        assert session.get(Delivery, by_verp.id).status == "bounced"
        kinds = sorted(session.scalars(select(DeliveryEvent.kind)))
    assert kinds == ["hard_bounce", "hard_bounce", "hard_bounce", "soft_bounce"]
    assert "0 new bounce reports" in cli("bounces", "poll", check=True).stdout  # read once, flagged seen


def test_returned_mail_over_imap(verp_env, monkeypatch):
    v = VERP(verp_env)
    gone = sent("imap-gone@example.org")
    store = Mailbox()
    store.add(dsn(v.address(gone.id), "imap-gone@example.org", gone.message_id))
    store.add(VACATION)
    with IMAPServer(store) as server:
        monkeypatch.setenv("NEWSLETTER_BOUNCE_MAILBOX", f"imap://bounces:secret@127.0.0.1:{server.port}/INBOX")
        reset_settings()
        result = poll_mailbox(get_settings())
        assert (result.messages, result.recorded, result.effects) == (2, 1, {"suppressed": 1})
        assert subscriber_status("imap-gone@example.org") == "bounced"
        assert store.messages == []  # both read: marked deleted and expunged
        monkeypatch.setenv("NEWSLETTER_BOUNCE_MAILBOX", f"imap://bounces:wrong@127.0.0.1:{server.port}/INBOX")
        reset_settings()
        with pytest.raises(TemporaryFailure, match="127.0.0.1"):
            poll_mailbox(get_settings())


def test_returned_mail_over_pop3(verp_env, monkeypatch):
    v = VERP(verp_env)
    gone = sent("pop-gone@example.org")
    store = Mailbox()
    store.add(dsn(v.address(gone.id), "pop-gone@example.org", gone.message_id))
    store.add(VACATION)
    with POP3Server(store) as server:
        monkeypatch.setenv("NEWSLETTER_BOUNCE_MAILBOX", f"pop3://bounces:secret@127.0.0.1:{server.port}")
        reset_settings()
        result = poll_mailbox(get_settings())
        assert (result.messages, result.recorded) == (2, 1)
        assert subscriber_status("pop-gone@example.org") == "bounced"
        assert store.messages == []  # deleted on QUIT
        monkeypatch.setenv("NEWSLETTER_BOUNCE_MAILBOX", f"pop3://bounces:wrong@127.0.0.1:{server.port}")
        reset_settings()
        with pytest.raises(TemporaryFailure):
            poll_mailbox(get_settings())


def test_a_campaign_send_uses_a_verp_envelope_per_delivery(verp_env, seed_path, tmp_path, monkeypatch):
    """Through the real sending path into the Maildir: the Return-Path is the delivery's VERP
    address, and a DSN sent back to it suppresses exactly that subscriber."""
    from worker.episodes import load_episode
    from worker.publish import publish_episode
    from worker.sending import Sender

    from .factories import seed_subscribers

    emails = seed_subscribers(3)
    settings = get_settings()
    monkeypatch.setattr("worker.publish.start", lambda campaign_id: None)  # no broker: send in-process
    result = publish_episode(load_episode(seed_path, settings.tz), settings)
    Sender(settings).run(result.campaign.id)
    outbox = mailbox.Maildir(settings.mail_url.split(":", 1)[1], create=False)
    paths = {}
    for key in outbox.keys():
        msg = outbox[key]
        paths[str(msg["Delivered-To"])] = str(msg["Return-Path"]).strip("<>")
    v = VERP(settings)
    with session_scope() as session:
        rows = {d.email: d for d in session.scalars(select(Delivery))}
    assert {e: v.delivery_id(paths[e]) for e in emails} == {e: rows[e].id for e in emails}
    box = tmp_path / "returned"
    write_maildir(box, [dsn(paths[emails[1]], emails[1], rows[emails[1]].message_id)])
    monkeypatch.setenv("NEWSLETTER_BOUNCE_MAILBOX", f"maildir:{box}")
    reset_settings()
    poll_mailbox(get_settings())
    assert [subscriber_status(e) for e in emails] == ["active", "bounced", "active"]
