"""Per-campaign counts of what came back: delivered, bounced, complained, unsubscribed."""

from __future__ import annotations

from sqlalchemy import ColumnElement, distinct, func, select
from sqlalchemy.orm import Session

from ..models import Campaign, Delivery, DeliveryEvent, EventKind, Subscriber, SubscriberStatus


def feedback_columns(campaign_id: int) -> dict[str, ColumnElement[int]]:
    """{"delivered", "complained", "unsubscribed"} of one campaign as scalar subqueries, for a
    caller to put into a statement of its own (`worker.ledger.status` reads a whole report in
    one): deliveries a provider reported delivered; deliveries complained about; recipients of
    this campaign who unsubscribed after it started (by link, one-click or complaint; 0 before
    it started)."""

    def events(kind: str) -> ColumnElement[int]:
        return (
            select(func.count(distinct(DeliveryEvent.delivery_id)))
            .where(DeliveryEvent.campaign_id == campaign_id, DeliveryEvent.kind == kind)
            .scalar_subquery()
        )

    started = select(Campaign.started_at).where(Campaign.id == campaign_id).scalar_subquery()
    unsubscribed = (
        select(func.count())
        .select_from(Delivery)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.campaign_id == campaign_id,
            Subscriber.status.in_([SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED]),
            Subscriber.updated_at >= started,  # NULL before it started: nobody
        )
        .scalar_subquery()
    )
    return {
        "delivered": events(EventKind.DELIVERY),
        "complained": events(EventKind.COMPLAINT),
        "unsubscribed": unsubscribed,
    }


def feedback_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """{"delivered", "bounced", "complained", "unsubscribed"} for one campaign, in one query:
    `feedback_columns` and the deliveries hard-bounced (or whose soft bounces suppressed the
    address)."""
    columns = feedback_columns(campaign_id)
    bounced = (
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == "bounced")
        .scalar_subquery()
    )
    row = session.execute(select(*(c.label(k) for k, c in columns.items()), bounced.label("bounced"))).one()
    got = row._asdict()
    return {k: int(got[k] or 0) for k in ("delivered", "bounced", "complained", "unsubscribed")}
