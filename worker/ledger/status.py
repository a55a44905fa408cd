"""A campaign's progress as a typed report: counts per delivery status and an ETA."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from ..bounces.stats import feedback_counts
from ..clock import seconds_until
from ..models import CampaignStatus, DeliveryStatus, EpisodeRecord
from .campaigns import get_campaign
from .counts import status_counts

D = DeliveryStatus


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
    cancelled: int = 0

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

    `eta_seconds` is the time to settle the open rows at the campaign's pace since it started
    (seconds), None before anything settled or when the campaign is not sending. `reason` says why
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
    """Deliveries of the campaign per status (zero for a status with no row), as the database
    keeps them (`worker.ledger.counts`): never counted per request."""
    return DeliveryCounts(**{str(s): n for s, n in status_counts(session, campaign_id).items()})


def status(session: Session, campaign_id: int) -> CampaignReport:
    """The campaign's report; raises NotFound for an unknown id."""
    campaign = get_campaign(session, campaign_id)
    episode = session.get(EpisodeRecord, campaign.episode_id)
    c = counts(session, campaign_id)
    eta = None
    if c.open and campaign.status == CampaignStatus.SENDING and campaign.started_at is not None:
        # The campaign's own pace since it started: two numbers it already has, where a count of
        # the last minute's rows would read the index of every sent row.
        elapsed = -float(session.scalar(select(seconds_until(session, literal(campaign.started_at)))) or 0)
        settled = c.total - c.open
        if settled and elapsed > 0:
            eta = round(c.open / (settled / elapsed), 1)
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
