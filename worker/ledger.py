"""The campaign ledger: the source of truth for who has been sent what.

Every delivery moves queued -> claimed -> sending -> sent (or retry / failed), and every move is a
conditional UPDATE on the row's current status and claim token, so a stale or duplicate worker
cannot overwrite another's work. The broker only says "go and look"; these rows say what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .bounces.stats import feedback_counts
from .clock import SQLITE_NOW, db_now, seconds_until
from .db import is_postgres
from .episodes import Episode
from .errors import NotFound
from .models import (
    Campaign,
    CampaignStatus,
    Claim,
    Delivery,
    DeliveryStatus,
    EpisodeRecord,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from .settings import Settings
from .subscriptions import suppress as suppress_subscriber

log = logging.getLogger(__name__)
D = DeliveryStatus


# -- episodes and campaigns -------------------------------------------------------------------


def record_episode(session: Session, episode: Episode) -> tuple[EpisodeRecord, bool]:
    """The episode's row, created if new. The guid says which episode it is; a different episode
    whose slug is taken (same title, same day) gets a suffixed slug. Safe under races."""
    found = session.scalar(select(EpisodeRecord).where(EpisodeRecord.guid == episode.guid))
    if found:
        return found, False
    slug = episode.slug
    if session.scalar(select(EpisodeRecord.id).where(EpisodeRecord.slug == slug)):
        slug = f"{slug[:190]}-{hashlib.sha256(episode.guid.encode()).hexdigest()[:8]}"
        episode = dataclasses.replace(episode, slug=slug)
    row = EpisodeRecord(
        guid=episode.guid,
        slug=episode.slug,
        title=episode.title,
        published_on=datetime.combine(episode.date, datetime.min.time(), UTC),
        source=episode.source,
        data=episode.to_json(),
    )
    return _insert_or_find(session, row, select(EpisodeRecord).where(EpisodeRecord.guid == episode.guid))


def _insert_or_find(session: Session, row, winner):  # noqa: ANN001, ANN202
    """Insert `row`; when a unique key says another writer got there first, return theirs.
    (row, True) if ours went in, (theirs, False) if not."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = session.scalar(winner)
        if found is None:
            raise
        return found, False
    return row, True


@dataclass
class PublishResult:
    campaign: Campaign
    created: bool
    episode: EpisodeRecord


def create_campaign(
    session: Session, episode: Episode, settings: Settings, *, as_of: datetime | None = None, draft: bool = False
) -> PublishResult:
    """One campaign per episode, rendered once, its audience frozen into delivery rows in one
    INSERT ... SELECT. Publishing an episode that already has a campaign returns that campaign."""
    from .message import compose

    record, _ = record_episode(session, episode)
    if record.slug != episode.slug:
        episode = dataclasses.replace(episode, slug=record.slug)  # the web link must match the record
    existing = session.scalar(select(Campaign).where(Campaign.episode_id == record.id))
    if existing:
        return PublishResult(existing, False, record)
    as_of = as_of or utcnow()
    template = compose(episode, settings, as_of)
    r = template.rendered
    campaign = Campaign(
        episode_id=record.id,
        subject=r.subject,
        html=r.html,
        text=r.text,
        nonce=r.nonce,
        ics=template.ics.decode() if template.ics else None,
        as_of=as_of,
        status=CampaignStatus.DRAFT if draft else CampaignStatus.SENDING,
    )
    campaign, created = _insert_or_find(session, campaign, select(Campaign).where(Campaign.episode_id == record.id))
    if not created:  # another publisher won the race for this episode
        return PublishResult(campaign, False, record)
    if not draft:
        freeze_audience(session, campaign)
    return PublishResult(campaign, True, record)


def freeze_audience(session: Session, campaign: Campaign) -> int:
    """One delivery row per active subscriber, in bulk. The unique (campaign, subscriber) key
    makes a second call add nobody twice."""
    now = db_now(session)
    sel = (
        select(
            literal(campaign.id, Delivery.campaign_id.type),
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            literal(D.QUEUED, Delivery.status.type),
            literal(0, Delivery.attempts.type),
            now,
        )
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .where(
            ~select(Delivery.id)
            .where(Delivery.campaign_id == campaign.id, Delivery.subscriber_id == Subscriber.id)
            .exists()
        )
    )
    session.execute(
        insert(Delivery).from_select(
            ["campaign_id", "subscriber_id", "email", "name", "status", "attempts", "updated_at"], sel
        )
    )
    # counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT here
    total = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.campaign_id == campaign.id))
    added = total - (campaign.total or 0)
    campaign.total = total
    campaign.status = CampaignStatus.SENDING
    if campaign.started_at is None:
        campaign.started_at = db_now(session)
    session.flush()
    return added


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def latest_campaign(session: Session) -> Campaign | None:
    return session.scalar(select(Campaign).order_by(Campaign.id.desc()).limit(1))


