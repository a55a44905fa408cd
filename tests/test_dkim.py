"""DKIM on every message type (digest, staff test email, confirmation email), over SMTP and into
the Maildir, verified with dkimpy against the public key (its DNS lookup answered here)."""

from __future__ import annotations

import mailbox
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from worker.db import session_scope
from worker.dkim import Signer
from worker.errors import ConfigError
from worker.models import Subscriber
from worker.settings import Settings, get_settings, reset_settings

from .factories import cli, sample_episode, seed_subscribers

SELECTOR, DOMAIN = "nl2026", "news.example.org"


@pytest.fixture
def dkim_key(monkeypatch, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,  # what `openssl genrsa` writes
            serialization.NoEncryption(),
        )
    )
    for k, v in {
        "NEWSLETTER_DKIM_SELECTOR": SELECTOR,
        "NEWSLETTER_DKIM_DOMAIN": DOMAIN,
        "NEWSLETTER_DKIM_KEY_FILE": str(path),
        "NEWSLETTER_STAFF_ALLOWLIST": "@example.org",
    }.items():
        monkeypatch.setenv(k, v)
    reset_settings()
    return Signer(get_settings()).public_record()


def verified(raw: bytes, record: str) -> bool:
    """dkimpy's verification, with the one DNS answer it needs given here."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record.encode()

    return dkim.verify(raw, dnsfunc=dnsfunc)


def signature_tags(raw: bytes) -> dict[str, str]:
    header = re.search(rb"^DKIM-Signature:(.*?)\r?\n(?! )(?!\t)", raw, re.S | re.M).group(1)
    text = re.sub(r"\s+", "", header.decode())
    return dict(part.split("=", 1) for part in text.split(";") if part)


def outbox() -> list[bytes]:
    box = mailbox.Maildir(get_settings().mail_url.split(":", 1)[1], create=False)
    return [box.get_bytes(k) for k in box.keys()]


def test_digest_test_email_and_confirmation_are_signed_into_the_maildir(database, dkim_key, monkeypatch):
    from worker.joining_mail import send_joining_email
    from worker.publish import publish_episode
    from worker.sending import Sender
    from worker.staff import send_test

    settings = get_settings()
    seed_subscribers(2)
    monkeypatch.setattr("worker.publish.start", lambda campaign_id: None)  # send in this process
    result = publish_episode(sample_episode(), settings)
    Sender(settings).run(result.campaign.id)
    send_test(sample_episode(), ["staff@example.org"], settings)
    with session_scope() as session:
        pending = Subscriber(
            email="new@example.org", email_key="new@example.org", status="pending", confirm_nonce="n0nce"
        )
        session.add(pending)
        session.flush()
        sid = pending.id
    assert send_joining_email(settings, "confirm", sid)
    messages = outbox()
    subjects = sorted(re.search(rb"^Subject: (.*)$", m, re.M).group(1).decode()[:6] for m in messages)
    assert len(messages) == 4 and any(s.startswith("[TEST]") for s in subjects)
    for raw in messages:
        assert verified(raw, dkim_key), raw[:400]
        tags = signature_tags(raw)
        assert tags["c"] == "relaxed/relaxed" and tags["d"] == DOMAIN and tags["s"] == SELECTOR
        signed = tags["h"].lower().split(":")
        for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type"):
            assert name in signed
    digest = next(m for m in messages if b"List-Unsubscribe-Post" in m and b"[TEST]" not in m)
    assert {"list-id", "list-unsubscribe", "list-unsubscribe-post"} <= set(
        signature_tags(digest)["h"].lower().split(":")
    )
    # A changed header no longer verifies.
    assert not verified(re.sub(rb"^Subject: ", b"Subject: Re: ", digest, count=1, flags=re.M), dkim_key)


def test_mail_sent_over_smtp_is_signed(dkim_key, smtp_server):
    from worker.message import Recipient, compose
    from worker.transports import get_transport

    settings = get_settings()
    message, _ = compose(sample_episode(), settings).build(Recipient("reader@example.org", "Ada"))
    with get_transport(settings) as transport:
        transport.send(settings.envelope_from, "reader@example.org", message)
    (got,) = smtp_server.handler.received
    assert got.data.endswith(message)  # the built bytes, one header in front
    assert got.data.startswith(b"DKIM-Signature:") and verified(got.data, dkim_key)


def test_half_a_dkim_configuration_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="all of NEWSLETTER_DKIM_SELECTOR"):
        Signer(Settings(dkim_selector="s"))
    with pytest.raises(ConfigError, match="NEWSLETTER_DKIM_KEY_FILE"):
        Signer(Settings(dkim_selector="s", dkim_domain="d.example", dkim_key_file=str(tmp_path / "missing.pem")))


def test_dns_records_prints_spf_dkim_and_dmarc(dkim_key, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_MAIL_URL", "ses://eu-west-1")
    out = cli("dns-records", check=True).stdout
    assert 'news.example.org. IN TXT "v=spf1 include:amazonses.com ~all"' in out
    assert f"{SELECTOR}._domainkey.{DOMAIN}. IN TXT" in out
    quoted = re.search(rf"{SELECTOR}\._domainkey\.\S+ IN TXT (.*)", out).group(1)
    assert "".join(re.findall(r'"([^"]*)"', quoted)) == dkim_key  # split in 255-octet strings, same key
    assert '_dmarc.news.example.org. IN TXT "v=DMARC1; p=none' in out


def test_the_openssl_signature_is_the_one_dkimpy_would_make(dkim_key):
    """PKCS#1 v1.5 is deterministic: OpenSSL's signature equals dkimpy's pure-Python one."""
    import hashlib

    import dkim.crypto

    signer = Signer(get_settings())
    pk = dkim.crypto.parse_pem_private_key(signer.key)
    for algorithm in (hashlib.sha256, hashlib.sha1):
        assert dkim.RSASSA_PKCS1_v1_5_sign(algorithm(b"x"), pk) == dkim.crypto.RSASSA_PKCS1_v1_5_sign(
            algorithm(b"x"), pk
        )
    assert dkim.RSASSA_PKCS1_v1_5_sign is not dkim.crypto.RSASSA_PKCS1_v1_5_sign
