"""Staff control of a campaign: pause, resume, cancel, schedule, retry failed rows, and the
sweep's step that starts scheduled campaigns. The console buttons, the API operations and the
`newsletter campaigns` commands all call these.

Every change is one conditional UPDATE on the campaign's current status, so two staff members
(or two beat processes) acting at once cannot both succeed: the second finds the status moved
and gets CampaignStateError (or, for the sweep, starts nothing).

- pause: a sending campaign stops getting new claims at once; a batch that holds rows finishes
  its current message and gives the rest back (`worker.sending` checks the status about once a
  second). A paused campaign is never marked done and nothing is re-sent on resume: sent rows are
  final, the rest are queued.
- cancel: the campaign is cancelled with a reason; its queued and retry rows become 'cancelled'
  (rows a batch still holds follow when it gives them back: `settle_cancelled`); sent rows stay.
- schedule: a draft (or a scheduled campaign not started yet) gets a start time; the sweep
  starts it, freezing the audience then, exactly once.
- retry_failed: rows that failed after running out of attempts on temporary errors (4xx,
  timeouts, a refused sender) go back to the queue; never permanent failures, never addresses
  that are no longer active (bounced, complained, unsubscribed).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import Session

from ..db import rowcount
from ..errors import CampaignStateError
from ..models import Campaign, CampaignStatus, Claim, Delivery, DeliveryStatus, Subscriber, SubscriberStatus, utcnow
from .campaigns import check_resendable, freeze_audience, get_campaign

log = logging.getLogger(__name__)
C, D = CampaignStatus, DeliveryStatus
# The marker mark_temporary_failure writes when a row runs out of attempts.
GAVE_UP = "gave up after "


def _move(session: Session, campaign_id: int, allowed: tuple[str, ...], to: str, verb: str, **values) -> Campaign:  # noqa: ANN003
    campaign = get_campaign(session, campaign_id)
    moved = rowcount(
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status.in_(allowed))
            .values(status=to, **values)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(campaign)
    if not moved:
        raise CampaignStateError(
            f"campaign {campaign_id} is {campaign.status}: only a campaign that is {' or '.join(allowed)} can be {verb}"
        )
    return campaign


def pause(session: Session, campaign_id: int, reason: str = "") -> Campaign:
    """Pause a sending campaign (and commit). Pausing a paused one changes nothing.
    Raises NotFound, or CampaignStateError when it is not sending."""
    if get_campaign(session, campaign_id).status == C.PAUSED:
        return get_campaign(session, campaign_id)
    campaign = _move(session, campaign_id, (C.SENDING,), C.PAUSED, "paused", status_reason=reason[:500])
    session.commit()
    log.info("campaign %d paused%s", campaign_id, f" ({reason})" if reason else "")
    return campaign


def resume(session: Session, campaign_id: int) -> Campaign:
    """Resume a paused campaign (and commit); the caller enqueues its work
    (`worker.queue.enqueue`). Raises NotFound, or CampaignStateError when it is not paused."""
    campaign = _move(session, campaign_id, (C.PAUSED,), C.SENDING, "resumed", status_reason=None)
    session.commit()
    log.info("campaign %d resumed", campaign_id)
    return campaign


def cancel(session: Session, campaign_id: int, reason: str) -> tuple[Campaign, int]:
    """Cancel a draft, scheduled, sending or paused campaign for `reason` (and commit); returns
    it and how many rows were cancelled now. Raises NotFound, or CampaignStateError when it is
    done or cancelled already."""
    reason = (reason.strip() or "cancelled by staff")[:500]
    campaign = _move(
        session,
        campaign_id,
        (C.DRAFT, C.SCHEDULED, C.SENDING, C.PAUSED),
        C.CANCELLED,
        "cancelled",
        status_reason=reason,
        finished_at=utcnow(),
    )
    n = settle_cancelled(session, campaign_id, commit=False)
    session.commit()
    log.info("campaign %d cancelled (%s): %d deliveries will not be sent", campaign_id, reason, n)
    return campaign, n


def settle_cancelled(session: Session, campaign_id: int, *, commit: bool = True) -> int:
    """A cancelled campaign's queued and retry rows, and claimed rows no live batch holds, become
    'cancelled'. Returns how many (0, changing nothing, unless the campaign is cancelled). Called
    by cancel, by a batch that stopped, and by the sweep."""
    if session.scalar(select(Campaign.status).where(Campaign.id == campaign_id)) != C.CANCELLED:
        if commit:
            session.commit()
        return 0
    held = select(Claim.token).where(Claim.campaign_id == campaign_id)
    reason = session.scalar(select(Campaign.status_reason).where(Campaign.id == campaign_id)) or "cancelled"
    n = rowcount(
        session.execute(
            update(Delivery)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status.in_([D.QUEUED, D.RETRY, D.CLAIMED]),
                (Delivery.status != D.CLAIMED) | Delivery.claim_token.is_(None) | Delivery.claim_token.not_in(held),
            )
            .values(
                status=D.CANCELLED,
                claim_token=None,
                next_attempt_at=None,
                last_error=f"cancelled: {reason}"[:2000],
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
    )
    if commit:
        session.commit()
    return n


def schedule(session: Session, campaign_id: int, at: datetime) -> Campaign:
    """Schedule a draft, or move a scheduled campaign that has not started (and commit). `at` is
    an aware datetime. Raises NotFound, CampaignStateError when it is no longer a draft or
    scheduled, InputError-shaped CampaignStateError for a naive or past time."""
    if at.tzinfo is None:
        raise CampaignStateError("the schedule time needs a zone")
    if at < utcnow() - timedelta(minutes=1):
        raise CampaignStateError(f"{at.isoformat()} is in the past")
    campaign = _move(session, campaign_id, (C.DRAFT, C.SCHEDULED), C.SCHEDULED, "scheduled", scheduled_at=at)
    session.commit()
    log.info("campaign %d scheduled for %s", campaign_id, at.isoformat())
    return campaign


def unschedule(session: Session, campaign_id: int) -> Campaign:
    """Back to draft, when it has not started (and commit). Raises NotFound or
    CampaignStateError."""
    campaign = _move(session, campaign_id, (C.SCHEDULED,), C.DRAFT, "unscheduled", scheduled_at=None)
    session.commit()
    return campaign


def unschedule_if_scheduled(session: Session, campaign_id: int) -> None:
    """Before "send now": a scheduled campaign becomes a draft again, so the sweep cannot also
    start it (in the caller's transaction). Raises NotFound."""
    get_campaign(session, campaign_id)
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == C.SCHEDULED)
        .values(status=C.DRAFT, scheduled_at=None)
        .execution_options(synchronize_session=False)
    )


