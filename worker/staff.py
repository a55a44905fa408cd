"""Staff test emails: the real email, to allowed staff addresses only, outside the ledger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from .db import session_scope
from .episodes import Episode
from .errors import InputError, NotAllowed, RateLimited
from .message import Recipient, compose
from .models import EpisodeRecord, TestSend, utcnow
from .settings import Settings
from .subscribers import normalise_email
from .transports import get_transport

log = logging.getLogger(__name__)

SAMPLE_NAME = "Sample Subscriber"


@dataclass
class TestSendResult:
    """The outcome of one staff test email: the recipient, whether it was sent, its Message-ID
    when sent, the error text when not."""

    recipient: str
    ok: bool
    message_id: str | None = None
    error: str | None = None


def allowed(address: str, settings: Settings) -> bool:
    """Exact addresses or whole domains ('@example.com') from NEWSLETTER_STAFF_ALLOWLIST."""
    address = address.lower()
    domain = "@" + address.rpartition("@")[2]
    return any(entry == address or (entry.startswith("@") and entry == domain) for entry in settings.staff_allowed)


def check_recipients(recipients: list[str], settings: Settings) -> list[str]:
    """All valid and allowed, or InputError naming the first that is not: never a partial send."""
    if not recipients:
        raise InputError("give at least one recipient")
    if not settings.staff_allowed:
        raise NotAllowed("NEWSLETTER_STAFF_ALLOWLIST is empty: no address may receive test emails")
    out: list[str] = []
    for r in recipients:
        addr = normalise_email(r, where="recipient")
        if not allowed(addr, settings):
            raise NotAllowed(f"{addr} is not in NEWSLETTER_STAFF_ALLOWLIST")
        if addr.lower() not in (a.lower() for a in out):
            out.append(addr)
    return out


def send_test(
    episode: Episode, recipients: list[str], settings: Settings, requested_by: str = "", as_of: datetime | None = None
) -> list[TestSendResult]:
    """`as_of`: the send time the email is judged at (None = now), as for a publish."""
    recipients = check_recipients(recipients, settings)
    with session_scope(settings) as session:
        hour_ago = utcnow() - timedelta(hours=1)
        recent = session.scalar(select(func.count()).select_from(TestSend).where(TestSend.created_at >= hour_ago)) or 0
        if recent + len(recipients) > settings.test_send_rate_per_hour:
            raise RateLimited(
                f"test emails are limited to {settings.test_send_rate_per_hour} an hour "
                f"({recent} sent in the last hour)"
            )
        record = session.scalar(select(EpisodeRecord).where(EpisodeRecord.guid == episode.guid))
        episode_id = record.id if record else None
    template = compose(
        episode,
        settings,
        as_of,
        name="test",
        unsubscribe_target=f"{settings.base_url}/unsubscribe-test",
        message_id_salt=f"test-{utcnow().isoformat()}",
    )
    results = []
    with get_transport(settings) as transport:
        for addr in recipients:
            message, mid = template.build(Recipient(addr, SAMPLE_NAME))
            try:
                transport.send(settings.envelope_from, addr, message)
                results.append(TestSendResult(addr, True, mid))
                log.info("test email for %s sent to %s by %s", episode.slug, addr, requested_by or "cli")
            except Exception as exc:  # noqa: BLE001 - reported per recipient
                results.append(TestSendResult(addr, False, None, str(exc)))
    with session_scope(settings) as session:
        for r in results:
            session.add(
                TestSend(
                    episode_id=episode_id,
                    recipient=r.recipient,
                    requested_by=requested_by[:200],
                    status="sent" if r.ok else "failed",
                    message_id=r.message_id,
                    error=r.error,
                )
            )
    return results
