"""Per-campaign counts of what came back: delivered, bounced, complained, unsubscribed."""

from __future__ import annotations

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from ..models import Campaign, Delivery, DeliveryEvent, EventKind, Subscriber, SubscriberStatus


def feedback_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """{"delivered", "bounced", "complained", "unsubscribed"} for one campaign: deliveries a
    provider reported delivered; deliveries hard-bounced (or whose soft bounces suppressed the
    address); deliveries complained about; and recipients of this campaign who unsubscribed after
    it started (by link, one-click or complaint)."""

    def events(*kinds: str) -> int:
        return (
            session.scalar(
                select(func.count(distinct(DeliveryEvent.delivery_id))).where(
                    DeliveryEvent.campaign_id == campaign_id, DeliveryEvent.kind.in_(kinds)
                )
            )
            or 0
        )

    started = session.scalar(select(Campaign.started_at).where(Campaign.id == campaign_id))
    unsubscribed = 0
    if started is not None:
        unsubscribed = (
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(
                    Delivery.campaign_id == campaign_id,
                    Subscriber.status.in_([SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED]),
                    Subscriber.updated_at >= started,
                )
            )
            or 0
        )
    bounced = (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.campaign_id == campaign_id, Delivery.status == "bounced")
        )
        or 0
    )
    return {
        "delivered": events(EventKind.DELIVERY),
        "bounced": bounced,
        "complained": events(EventKind.COMPLAINT),
        "unsubscribed": unsubscribed,
    }