def start_due_scheduled(session: Session, now: datetime | ColumnElement[datetime] | None = None) -> list[int]:
    """Start every scheduled campaign whose time has come: status to sending and its audience
    frozen, one transaction per campaign. The UPDATE is conditional on 'scheduled', so with two
    sweepers (two beats by mistake) each campaign starts once. Returns the started ids; the caller
    enqueues them."""
    if now is None:  # the sweep passes the database's clock (worker.clock.db_now)
        now = utcnow()
    started = []
    due_ids = list(
        session.scalars(select(Campaign.id).where(Campaign.status == C.SCHEDULED, Campaign.scheduled_at <= now))
    )
    session.commit()
    for cid in due_ids:
        won = rowcount(
            session.execute(
                update(Campaign)
                .where(Campaign.id == cid, Campaign.status == C.SCHEDULED, Campaign.scheduled_at <= now)
                .values(status=C.SENDING, started_at=now)
                .execution_options(synchronize_session=False)
            )
        )
        if not won:
            session.rollback()
            continue
        campaign = get_campaign(session, cid)
        session.refresh(campaign)
        freeze_audience(session, campaign)
        session.commit()
        started.append(cid)
        log.info("campaign %d started on schedule", cid)
    return started


def retry_failed(session: Session, campaign_id: int) -> int:
    """Queue again the campaign's rows that failed on temporary errors (out of attempts) whose
    subscriber is still active (and commit); returns how many. A done campaign goes back to
    sending; the caller enqueues its work. Raises NotFound, or CampaignStateError for a draft,
    scheduled or cancelled campaign."""
    campaign = get_campaign(session, campaign_id)
    check_resendable(campaign)
    n = rowcount(
        session.execute(
            update(Delivery)
            .where(_retryable(campaign_id))
            .values(status=D.QUEUED, attempts=0, next_attempt_at=None, claim_token=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    )
    if n and campaign.status == C.DONE:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == C.DONE)
            .values(status=C.SENDING, finished_at=None)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    log.info("campaign %d: %d failed deliveries queued again", campaign_id, n)
    return n


def _retryable(campaign_id: int):  # noqa: ANN202
    active = select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ACTIVE)
    return and_(
        Delivery.campaign_id == campaign_id,
        Delivery.status == D.FAILED,
        Delivery.last_error.startswith(GAVE_UP),
        Delivery.subscriber_id.in_(active),
    )


def retryable_count(session: Session, campaign_id: int) -> int:
    """How many rows `retry_failed` would queue again now."""
    return session.scalar(select(func.count()).select_from(Delivery).where(_retryable(campaign_id))) or 0


def is_sending(session: Session, campaign_id: int) -> bool:
    """True while the campaign may send (not paused, cancelled or done): what a batch checks.
    Ends the read transaction (on SQLite every transaction holds the write lock)."""
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    session.commit()
    return status == C.SENDING