# -- claiming and recording -----------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


def _due(campaign_id: int, now):  # noqa: ANN001 (a SQL expression: the database's time)
    return and_(
        Delivery.campaign_id == campaign_id,
        or_(Delivery.status == D.QUEUED, and_(Delivery.status == D.RETRY, Delivery.next_attempt_at <= now)),
    )


def claim_batch(session: Session, campaign_id: int, token: str, limit: int, worker: str = "") -> list[Claimed]:
    """Atomically take up to `limit` due deliveries for this claim token (and commit).

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent claimers take disjoint rows without
    waiting. SQLite: the UPDATE runs inside BEGIN IMMEDIATE, which serialises claimers."""
    now = db_now(session)
    session.merge(Claim(token=token, campaign_id=campaign_id, worker=worker[:200], heartbeat_at=now))
    ids = select(Delivery.id).where(_due(campaign_id, now)).order_by(Delivery.id).limit(limit)
    if is_postgres(session):
        ids = ids.with_for_update(skip_locked=True)
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
    when out of attempts. Returns that delay in seconds (None: failed)."""
    now = db_now(session)
    if attempts >= settings.max_attempts:
        values = {"status": D.FAILED, "last_error": f"gave up after {attempts} attempts: {error}"[:2000]}
        due = None
    else:
        due = retry_delay(attempts, settings)
        values = {"status": D.RETRY, "next_attempt_at": db_now(session, due), "last_error": error[:2000]}
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.claim_token == token, Delivery.status.in_([D.SENDING, D.UNCERTAIN]))
        .values(claim_token=None, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return due


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


def release_claim(session: Session, token: str) -> None:
    """End of a batch: rows still only claimed (not attempted) go back to the queue."""
    now = db_now(session)
    session.execute(
        update(Delivery)
        .where(Delivery.claim_token == token, Delivery.status == D.CLAIMED)
        .values(status=D.QUEUED, claim_token=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Claim).where(Claim.token == token))
    session.commit()


# -- sweeping, status and resends -----------------------------------------------------------


@dataclass
class SweepReport:
    requeued: int = 0
    uncertain: int = 0
    dead_claims: int = 0
    finished: list[int] | None = None
    need_work: list[int] | None = None


def sweep(session: Session, settings: Settings) -> SweepReport:
    """Recover from dead workers and lost broker messages; finish campaigns with no open rows.

    - A claim whose heartbeat is older than the lease belongs to a dead worker: its untouched
      rows go back to the queue; a row it had in flight becomes 'uncertain' (reported, not resent).
    - Campaigns with due work and no live claim are returned in `need_work` for re-enqueueing.
    """
    now = db_now(session)
    report = SweepReport(finished=[], need_work=[])
    cutoff = db_now(session, -settings.claim_lease)  # heartbeats are the database's time too
    dead = list(session.scalars(select(Claim.token).where(Claim.heartbeat_at < cutoff)))
    live = select(Claim.token)
    orphan = and_(
        Delivery.status.in_([D.CLAIMED, D.SENDING]),
        or_(Delivery.claim_token.is_(None), Delivery.claim_token.in_(dead), Delivery.claim_token.not_in(live)),
    )
    report.uncertain = session.execute(
        update(Delivery)
        .where(orphan, Delivery.status == D.SENDING)
        .values(
            status=D.UNCERTAIN, last_error="its worker stopped mid-send; it may or may not have arrived", updated_at=now
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    report.requeued = session.execute(
        update(Delivery)
        .where(orphan, Delivery.status == D.CLAIMED)
        .values(status=D.QUEUED, claim_token=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if dead:
        session.execute(delete(Claim).where(Claim.token.in_(dead)))
    report.dead_claims = len(dead)
    for campaign in session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SENDING)):
        if _mark_done_if_settled(session, campaign, now):
            report.finished.append(campaign.id)
            continue
        has_claims = session.scalar(select(func.count()).select_from(Claim).where(Claim.campaign_id == campaign.id))
        due = session.scalar(select(func.count()).select_from(Delivery).where(_due(campaign.id, now)))
        if due and not has_claims:
            report.need_work.append(campaign.id)
    session.commit()
    if report.uncertain or report.requeued:
        log.warning(
            "sweep: %d deliveries back in the queue, %d uncertain (dead claims: %d)",
            report.requeued,
            report.uncertain,
            report.dead_claims,
        )
    return report


def _mark_done_if_settled(session: Session, campaign: Campaign, now) -> bool:  # noqa: ANN001
    """A campaign is done when no row is queued, claimed, sending or awaiting retry."""
    open_rows = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.status.in_(D.OPEN))
    )
    if open_rows:
        return False
    campaign.status = CampaignStatus.DONE
    campaign.finished_at = now
    log.info("campaign %d is done", campaign.id)
    return True


def finish_if_done(session: Session, campaign_id: int) -> bool:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        return campaign is not None and campaign.status == CampaignStatus.DONE
    done = _mark_done_if_settled(session, campaign, db_now(session))
    session.commit()
    return done


def counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = dict(
        session.execute(
            select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id).group_by(Delivery.status)
        ).all()
    )
    return {s: rows.get(s, 0) for s in D.ALL}


def status(session: Session, campaign_id: int) -> dict:
    """What `newsletter status --json` and GET /campaigns/{id} show."""
    campaign = get_campaign(session, campaign_id)
    episode = session.get(EpisodeRecord, campaign.episode_id)
    c = counts(session, campaign_id)
    open_rows = sum(c[s] for s in D.OPEN)
    eta = None
    if open_rows and campaign.status == CampaignStatus.SENDING:
        window = db_now(session, -60)
        recent = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.campaign_id == campaign_id, Delivery.status == D.SENT, Delivery.sent_at >= window)
        )
        if recent:
            eta = round(open_rows / (recent / 60.0), 1)
    return {
        "campaign": campaign.id,
        "episode": episode.slug if episode else None,
        "title": episode.title if episode else None,
        "state": campaign.status,
        "total": sum(c.values()),
        **c,
        "eta_seconds": eta,
        "reason": campaign.status_reason,
        "feedback": feedback_counts(session, campaign_id),
    }


def resend_uncertain(session: Session, campaign_id: int) -> int:
    """Put 'uncertain' rows back in the queue. They go out with the same Message-ID, so a
    receiving system that did get the first copy can tell it is the same message."""
    get_campaign(session, campaign_id)
    n = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == D.UNCERTAIN)
        .values(status=D.QUEUED, claim_token=None, updated_at=db_now(session))
        .execution_options(synchronize_session=False)
    ).rowcount
    if n:
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status=CampaignStatus.SENDING))
    session.commit()
    return n


class ProgressWriter:
    """The per-message ledger write of the batch loop, at driver level.

    Before each message: mark the previous one sent (with its Message-ID) and this one sending,
    and (once a second) move the claim's heartbeat: one prepared statement in autocommit on
    PostgreSQL (a CTE), up to three on SQLite (in-process, no round trips). Every transition is
    conditional on the row's claim token and current status, so a worker whose claim was swept
    cannot overwrite anyone. 'uncertain' is accepted for "sent": a sweeper may have given up on a
    slow-but-alive worker.

    This is the hot path of a campaign (through the ORM it cost ~2.7 ms a message). On PostgreSQL
    `start` only sends the statement and returns a callable that waits for its commit: the sender
    builds the message and has the mail server accept the envelope meanwhile, and calls it before
    any content leaves, so the row is durably 'sending' first, as before, and the commit (a WAL
    flush) overlaps the SMTP round trip instead of adding to it.
    """

    PG = """
        WITH done AS (
            UPDATE deliveries SET status = 'sent', message_id = $4, sent_at = clock_timestamp(),
                   last_error = NULL, updated_at = clock_timestamp()
            WHERE id = $3 AND claim_token = $1 AND status IN ('sending', 'uncertain')
        ){beat}
        UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = clock_timestamp()
        WHERE id = $2 AND claim_token = $1 AND status = 'claimed'
        RETURNING id"""
    PG_BEAT = """, beat AS (
            UPDATE claims SET heartbeat_at = clock_timestamp() WHERE token = $1
        )"""
    # The heartbeat only has to move well within the claim lease (minutes): once a second is
    # plenty, and saves a row update per message.
    BEAT_EVERY = 1.0
    PG_SENT = """
        UPDATE deliveries SET status = 'sent', message_id = $3, sent_at = clock_timestamp(),
               last_error = NULL, updated_at = clock_timestamp()
        WHERE id = $2 AND claim_token = $1 AND status IN ('sending', 'uncertain')"""
    # Prepared once per database connection (the pool keeps connections across batches).
    PG_STATEMENTS = {
        b"nl_progress_beat": PG.format(beat=PG_BEAT),
        b"nl_progress": PG.format(beat=""),
        b"nl_progress_sent": PG_SENT,
    }
    # Times are the database's (worker/clock.py): one clock for every host.
    LITE_SENT = f"""
        UPDATE deliveries SET status = 'sent', message_id = :mid, sent_at = {SQLITE_NOW}, last_error = NULL,
               updated_at = {SQLITE_NOW}
        WHERE id = :prev AND claim_token = :token AND status IN ('sending', 'uncertain')"""
    LITE_NEXT = f"""
        UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = {SQLITE_NOW}
        WHERE id = :next AND claim_token = :token AND status = 'claimed'"""
    LITE_BEAT = f"UPDATE claims SET heartbeat_at = {SQLITE_NOW} WHERE token = :token"

    def __init__(self, engine):  # noqa: ANN001
        self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._last_beat = 0.0
        self._answer: list[bool] | None = None  # where the reply of the statement in flight goes
        if engine.dialect.name == "postgresql":
            self._pq = self._conn.connection.driver_connection.pgconn  # psycopg's libpq wrapper
            self._prepare()
        else:
            self._pq = None
            self._cur = self._conn.connection.driver_connection.cursor()

    def _prepare(self) -> None:
        info = self._conn.connection.info  # lives as long as the database connection
        if info.get("nl_progress_prepared"):
            return
        for name, sql in self.PG_STATEMENTS.items():
            self._check(self._pq.prepare(name, sql.encode()))
        info["nl_progress_prepared"] = True

    def _check(self, result):  # noqa: ANN001, ANN202
        from psycopg import errors, pq

        if result is None:
            raise errors.OperationalError(self._pq.get_error_message())
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise errors.error_from_result(result)
        return result

    def _beat_due(self) -> bool:
        if time.monotonic() - self._last_beat < self.BEAT_EVERY:
            return False
        self._last_beat = time.monotonic()
        return True

    def start(self, token: str, delivery_id: int, finished: tuple[int, str] | None) -> Callable[[], bool]:
        """Record `finished` (id, Message-ID) as sent and claim `delivery_id` as sending. Returns
        a callable that waits for the write and says whether the row is ours to send."""
        self._settle()  # a previous start nobody waited for (an error path)
        prev, mid = finished if finished else (None, None)
        if self._pq is None:
            params = {"token": token, "next": delivery_id, "prev": prev, "mid": mid}
            if prev is not None:
                self._cur.execute(self.LITE_SENT, params)
            self._cur.execute(self.LITE_NEXT, params)
            ours = self._cur.rowcount == 1
            if self._beat_due():
                self._cur.execute(self.LITE_BEAT, params)
            return lambda: ours
        name = b"nl_progress_beat" if self._beat_due() else b"nl_progress"
        self._pq.send_query_prepared(
            name,
            [
                token.encode(),
                str(delivery_id).encode(),
                None if prev is None else str(prev).encode(),
                None if mid is None else mid.encode(),
            ],
        )
        answer = self._answer = []

        def ours() -> bool:
            self._settle()
            if not answer:
                raise RuntimeError("the ledger write for this message failed")
            return answer[0]

        return ours

    def _settle(self) -> None:
        """Read the reply of the statement in flight, if any (libpq: results until None)."""
        answer, self._answer = self._answer, None
        if answer is None:
            return
        result = self._pq.get_result()
        while self._pq.get_result() is not None:
            pass
        answer.append(self._check(result).ntuples == 1)

    def sent(self, token: str, delivery_id: int, mid: str) -> None:
        self._settle()
        if self._pq is None:
            self._cur.execute(self.LITE_SENT, {"token": token, "prev": delivery_id, "mid": mid})
            return
        self._check(
            self._pq.exec_prepared(b"nl_progress_sent", [token.encode(), str(delivery_id).encode(), mid.encode()])
        )

    def close(self) -> None:
        try:
            if self._pq is None:
                self._cur.close()
            else:
                self._settle()
        finally:
            self._conn.close()
