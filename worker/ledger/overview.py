"""What `newsletter status` shows beside one campaign's report: the recent campaigns, and whether
a sending campaign seems to have no worker at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from ..clock import db_now
from ..models import Campaign, CampaignStatus, Claim, Delivery, DeliveryStatus, EpisodeRecord


@dataclass(frozen=True)
class CampaignLine:
    """One campaign in a list: ids, its state and how far it got (delivery rows)."""

    campaign: int
    episode: str | None
    title: str | None
    state: CampaignStatus
    created_at: datetime | None
    total: int
    sent: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (created_at in ISO 8601)."""
        return {
            "campaign": self.campaign,
            "episode": self.episode,
            "title": self.title,
            "state": str(self.state),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "total": self.total,
            "sent": self.sent,
        }


def recent_campaigns(session: Session, limit: int = 10) -> list[CampaignLine]:
    """The newest `limit` campaigns, newest first (two queries whatever `limit` is)."""
    rows = session.execute(
        select(Campaign.id, EpisodeRecord.slug, EpisodeRecord.title, Campaign.status, Campaign.created_at)
        .outerjoin(EpisodeRecord, EpisodeRecord.id == Campaign.episode_id)
        .order_by(Campaign.id.desc())
        .limit(limit)
    ).all()
    ids = [r.id for r in rows]
    tally: dict[tuple[int, bool], int] = {}
    if ids:
        is_sent = Delivery.status == DeliveryStatus.SENT
        for cid, sent, n in session.execute(
            select(Delivery.campaign_id, is_sent, func.count())
            .where(Delivery.campaign_id.in_(ids))
            .group_by(Delivery.campaign_id, is_sent)
        ):
            tally[(cid, bool(sent))] = n
    return [
        CampaignLine(
            campaign=r.id,
            episode=r.slug,
            title=r.title,
            state=CampaignStatus(r.status),
            created_at=r.created_at,
            total=tally.get((r.id, True), 0) + tally.get((r.id, False), 0),
            sent=tally.get((r.id, True), 0),
        )
        for r in rows
    ]


def no_worker_seen(session: Session, campaign_id: int, quiet: float) -> bool:
    """True when the campaign is sending, has queued rows, and for `quiet` seconds nothing shows
    a worker at it: no claim heartbeat, no row claimed, sent or otherwise moved, and the campaign
    itself started earlier than that. Times are the database's (`worker.clock`)."""
    since = db_now(session, -quiet)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        return False
    queued = session.scalar(
        select(exists().where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.QUEUED))
    )
    if not queued:
        return False
    started = func.coalesce(Campaign.started_at, Campaign.created_at)
    recent = session.scalar(
        select(
            exists().where(Campaign.id == campaign_id, started >= since)
            | exists().where(Claim.campaign_id == campaign_id, Claim.heartbeat_at >= since)
            | exists().where(
                Delivery.campaign_id == campaign_id,
                Delivery.status != DeliveryStatus.QUEUED,
                or_(Delivery.updated_at >= since, Delivery.claimed_at >= since, Delivery.sent_at >= since),
            )
        )
    )
    return not recent
