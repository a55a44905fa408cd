"""Episodes and campaigns in the ledger: record an episode, create its one campaign from an
email already rendered, freeze the audience into delivery rows, resend uncertain rows."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import db_now
from ..db import rowcount
from ..episodes import Episode
from ..errors import CampaignStateError, NotFound
from ..models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    EpisodeRecord,
    Subscriber,
    SubscriberStatus,
)
from ..render import RenderedEmail
from .counts import status_counts

D = DeliveryStatus
Row = TypeVar("Row")


def record_episode(session: Session, episode: Episode) -> tuple[EpisodeRecord, bool]:
    """The episode's row and whether it is new. The guid says which episode it is; a different
    episode whose slug is taken (same title, same day) gets a suffixed slug. Safe under races."""
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
    return insert_or_find(session, row, select(EpisodeRecord).where(EpisodeRecord.guid == episode.guid))


def insert_or_find(session: Session, row: Row, winner: Select[Any]) -> tuple[Row, bool]:
    """Insert `row`; when a unique key says another writer got there first, return theirs.
    (row, True) if ours went in, (theirs, False) if not. Re-raises IntegrityError when `winner`
    finds nothing (the conflict was something else)."""
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
    """What publishing gave: the episode's campaign, whether this call created it, the episode row."""

    campaign: Campaign
    created: bool
    episode: EpisodeRecord


def freeze_audience(session: Session, campaign: Campaign) -> int:
    """One delivery row per active subscriber, in one INSERT ... SELECT; returns how many rows
    were added. The unique (campaign, subscriber) key makes a second call add nobody twice.
    Moves the campaign to SENDING."""
    now = db_now(session)
    sel = select(
        literal(campaign.id, Delivery.campaign_id.type),
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        literal(D.QUEUED, Delivery.status.type),
        literal(0, Delivery.attempts.type),
        now,
    ).where(Subscriber.status == SubscriberStatus.ACTIVE)
    before = sum(status_counts(session, campaign.id).values())  # kept by the database, not counted
    into = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    insert = into(Delivery).from_select(
        ["campaign_id", "subscriber_id", "email", "name", "status", "attempts", "updated_at"], sel
    )
    if before:
        # Rows exist already: the unique (campaign, subscriber) key skips whoever is in. No
        # anti-join, which PostgreSQL may plan as a scan of the rows being inserted per
        # subscriber (quadratic).
        insert = insert.on_conflict_do_nothing(index_elements=["campaign_id", "subscriber_id"])
    # else a plain INSERT: ON CONFLICT costs a speculative insertion per row (an index probe
    # and one more WAL record), ~40% of the INSERT of a million rows. A campaign without rows is
    # frozen once (its creation, or the conditional move out of draft/scheduled); should a
    # second freeze race this one anyway, the same unique key makes it fail instead of
    # adding anyone twice.
    session.execute(insert)
    campaign.total = sum(status_counts(session, campaign.id).values())
    added = campaign.total - before
    campaign.status = CampaignStatus.SENDING
    if campaign.started_at is None:
        campaign.started_at = db_now(session)
    session.flush()
    return added


def send_draft(session: Session, campaign_id: int) -> int:
    """Freeze a draft campaign's audience now; returns how many deliveries were queued.

    Raises NotFound for an unknown id and InputError when the campaign is not a draft."""
    from ..errors import InputError

    campaign = get_campaign(session, campaign_id)
    # A conditional move out of draft: of two concurrent sends, the second waits for the row
    # and then matches nothing, so only one freezes the audience.
    moved = rowcount(
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.DRAFT)
            .values(status=CampaignStatus.SENDING)
            .execution_options(synchronize_session=False)
        )
    )
    if not moved:
        session.refresh(campaign)
        raise InputError(f"campaign {campaign_id} is not a draft ({campaign.status})")
    return freeze_audience(session, campaign)


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign row; raises NotFound for an unknown id."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def latest_campaign(session: Session) -> Campaign | None:
    """The newest campaign, or None when there is none."""
    return session.scalar(select(Campaign).order_by(Campaign.id.desc()).limit(1))


def check_resendable(campaign: Campaign) -> None:
    """Raise CampaignStateError unless rows of this campaign may be sent again: it has sent
    (sending, paused or done); a draft or scheduled one has sent nothing, a cancelled one sends
    nothing more."""
    if campaign.status == CampaignStatus.CANCELLED:
        raise CampaignStateError(f"campaign {campaign.id} is cancelled: it sends nothing more")
    if campaign.status not in (CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.DONE):
        raise CampaignStateError(f"campaign {campaign.id} is {campaign.status}: nothing of it has been sent")


def resend_uncertain(session: Session, campaign_id: int) -> int:
    """Put 'uncertain' rows back in the queue (and commit); returns how many. They go out with
    the same Message-ID, so a receiving system that did get the first copy can tell it is the
    same message. A done campaign goes back to sending; a paused one stays paused (its rows go
    out when it is resumed). Raises NotFound for an unknown campaign, CampaignStateError for a
    draft, scheduled or cancelled one (`check_resendable`)."""
    check_resendable(get_campaign(session, campaign_id))
    n = rowcount(
        session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == campaign_id, Delivery.status == D.UNCERTAIN)
            .values(status=D.QUEUED, claim_token=None, updated_at=db_now(session))
            .execution_options(synchronize_session=False)
        )
    )
    if n:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.DONE)
            .values(status=CampaignStatus.SENDING, finished_at=None)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return n


def campaign_for_episode(session: Session, episode_id: int) -> Campaign | None:
    """The episode's one campaign, or None when it has none yet."""
    return session.scalar(select(Campaign).where(Campaign.episode_id == episode_id))


def add_campaign(
    session: Session,
    record: EpisodeRecord,
    email: RenderedEmail,
    ics: bytes | None,
    *,
    as_of: datetime,
    draft: bool = False,
) -> PublishResult:
    """Record the episode's one campaign with its email rendered once (`email`, the calendar
    file `ics` as bytes) and, unless `draft`, freeze its audience. The ledger only records: the
    caller (`worker.publish`) renders. When another publisher won the race for this episode,
    returns theirs with `created` False."""
    campaign = Campaign(
        episode_id=record.id, as_of=as_of, status=CampaignStatus.DRAFT if draft else CampaignStatus.SENDING
    )
    store_email(campaign, email, ics)
    campaign, created = insert_or_find(session, campaign, select(Campaign).where(Campaign.episode_id == record.id))
    if not created:
        return PublishResult(campaign, False, record)
    if not draft:
        freeze_audience(session, campaign)
    return PublishResult(campaign, True, record)


# The one mapping between a Campaign row and its stored email (both directions).


def store_email(campaign: Campaign, email: RenderedEmail, ics: bytes | None) -> None:
    """Write the rendered email and calendar file into the campaign's columns."""
    campaign.subject = email.subject
    campaign.html = email.html
    campaign.text = email.text
    campaign.nonce = email.nonce
    campaign.ics = ics.decode() if ics else None


def stored_email(campaign: Campaign) -> tuple[RenderedEmail, bytes | None]:
    """The campaign's email as it was rendered at publishing, and its calendar file (bytes or None)."""
    email = RenderedEmail("digest", campaign.subject, campaign.html, campaign.text, campaign.nonce)
    return email, campaign.ics.encode() if campaign.ics else None
