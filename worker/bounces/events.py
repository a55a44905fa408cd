"""One report about one recipient, recorded once, with its effects.

| kind | effect |
|---|---|
| hard_bounce | the address is suppressed (`bounced`) and the delivery marked `bounced` |
| soft_bounce | counted; SOFT_BOUNCE_LIMIT of them within SOFT_BOUNCE_WINDOW_DAYS suppress the address |
| complaint | the subscriber becomes `complained` (reason "complaint"): unsubscribed, never mailed again |
| delivery | kept, for the campaign's counts |

Every report is kept as a `delivery_events` row with its raw payload. `event_key` (the
provider's own event id, plus the recipient) is unique: the same notification twice changes
nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryEvent, DeliveryStatus, EventKind, Subscriber, SubscriberStatus, utcnow
from ..settings import Settings
from ..subscriptions import suppress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """A provider's or a DSN's word about one recipient of one message.

    `source`: ses | postmark | mailgun | dsn. `event_key`: unique per report (the provider's event
    id and the recipient). `kind`: an EventKind. The message is named by whichever of
    `delivery_id` (a VERP token), `provider_message_id` and `message_id` (our Message-ID header,
    with angle brackets) the report carries. `payload`: the raw report, as received."""

    source: str
    event_key: str
    kind: str
    email: str
    detail: str = ""
    payload: str = ""
    provider_message_id: str | None = None
    message_id: str | None = None
    delivery_id: int | None = None
    occurred_at: datetime | None = None


@dataclass
class Recorded:
    """The result of recording one report: whether it was a duplicate, the delivery and
    subscriber it matched (ids, or None) and its effect."""

    duplicate: bool
    delivery_id: int | None
    subscriber_id: int | None
    effect: str  # what changed, for the log and the tests: "suppressed", "unsubscribed", "counted", "none"


def find_delivery(session: Session, report: Report) -> Delivery | None:
    """The delivery a report is about: by VERP delivery id, then the provider's id, then our
    Message-ID; each must also be addressed to the report's recipient when it names one."""
    email = report.email.strip().lower()

    def matching(query):  # noqa: ANN001, ANN202
        for row in session.scalars(query.limit(5)):
            if not email or row.email.strip().lower() == email:
                return row
        return None

    if report.delivery_id is not None:
        row = session.get(Delivery, report.delivery_id)
        if row is not None and (not email or row.email.strip().lower() == email):
            return row
    if report.provider_message_id:
        pid = report.provider_message_id.strip("<>")
        if row := matching(select(Delivery).where(Delivery.provider_message_id == pid)):
            return row
    if report.message_id:
        mid = report.message_id.strip()
        mid = mid if mid.startswith("<") else f"<{mid}>"
        if row := matching(select(Delivery).where(Delivery.message_id == mid)):
            return row
    return None


def record(session: Session, report: Report, settings: Settings) -> Recorded:
    """Keep the report and apply its effect, in the caller's transaction (committed by the caller).
    A report already recorded (same `event_key`) changes nothing: `duplicate` is True."""
    delivery = find_delivery(session, report)
    email = (delivery.email if delivery else report.email).strip().lower()
    subscriber = (
        session.get(Subscriber, delivery.subscriber_id)
        if delivery
        else session.scalar(select(Subscriber).where(Subscriber.email_key == email))
        if email
        else None
    )
    event = DeliveryEvent(
        event_key=report.event_key[:300],
        kind=report.kind,
        source=report.source,
        email=email,
        subscriber_id=subscriber.id if subscriber else None,
        delivery_id=delivery.id if delivery else None,
        campaign_id=delivery.campaign_id if delivery else None,
        detail=report.detail[:2000],
        payload=report.payload,
        occurred_at=report.occurred_at,
    )
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:
        return Recorded(True, event.delivery_id, event.subscriber_id, "none")
    effect = _apply(session, report, settings, delivery, subscriber)
    log.info(
        "%s %s for %s (delivery %s): %s",
        report.source,
        report.kind,
        email or "?",
        delivery.id if delivery else "unknown",
        effect,
    )
    return Recorded(False, event.delivery_id, event.subscriber_id, effect)


def _apply(
    session: Session, report: Report, settings: Settings, delivery: Delivery | None, subscriber: Subscriber | None
) -> str:
    now = utcnow()
    if delivery is None and report.source == "dsn":
        # Anyone can mail the bounce address: a returned message counts only when its VERP token
        # or the (signed, unguessable) Message-ID it quotes names one of our deliveries.
        return "unmatched"
    if report.kind == EventKind.HARD_BOUNCE:
        if delivery is not None:
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id, Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.UNCERTAIN]))
                .values(status=DeliveryStatus.BOUNCED, last_error=report.detail[:2000], updated_at=now)
                .execution_options(synchronize_session=False)
            )
        if subscriber is not None and suppress(
            session, subscriber.id, SubscriberStatus.BOUNCED, f"hard bounce: {report.detail}"
        ):
            return "suppressed"
        return "none"
    if report.kind == EventKind.SOFT_BOUNCE:
        if subscriber is None:
            return "none"
        since = now - timedelta(days=settings.soft_bounce_window_days)
        # Distinct messages: a provider that reports each retry of one message counts once.
        n = session.scalar(
            select(func.count(func.distinct(func.coalesce(DeliveryEvent.delivery_id, -DeliveryEvent.id)))).where(
                DeliveryEvent.subscriber_id == subscriber.id,
                DeliveryEvent.kind == EventKind.SOFT_BOUNCE,
                DeliveryEvent.created_at >= since,
            )
        )
        if (n or 0) >= settings.soft_bounce_limit and suppress(
            session,
            subscriber.id,
            SubscriberStatus.BOUNCED,
            f"{n} soft bounces in {settings.soft_bounce_window_days:g} days: {report.detail}",
        ):
            if delivery is not None:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery.id, Delivery.status == DeliveryStatus.SENT)
                    .values(status=DeliveryStatus.BOUNCED, last_error=report.detail[:2000], updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            return "suppressed"
        return "counted"
    if report.kind == EventKind.COMPLAINT:
        if subscriber is not None and suppress(session, subscriber.id, SubscriberStatus.COMPLAINED, "complaint"):
            return "unsubscribed"
        return "none"
    return "none"
