"""Ledger moves for deliveries the transport could not even try: throttled messages and
campaigns paused by a configuration error. Neither counts as an attempt or touches a subscriber.

(Beside `ledger`, which records what was tried; the sender calls both. Times are the
database's clock, as everywhere in the ledger: worker/clock.py.)
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.orm import Session

from .clock import db_now
from .db import rowcount
from .models import Campaign, CampaignStatus, Delivery, DeliveryStatus

log = logging.getLogger(__name__)
D = DeliveryStatus


def mark_throttled(session: Session, token: str, delivery_id: int, error: str, wait: float) -> None:
    """The row goes back to 'retry', due in `wait` seconds, and its attempt is given back: being
    throttled never brings a recipient nearer to 'failed'."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.claim_token == token, Delivery.status.in_([D.SENDING, D.UNCERTAIN]))
        .values(
            status=D.RETRY,
            next_attempt_at=db_now(session, max(0.0, wait)),
            claim_token=None,
            attempts=Delivery.attempts - 1,
            last_error=f"throttled: {error}"[:2000],
            updated_at=db_now(session),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def mark_uncertain(session: Session, token: str, delivery_id: int, error: str) -> None:
    """No answer after the message went out: 'uncertain', like a row whose worker died mid-send —
    reported, and resent only by `newsletter resend CAMPAIGN --uncertain`."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.claim_token == token, Delivery.status == D.SENDING)
        .values(status=D.UNCERTAIN, claim_token=None, last_error=error[:2000], updated_at=db_now(session))
        .execution_options(synchronize_session=False)
    )
    session.commit()


def pause_campaign(session: Session, campaign_id: int, token: str, delivery_id: int, reason: str) -> bool:
    """A configuration error: the row goes back to the queue untried, the campaign to 'paused'
    with `reason` (its first line). Returns True if this call paused it (False: already paused)."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.claim_token == token, Delivery.status.in_([D.SENDING, D.UNCERTAIN]))
        .values(status=D.QUEUED, claim_token=None, attempts=Delivery.attempts - 1, updated_at=db_now(session))
        .execution_options(synchronize_session=False)
    )
    line = reason.splitlines()[0][:1000] if reason else "the transport refused our configuration"
    paused = rowcount(
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING)
            .values(status=CampaignStatus.PAUSED, status_reason=line)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    if paused:
        log.error("campaign %d: sending stopped: %s", campaign_id, line)
    return bool(paused)


def record_provider_id(session: Session, delivery_id: int, provider_id: str) -> None:
    """The provider's id for a delivery it accepted: what its bounce and complaint reports name."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(provider_message_id=provider_id[:200])
        .execution_options(synchronize_session=False)
    )
    session.commit()
