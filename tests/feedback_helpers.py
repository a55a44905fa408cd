"""Builders for bounce and complaint tests: sent deliveries without a send, a self-signed SNS
signing certificate served over local https, and signed SNS / Mailgun posts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from worker.models import Campaign, Delivery, EpisodeRecord, Subscriber, utcnow

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"


def sent_delivery(
    session,
    email: str,
    *,
    campaign: Campaign | None = None,
    provider_id: str | None = None,
    message_id: str | None = None,
) -> Delivery:  # noqa: ANN001
    """A subscriber (made if new) and a 'sent' delivery to them in `campaign` (made if None)."""
    if campaign is None:
        n = uuid.uuid4().hex[:8]
        ep = EpisodeRecord(guid=f"urn:test:{n}", slug=f"ep-{n}", title="Episode", published_on=utcnow(), data="{}")
        session.add(ep)
        session.flush()
        campaign = Campaign(
            episode_id=ep.id,
            subject="s",
            html="h",
            text="t",
            nonce="n",
            as_of=utcnow(),
            started_at=utcnow() - dt.timedelta(minutes=5),
            status="done",
        )
        session.add(campaign)
        session.flush()
    sub = session.query(Subscriber).filter_by(email_key=email.lower()).one_or_none()
    if sub is None:
        sub = Subscriber(email=email, email_key=email.lower(), status="active")
        session.add(sub)
        session.flush()
    d = Delivery(
        campaign_id=campaign.id,
        subscriber_id=sub.id,
        email=email,
        status="sent",
        message_id=message_id or f"<nl.{uuid.uuid4().hex[:12]}@news.example.org>",
        provider_message_id=provider_id,
        sent_at=utcnow(),
        attempts=1,
    )
    session.add(d)
    session.flush()
    return d


# -- SNS ----------------------------------------------------------------------------------------


def _cert(key, subject: str, san: str | None = None):  # noqa: ANN001, ANN202
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if san:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


class SNSCertServer:
    """A local https server handing out a self-made SNS signing certificate at /sns.pem."""

    def __init__(self, tmp: Path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = _cert(self.signing_key, "sns.amazonaws.com").public_bytes(serialization.Encoding.PEM)
        tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls_cert = _cert(tls_key, "127.0.0.1", san="127.0.0.1")
        self.ca_file = tmp / "tls.pem"
        self.ca_file.write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
        key_file = tmp / "tls.key"
        key_file.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pem = self.pem
        self.confirmed: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = pem if self.path == "/sns.pem" else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.cert_url = f"{self.url}/sns.pem"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def endpoint(self):  # noqa: ANN201
        """An SNSEndpoint whose host rule admits this server and whose fetches trust its TLS cert."""
        import httpx

        from worker.bounces.sns import CertificateStore
        from worker.bounces.webhooks import SNSEndpoint

        def fetch(url: str) -> bytes:
            return httpx.get(url, verify=ssl.create_default_context(cafile=str(self.ca_file))).content

        def confirm(url: str) -> bytes:
            self.confirmed.append(url)
            return fetch(url)

        return SNSEndpoint(CertificateStore(allowed=lambda u: u.startswith(self.url + "/"), fetch=fetch), confirm)

    def sign(self, message: dict, version: str = "1") -> dict:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        from worker.bounces.sns import string_to_sign

        message = {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": message.get("SigningCertURL", self.cert_url),
        }
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        sig = self.signing_key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(sig).decode()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sns_notification(ses_event: dict, *, message_id: str | None = None, timestamp: str | None = None) -> dict:
    return {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(ses_event),
        "Timestamp": timestamp or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }


def ses_mail(email: str, ses_id: str, our_mid: str) -> dict:
    return {
        "timestamp": "2026-11-29T12:00:00.000Z",
        "source": "newsletter@news.example.org",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/news.example.org",
        "sendingAccountId": "123456789012",
        "messageId": ses_id,
        "destination": [email],
        "headersTruncated": False,
        "commonHeaders": {
            "from": ["The Roundup <newsletter@news.example.org>"],
            "to": [email],
            "messageId": our_mid,
            "subject": "Episode",
        },
    }


def ses_bounce(email: str, ses_id: str, our_mid: str, permanent: bool = True) -> dict:
    return {
        "notificationType": "Bounce",
        "mail": ses_mail(email, ses_id, our_mid),
        "bounce": {
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General" if permanent else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1" if permanent else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown" if permanent else "smtp; 452 4.2.2 mailbox full",
                }
            ],
            "timestamp": "2026-11-29T12:00:05.000Z",
            "feedbackId": str(uuid.uuid4()),
            "reportingMTA": "dsn; a8-53.smtp-out.amazonses.com",
        },
    }


def ses_complaint(email: str, ses_id: str, our_mid: str) -> dict:
    return {
        "notificationType": "Complaint",
        "mail": ses_mail(email, ses_id, our_mid),
        "complaint": {
            "complainedRecipients": [{"emailAddress": email}],
            "timestamp": "2026-11-29T12:10:00Z",
            "feedbackId": str(uuid.uuid4()),
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
            "complaintFeedbackType": "abuse",
        },
    }


def ses_delivery(email: str, ses_id: str, our_mid: str) -> dict:
    return {
        "notificationType": "Delivery",
        "mail": ses_mail(email, ses_id, our_mid),
        "delivery": {
            "timestamp": "2026-11-29T12:00:02Z",
            "processingTimeMillis": 546,
            "recipients": [email],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out",
        },
    }


# -- Mailgun ------------------------------------------------------------------------------------


def mailgun_post(key: str, event_data: dict, *, timestamp: int | None = None, token: str | None = None) -> bytes:
    import time

    ts = str(timestamp if timestamp is not None else int(time.time()))
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    sig = hmac.new(key.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event_data}
    ).encode()


def mailgun_event(event: str, email: str, mid: str, severity: str | None = None) -> dict:
    data = {
        "id": uuid.uuid4().hex[:22],
        "timestamp": 1764417600.5,
        "event": event,
        "recipient": email,
        "recipient-domain": email.split("@")[1],
        "log-level": "error" if event == "failed" else "info",
        "message": {
            "headers": {
                "to": email,
                "message-id": mid.strip("<>"),
                "from": "newsletter@news.example.org",
                "subject": "Episode",
            },
            "attachments": [],
            "size": 19001,
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "tags": [],
        "user-variables": {},
    }
    if severity:
        data["severity"] = severity
        data["reason"] = "bounce" if severity == "permanent" else "generic"
        data["delivery-status"] = {
            "code": 550 if severity == "permanent" else 452,
            "message": "5.1.1 The email account that you tried to reach does not exist"
            if severity == "permanent"
            else "4.2.2 Mailbox full",
            "description": "",
            "attempt-no": 1,
        }
    return data
