"""A campaign's progress as a typed report: counts per delivery status and an ETA."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..bounces.stats import feedback_counts
from ..clock import db_now
from ..models import CampaignStatus, Delivery, DeliveryStatus, EpisodeRecord
from .campaigns import get_campaign

D = DeliveryStatus
# The window the ETA's sending rate is measured over, seconds.
ETA_WINDOW = 60.0


@dataclass(frozen=True)
class DeliveryCounts:
    """Deliveries of one campaign per status (row counts)."""

    queued: int = 0
    claimed: int = 0
    sending: int = 0
    retry: int = 0
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped: int = 0
    bounced: int = 0  # sent, then reported back as a hard bounce

    @property
    def total(self) -> int:
        """Every delivery row of the campaign."""
        return sum(asdict(self).values())

    @property
    def open(self) -> int:
        """Rows not settled yet (queued, claimed, sending, awaiting retry): the campaign is not done."""
        return sum(getattr(self, s) for s in D.OPEN)

    def as_dict(self) -> dict[str, int]:
        """{status: rows}, every status."""
        return asdict(self)

    def __getitem__(self, status: str) -> int:
        return int(getattr(self, DeliveryStatus(status).value))


@dataclass(frozen=True)
class CampaignReport:
    """What `newsletter status` and GET /campaigns/{id} show about one campaign.

    `eta_seconds` is the time to send the open rows at the rate of the last minute (seconds),
    None when nothing was sent in that minute or the campaign is not sending. `reason` says why
    a paused campaign stopped; `feedback` counts what came back after sending (bounces,
    complaints…, `worker.bounces.stats.feedback_counts`)."""

    campaign: int
    episode: str | None
    title: str | None
    state: CampaignStatus
    counts: DeliveryCounts
    eta_seconds: float | None
    reason: str | None = None
    feedback: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Recipients of the campaign (delivery rows)."""
        return self.counts.total

    @property
    def settled(self) -> int:
        """Rows with a final outcome (sent, failed, uncertain, skipped)."""
        return self.total - self.counts.open

    @property
    def done(self) -> bool:
        """The campaign is marked done (no open row was left at the last check)."""
        return self.state == CampaignStatus.DONE

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: campaign, episode, title, state, total, one key per status, eta_seconds."""
        return {
            "campaign": self.campaign,
            "episode": self.episode,
            "title": self.title,
            "state": str(self.state),
            "total": self.total,
            **asdict(self.counts),
            "eta_seconds": self.eta_seconds,
            "reason": self.reason,
            "feedback": self.feedback,
        }


def counts(session: Session, campaign_id: int) -> DeliveryCounts:
    """Deliveries of the campaign per status (zero for a status with no row)."""
    rows = session.execute(
        select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id).group_by(Delivery.status)
    ).all()
    return DeliveryCounts(**{str(DeliveryStatus(s)): n for s, n in rows})


def status(session: Session, campaign_id: int) -> CampaignReport:
    """The campaign's report; raises NotFound for an unknown id."""
    campaign = get_campaign(session, campaign_id)
    episode = session.get(EpisodeRecord, campaign.episode_id)
    c = counts(session, campaign_id)
    eta = None
    if c.open and campaign.status == CampaignStatus.SENDING:
        window = db_now(session, -ETA_WINDOW)
        recent = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.campaign_id == campaign_id, Delivery.status == D.SENT, Delivery.sent_at >= window)
        )
        if recent:
            eta = round(c.open / (recent / ETA_WINDOW), 1)
    return CampaignReport(
        campaign=campaign.id,
        episode=episode.slug if episode else None,
        title=episode.title if episode else None,
        state=CampaignStatus(campaign.status),
        counts=c,
        eta_seconds=eta,
        reason=campaign.status_reason,
        feedback=feedback_counts(session, campaign_id),
    )
