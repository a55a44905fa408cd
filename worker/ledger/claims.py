"""Claiming due deliveries for a batch and recording each outcome.

Every move is a conditional UPDATE on the row's current status and claim token, so a stale or
duplicate worker cannot overwrite another's work.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Select, Table, bindparam, delete, func, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from ..clock import db_now, seconds_until
from ..db import is_postgres
from ..models import Campaign, CampaignStatus, Claim, Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from ..settings import Settings
from ..subscriptions import suppress as suppress_subscriber

D = DeliveryStatus


@dataclass(frozen=True)
class Claimed:
    """A delivery row a batch holds: its id, the subscriber, the address and name, attempts so far."""

    id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


def due(session: Session, campaign_id: int, limit: int) -> Select[tuple[int]]:
    """SQL for the ids of up to `limit` of this campaign's due rows, in the order a claim takes
    them: retries whose next attempt time has come (on the database's clock), longest overdue
    first, then queued rows by id. PostgreSQL: each row is locked as it is read (FOR UPDATE
    SKIP LOCKED), so rows another claimer holds are passed over, not waited for.

    Two index range scans (ix_deliveries_retry, ix_deliveries_campaign_status_id: migration
    0009) that read only rows of those statuses, in that order, and stop at `limit`: however
    much of the campaign is already sent, the claim reads about as much as at its start."""
    # Literal statuses: a partial index (status = 'retry') cannot be proven to apply to a bound
    # parameter, which a prepared statement's generic plan would have.
    queued, retry = (literal(s, Delivery.status.type, literal_execute=True) for s in (D.QUEUED, D.RETRY))
    # Read once per statement: clock_timestamp() is volatile, and a volatile bound cannot limit
    # an index scan (it would filter every retry row of the campaign instead).
    now = select(db_now(session)).scalar_subquery()
    retries = (
        select(Delivery.id)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == retry, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    fresh = select(Delivery.id).where(Delivery.campaign_id == campaign_id, Delivery.status == queued)
    fresh = fresh.order_by(Delivery.id).limit(limit)
    if is_postgres(session):
        retries, fresh = retries.with_for_update(skip_locked=True), fresh.with_for_update(skip_locked=True)
    # UNION ALL runs its parts in order and the outer LIMIT stops reading (and locking) as soon
    # as it has `limit` rows; an ORDER BY out here would read and lock both parts in full.
    both = union_all(select(retries.subquery().c.id), select(fresh.subquery().c.id)).subquery()
    return select(both.c.id).limit(limit)


def claim_batch(session: Session, campaign_id: int, token: str, limit: int, worker: str = "") -> list[Claimed]:
    """Atomically take up to `limit` due deliveries for this claim token (and commit).

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent claimers take disjoint rows without
    waiting. SQLite: the UPDATE runs inside BEGIN IMMEDIATE, which serialises claimers.
    Nothing is claimed unless the campaign is 'sending' (not paused, cancelled or done)."""
    now = db_now(session)
    session.merge(Claim(token=token, campaign_id=campaign_id, worker=worker[:200], heartbeat_at=now))
    # A paused, cancelled or done campaign gets no new claim, whatever the broker still holds.
    sending = select(Campaign.id).where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING)
    ids = due(session, campaign_id, limit).where(sending.exists())
    rows = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids.scalar_subquery()))
        .values(status=D.CLAIMED, claim_token=token, claimed_at=now, updated_at=now)
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.email, Delivery.name, Delivery.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    claimed = [Claimed(*r) for r in sorted(rows, key=lambda r: r[0])]  # by id
    if claimed:
        # People who unsubscribed or bounced after the audience was frozen are skipped.
        gone = set(
            session.scalars(
                select(Subscriber.id).where(
                    Subscriber.id.in_([c.subscriber_id for c in claimed]), Subscriber.status != SubscriberStatus.ACTIVE
                )
            )
        )
        if gone:
            session.execute(
                update(Delivery)
                .where(Delivery.claim_token == token, Delivery.subscriber_id.in_(gone), Delivery.status == D.CLAIMED)
                .values(
                    status=D.SKIPPED,
                    claim_token=None,
                    last_error="unsubscribed or suppressed before sending",
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            claimed = [c for c in claimed if c.subscriber_id not in gone]
    else:
        session.execute(delete(Claim).where(Claim.token == token))
    session.commit()
    return claimed


def retry_delay(attempts: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter between half and all of the step, capped below the
    broker's visibility timeout (see worker.celery)."""
    step = min(settings.retry_max_delay, settings.retry_base_delay * (2 ** max(0, attempts - 1)))
    return (rng or random).uniform(step / 2, step)


def mark_temporary_failure(
    session: Session, token: str, delivery_id: int, error: str, attempts: int, settings: Settings
) -> float | None:
    """Back to 'retry', due `retry_delay` seconds from now on the database's clock, or 'failed'
    when out of attempts (and commit). Returns that delay in seconds (None: failed)."""
    now = db_now(session)
    values: dict[str, object]
    if attempts >= settings.max_attempts:
        values = {"status": D.FAILED, "last_error": f"gave up after {attempts} attempts: {error}"[:2000]}
        delay = None
    else:
        delay = retry_delay(attempts, settings)
        values = {"status": D.RETRY, "next_attempt_at": db_now(session, delay), "last_error": error[:2000]}
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.claim_token == token, Delivery.status.in_([D.SENDING, D.UNCERTAIN]))
        .values(claim_token=None, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return delay


def mark_permanent_failure(
    session: Session, token: str, delivery_id: int, subscriber_id: int, error: str, *, suppress: bool = True
) -> None:
    """A 5xx: failed for good; with `suppress` the address is marked bounced so no campaign tries
    it again."""
    now = db_now(session)
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.claim_token == token, Delivery.status.in_([D.SENDING, D.UNCERTAIN]))
        .values(status=D.FAILED, claim_token=None, last_error=error[:2000], updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if suppress:
        suppress_subscriber(session, subscriber_id, SubscriberStatus.BOUNCED, error)
    session.commit()


def next_due_in(session: Session, campaign_id: int) -> float | None:
    """Seconds until this campaign's earliest retry falls due (negative: overdue), on the
    database's clock; None when no row waits for a retry. A batch that ends schedules its
    follow-up from this, so a campaign with retries finishes without the sweeper."""
    seconds = session.scalar(
        select(seconds_until(session, func.min(Delivery.next_attempt_at))).where(
            Delivery.campaign_id == campaign_id, Delivery.status == D.RETRY
        )
    )
    session.commit()
    return None if seconds is None else float(seconds)


def release_claim(
    session: Session, token: str, unsent: Sequence[int] = (), unrecorded: Sequence[tuple[int, str]] = ()
) -> None:
    """End of a batch: rows still only claimed (not attempted) go back to the queue, and so do
    `unsent` rows: marked 'sending' but known to have had no content sent (their write's
    confirmation never came, so the session stopped before the content); their attempt is given
    back. Each only while it is still this claim's and 'sending' (or 'uncertain': a sweeper that
    saw the claim's heartbeat stop cannot know what this batch knows). `unrecorded`: (id, Message-ID)
    of messages the server accepted whose 'sent' write was lost with its connection; they are
    marked sent now, also when the sweeper has called them uncertain meanwhile (all in one
    commit)."""
    now = db_now(session)
    if unrecorded:
        table = cast(Table, Delivery.__table__)
        session.connection().execute(
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.claim_token == token,
                # (not IN: an expanding parameter cannot be used with executemany)
                or_(table.c.status == D.SENDING, table.c.status == D.UNCERTAIN),
            )
            .values(status=D.SENT, message_id=bindparam("b_mid"), sent_at=now, last_error=None, updated_at=now),
            [{"b_id": i, "b_mid": mid} for i, mid in unrecorded],
        )
    if unsent:
        session.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(list(unsent)),
                Delivery.claim_token == token,
                # 'uncertain': the sweeper got there first, while the database was out of reach
                Delivery.status.in_([D.SENDING, D.UNCERTAIN]),
            )
            .values(status=D.QUEUED, claim_token=None, attempts=Delivery.attempts - 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(Delivery)
        .where(Delivery.claim_token == token, Delivery.status == D.CLAIMED)
        .values(status=D.QUEUED, claim_token=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Claim).where(Claim.token == token))
    session.commit()
