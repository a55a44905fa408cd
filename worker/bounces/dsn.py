"""Returned mail -> `Report`s. Delivery status notifications (RFC 3464 multipart/report) and the
common non-standard formats (qmail, Exim, Microsoft, Yahoo, …) are read by flufl.bounce, the
bounce detectors of GNU Mailman; its temporary failures count as soft bounces, its permanent
ones as hard bounces.

Which delivery a returned message is about: the VERP token in the address it came back to
(Delivered-To, X-Original-To, Envelope-To, To), else the Message-ID of the original message
quoted in the report together with the failed address.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from email.message import Message

from ..models import EventKind
from ..settings import Settings
from .events import Report
from .verp import VERP

_MID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


def _original_message_id(msg: Message) -> str | None:
    """The Message-ID of the message that bounced: from the returned message/rfc822 or
    text/rfc822-headers part, else the first Message-ID-looking string in the body."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        if ctype == "text/rfc822-headers":
            headers = email.message_from_bytes(_body(part))
            if headers.get("Message-ID"):
                return str(headers["Message-ID"]).strip()
    own = str(msg.get("Message-ID", ""))
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            text = _body(part).decode("utf-8", "replace")
            for m in re.finditer(r"^Message-ID:\s*(<[^>]+>)", text, re.I | re.M):
                if m.group(1) != own:
                    return m.group(1)
    return None


def _verp_delivery(msg: Message, verp: VERP | None) -> int | None:
    if verp is None:
        return None
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Return-Path"):
        for value in msg.get_all(header) or []:
            found = verp.delivery_id(str(value))
            if found is not None:
                return found
    return None


def parse_returned(raw: bytes, settings: Settings, verp: VERP | None) -> list[Report]:
    """Reports for one returned message: one per failed address, or one for the VERP-named
    delivery. An auto-reply or anything else that names no failure gives []."""
    from flufl.bounce import all_failures

    msg = email.message_from_bytes(raw)
    temporary, permanent = all_failures(msg)
    failed = {a.decode("utf-8", "replace").strip("<>").lower(): EventKind.SOFT_BOUNCE for a in temporary}
    failed.update({a.decode("utf-8", "replace").strip("<>").lower(): EventKind.HARD_BOUNCE for a in permanent})
    if not failed:
        return []
    key = str(msg.get("Message-ID") or "").strip() or hashlib.sha256(raw).hexdigest()
    detail = " ".join(str(msg.get("Subject", "")).split())[:300]
    payload = raw.decode("utf-8", "replace")
    delivery_id = _verp_delivery(msg, verp)
    if delivery_id is not None:
        kind = EventKind.HARD_BOUNCE if EventKind.HARD_BOUNCE in failed.values() else EventKind.SOFT_BOUNCE
        return [
            Report(
                source="dsn",
                event_key=f"dsn:{key}:d{delivery_id}",
                kind=kind,
                email="",
                delivery_id=delivery_id,
                detail=detail,
                payload=payload,
            )
        ]
    original = _original_message_id(msg)
    return [
        Report(
            source="dsn",
            event_key=f"dsn:{key}:{address}",
            kind=kind,
            email=address,
            message_id=original,
            detail=detail,
            payload=payload,
        )
        for address, kind in sorted(failed.items())
    ]


def _body(part: Message) -> bytes:
    """A MIME part's decoded body as bytes (b"" for a container)."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""
