"""Provider webhooks -> verified `Report`s. One function per provider; each raises
`WebhookRejected` (with the 4xx to answer) for anything forged, stale or malformed, before a
single report is made. `intake` records them.

- SES (through SNS): the SNS signature (v1 or v2, certificate from an SNS host) and a TopicArn on
  NEWSLETTER_SES_SNS_TOPICS; replays: the SNS MessageId is recorded and the Timestamp must be at
  most an hour old; a replay is answered 409.
- Postmark: HTTP basic auth with NEWSLETTER_POSTMARK_WEBHOOK_SECRET; replays: the bounce or
  complaint ID is recorded; answered 403 (Postmark then stops retrying).
- Mailgun: HMAC-SHA256(signing key, timestamp + token); replays: the timestamp must be within
  NEWSLETTER_WEBHOOK_REPLAY_WINDOW and the event id is recorded; answered 406 (Mailgun then
  stops retrying).

Payload shapes: SES notification contents
(https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html), Postmark bounce, spam
complaint and delivery webhooks (https://postmarkapp.com/developer/webhooks/webhooks-overview),
Mailgun webhooks with `signature` and `event-data`
(https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/) — as read by
django-anymail's webhook modules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import WebhookRejected
from ..models import EventKind
from ..settings import Settings
from .events import Report, record
from .sns import CertificateStore, fetch_https, verify

SNS_MAX_AGE = 3600.0  # seconds: SNS retries a failed delivery for up to about an hour

POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "Undeliverable", "Unknown"}


def _json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected("the body is not JSON", 400) from exc
    if not isinstance(data, dict):
        raise WebhookRejected("the body is not a JSON object", 400)
    return data


def _when(value: object) -> datetime | None:
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError, OverflowError):
        return None


# -- Amazon SES through SNS ---------------------------------------------------------------------


class SNSEndpoint:
    """What /hooks/ses needs from outside: the certificate store and the way to confirm a
    subscription (a GET of SubscribeURL, which must be an SNS URL too)."""

    def __init__(self, store: CertificateStore | None = None, confirm: Callable[[str], bytes] = fetch_https):
        self.store = store or CertificateStore()
        self.confirm = confirm


def parse_ses(body: bytes, headers: Mapping[str, str], settings: Settings, sns: SNSEndpoint) -> list[Report]:
    """An SNS post (`body`, its headers) -> reports, after the topic, the signature and the
    timestamp are checked; a SubscriptionConfirmation is confirmed and gives []. Raises
    WebhookRejected (400 malformed or stale, 403 forged or not ours)."""
    topics = {t.strip() for t in settings.ses_sns_topics.split(",") if t.strip()}
    if not topics:
        raise WebhookRejected("SES webhooks are off: NEWSLETTER_SES_SNS_TOPICS is empty", 403)
    message = _json(body)
    kind = message.get("Type")
    if headers.get("x-amz-sns-message-type") != kind:
        raise WebhookRejected("x-amz-sns-message-type does not match the body's Type", 400)
    if message.get("TopicArn") not in topics:
        raise WebhookRejected("TopicArn is not on NEWSLETTER_SES_SNS_TOPICS", 403)
    verify(message, sns.store)
    sent = _when(message.get("Timestamp"))
    if sent is None or abs(time.time() - sent.timestamp()) > max(SNS_MAX_AGE, settings.webhook_replay_window):
        raise WebhookRejected("SNS Timestamp missing or too old", 400)
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not sns.store.allowed(url):
            raise WebhookRejected("SubscribeURL is not an SNS https URL", 403)
        sns.confirm(url)
        return []
    if kind != "Notification":
        return []  # UnsubscribeConfirmation: nothing to do
    try:
        event = json.loads(message.get("Message") or "")
    except (ValueError, TypeError):
        return []  # "Successfully validated SNS topic for Amazon SES event publishing." and the like
    if not isinstance(event, dict):
        raise WebhookRejected("SES notification is not a JSON object", 400)
    return ses_reports(event, str(message.get("MessageId")), body.decode("utf-8", "replace"))


def ses_reports(event: dict, sns_id: str, payload: str) -> list[Report]:
    """Reports from one SES notification (`notificationType`) or event (`eventType`)."""
    what = event.get("notificationType") or event.get("eventType")
    mail = event.get("mail") or {}
    common: dict[str, Any] = {
        "source": "ses",
        "payload": payload,
        "provider_message_id": mail.get("messageId"),
        "message_id": (mail.get("commonHeaders") or {}).get("messageId"),
    }
    out = []
    if what == "Bounce":
        bounce = event.get("bounce") or {}
        kind = EventKind.HARD_BOUNCE if bounce.get("bounceType") == "Permanent" else EventKind.SOFT_BOUNCE
        for r in bounce.get("bouncedRecipients") or []:
            email = str(r.get("emailAddress", ""))
            why = r.get("diagnosticCode") or r.get("status") or ""
            detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}: {why}"
            out.append(
                Report(
                    event_key=f"ses:{sns_id}:{email.lower()}",
                    kind=kind,
                    email=email,
                    detail=detail,
                    occurred_at=_when(bounce.get("timestamp")),
                    **common,
                )
            )
    elif what == "Complaint":
        complaint = event.get("complaint") or {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        for r in complaint.get("complainedRecipients") or []:
            email = str(r.get("emailAddress", ""))
            out.append(
                Report(
                    event_key=f"ses:{sns_id}:{email.lower()}",
                    kind=EventKind.COMPLAINT,
                    email=email,
                    detail=str(complaint.get("complaintFeedbackType") or "complaint"),
                    occurred_at=_when(complaint.get("timestamp")),
                    **common,
                )
            )
    elif what == "Delivery":
        delivery = event.get("delivery") or {}
        for email in delivery.get("recipients") or []:
            out.append(
                Report(
                    event_key=f"ses:{sns_id}:{str(email).lower()}",
                    kind=EventKind.DELIVERY,
                    email=str(email),
                    detail=str(delivery.get("smtpResponse") or ""),
                    occurred_at=_when(delivery.get("timestamp")),
                    **common,
                )
            )
    return out


# -- Postmark -----------------------------------------------------------------------------------


def parse_postmark(body: bytes, authorization: str, settings: Settings) -> list[Report]:
    """A Postmark webhook post (`authorization`: its Authorization header) -> reports. Raises
    WebhookRejected (401 wrong or missing credentials, 403 webhooks off, 400 malformed)."""
    secret = settings.postmark_webhook_secret
    if not secret:
        raise WebhookRejected("Postmark webhooks are off: NEWSLETTER_POSTMARK_WEBHOOK_SECRET is empty", 403)
    scheme, _, value = authorization.partition(" ")
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = password = ""
    ok_user = hmac.compare_digest(user.encode(), settings.postmark_webhook_user.encode())
    ok_secret = hmac.compare_digest(password.encode(), secret.encode())
    if scheme.lower() != "basic" or not (ok_user and ok_secret):
        raise WebhookRejected("Postmark webhook credentials missing or wrong", 401)
    data = _json(body)
    record_type = data.get("RecordType")
    payload = body.decode("utf-8", "replace")
    common: dict[str, Any] = {"source": "postmark", "payload": payload, "provider_message_id": data.get("MessageID")}
    if record_type == "Bounce":
        kind = (
            EventKind.HARD_BOUNCE
            if data.get("Type") in POSTMARK_HARD
            else EventKind.SOFT_BOUNCE
            if data.get("Type") in POSTMARK_SOFT
            else None
        )
        if kind is None or not data.get("ID") or not data.get("Email"):
            return []  # auto-responders, subscribe requests, …: nothing about deliverability
        return [
            Report(
                event_key=f"postmark:bounce:{data['ID']}",
                kind=kind,
                email=str(data["Email"]),
                detail=f"{data.get('Type')}: {data.get('Description') or ''} {data.get('Details') or ''}".strip(),
                occurred_at=_when(data.get("BouncedAt")),
                **common,
            )
        ]
    if record_type == "SpamComplaint":
        if not data.get("ID") or not data.get("Email"):
            raise WebhookRejected("Postmark SpamComplaint without ID or Email", 400)
        return [
            Report(
                event_key=f"postmark:complaint:{data['ID']}",
                kind=EventKind.COMPLAINT,
                email=str(data["Email"]),
                detail="SpamComplaint",
                occurred_at=_when(data.get("BouncedAt")),
                **common,
            )
        ]
    if record_type == "Delivery":
        if not data.get("MessageID") or not data.get("Recipient"):
            raise WebhookRejected("Postmark Delivery without MessageID or Recipient", 400)
        return [
            Report(
                event_key=f"postmark:delivery:{data['MessageID']}:{str(data['Recipient']).lower()}",
                kind=EventKind.DELIVERY,
                email=str(data["Recipient"]),
                detail=str(data.get("Details") or ""),
                occurred_at=_when(data.get("DeliveredAt")),
                **common,
            )
        ]
    if record_type is None:
        raise WebhookRejected("not a Postmark webhook (no RecordType)", 400)
    return []


# -- Mailgun ------------------------------------------------------------------------------------


def parse_mailgun(body: bytes, settings: Settings, now: float | None = None) -> list[Report]:
    """A Mailgun webhook post -> reports (`now`: seconds since the epoch, for tests). Raises
    WebhookRejected (403 forged or webhooks off, 406 outside the replay window, 400 malformed)."""
    key = settings.mailgun_webhook_signing_key
    if not key:
        raise WebhookRejected("Mailgun webhooks are off: NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY is empty", 403)
    data = _json(body)
    sig = data.get("signature")
    if not isinstance(sig, dict) or not all(
        isinstance(sig.get(k), str | int) for k in ("timestamp", "token", "signature")
    ):
        raise WebhookRejected("Mailgun webhook without a signature block", 400)
    expected = hmac.new(key.encode(), f"{sig['timestamp']}{sig['token']}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(sig["signature"])):
        raise WebhookRejected("Mailgun signature does not verify", 403)
    try:
        age = abs((now if now is not None else time.time()) - float(sig["timestamp"]))
    except ValueError as exc:
        raise WebhookRejected("Mailgun timestamp is not a number", 400) from exc
    if age > settings.webhook_replay_window:
        raise WebhookRejected("Mailgun timestamp outside the replay window", 406)
    event = data.get("event-data")
    if not isinstance(event, dict) or not event.get("id") or not event.get("recipient"):
        raise WebhookRejected("Mailgun webhook without event-data id and recipient", 400)
    name, severity = event.get("event"), event.get("severity")
    if name == "failed":
        kind: str | None = EventKind.HARD_BOUNCE if severity == "permanent" else EventKind.SOFT_BOUNCE
    else:
        kind = {"complained": EventKind.COMPLAINT, "delivered": EventKind.DELIVERY}.get(str(name))
    if kind is None:
        return []
    mid = str(((event.get("message") or {}).get("headers") or {}).get("message-id") or "").strip("<>")
    status = event.get("delivery-status") or {}
    why = status.get("description") or status.get("message") or event.get("reason") or ""
    detail = f"{name} {severity or ''}: {status.get('code') or ''} {why}"
    email = str(event["recipient"])
    return [
        Report(
            source="mailgun",
            event_key=f"mailgun:{event['id']}:{email.lower()}",
            kind=kind,
            email=email,
            detail=" ".join(detail.split()),
            payload=body.decode("utf-8", "replace"),
            provider_message_id=mid or None,
            message_id=f"<{mid}>" if mid else None,
            occurred_at=_when(event.get("timestamp")),
        )
    ]


# -- recording ----------------------------------------------------------------------------------


def intake(settings: Settings, reports: list[Report]) -> tuple[int, int]:
    """Record reports in one transaction. Returns (recorded, duplicates)."""
    from ..db import session_scope

    recorded = duplicates = 0
    with session_scope(settings) as session:
        for report in reports:
            if record(session, report, settings).duplicate:
                duplicates += 1
            else:
                recorded += 1
    return recorded, duplicates
