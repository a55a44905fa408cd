"""The sweep: recover from dead workers and lost broker messages, and finish campaigns."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from .. import sendwindow
from ..clock import db_now
from ..db import rowcount
from ..models import Campaign, CampaignStatus, Claim, Delivery, DeliveryStatus, utcnow
from ..settings import Settings
from .control import settle_cancelled, start_due_scheduled
from .counts import open_rows, status_counts

log = logging.getLogger(__name__)
D = DeliveryStatus


@dataclass
class SweepReport:
    """What one sweep did: rows put back in the queue, rows marked uncertain, dead claims
    removed, campaigns finished, and campaigns with due work and no live batch (to enqueue)."""

    requeued: int = 0
    uncertain: int = 0
    dead_claims: int = 0
    finished: list[int] = field(default_factory=list)
    need_work: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)  # scheduled campaigns started now (also in need_work)


def sweep(session: Session, settings: Settings) -> SweepReport:
    """Recover from dead workers and lost broker messages; finish campaigns with no open rows.

    - A claim whose heartbeat is older than the lease belongs to a dead worker: its untouched
      rows go back to the queue; a row it had in flight becomes 'uncertain' (reported, not resent).
    - Campaigns with due work and no live claim are returned in `need_work` for re-enqueueing.
    """
    now = db_now(session)
    report = SweepReport()
    cutoff = db_now(session, -settings.claim_lease)  # heartbeats are the database's time too
    dead = list(session.scalars(select(Claim.token).where(Claim.heartbeat_at < cutoff)))
    live = select(Claim.token)
    orphan = and_(
        Delivery.status.in_([D.CLAIMED, D.SENDING]),
        or_(Delivery.claim_token.is_(None), Delivery.claim_token.in_(dead), Delivery.claim_token.not_in(live)),
    )
    report.uncertain = rowcount(
        session.execute(
            update(Delivery)
            .where(orphan, Delivery.status == D.SENDING)
            .values(
                status=D.UNCERTAIN,
                last_error="its worker stopped mid-send; it may or may not have arrived",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    )
    report.requeued = rowcount(
        session.execute(
            update(Delivery)
            .where(orphan, Delivery.status == D.CLAIMED)
            .values(status=D.QUEUED, claim_token=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if dead:
        session.execute(delete(Claim).where(Claim.token.in_(dead)))
    report.dead_claims = len(dead)
    window_open = sendwindow.is_open(settings.send_window, settings.tz, utcnow())
    for campaign in session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SENDING)):
        if _mark_done_if_settled(session, campaign, now):
            report.finished.append(campaign.id)
            continue
        # Whether there is any, not how many: one index probe, not a count of a million rows.
        has_claims = session.scalar(select(Claim.token).where(Claim.campaign_id == campaign.id).limit(1))
        if window_open and has_claims is None and _has_due_rows(session, campaign.id, now):
            report.need_work.append(campaign.id)
    session.commit()
    # Rows a batch gave back after its campaign was cancelled are cancelled too.
    recent = and_(Campaign.status == CampaignStatus.CANCELLED, Campaign.finished_at >= utcnow() - timedelta(days=1))
    for cid in session.scalars(select(Campaign.id).where(recent)).all():
        settle_cancelled(session, cid, commit=False)
    session.commit()
    report.started = start_due_scheduled(session, now)
    if window_open:
        report.need_work.extend(report.started)
    if report.uncertain or report.requeued:
        log.warning(
            "sweep: %d deliveries back in the queue, %d uncertain (dead claims: %d)",
            report.requeued,
            report.uncertain,
            report.dead_claims,
        )
    return report


def _mark_done_if_settled(session: Session, campaign: Campaign, now: ColumnElement[datetime]) -> bool:
    """A campaign is done when no row is queued, claimed, sending or awaiting retry (the kept
    counts say so in a few rows; a million rows are never counted)."""
    if open_rows(session, campaign.id):
        return False
    campaign.status = CampaignStatus.DONE
    campaign.finished_at = now
    log.info("campaign %d is done", campaign.id)
    return True


def finish_if_done(session: Session, campaign_id: int) -> bool:
    """Mark the campaign done if no row is open (and commit); True when it is done."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        return campaign is not None and campaign.status == CampaignStatus.DONE
    done = _mark_done_if_settled(session, campaign, db_now(session))
    session.commit()
    return done


def _has_due_rows(session: Session, campaign_id: int, now: ColumnElement[datetime]) -> bool:
    """Queued rows (the kept counts say) or a retry due by now (one probe of the few retry rows):
    never a scan of a million queued rows, whatever the planner's statistics say."""
    if status_counts(session, campaign_id).get(D.QUEUED):
        return True
    retry_due = and_(Delivery.campaign_id == campaign_id, Delivery.status == D.RETRY, Delivery.next_attempt_at <= now)
    return session.scalar(select(Delivery.id).where(retry_due).limit(1)) is not None
