"""Database tables. The `deliveries` table is the ledger: one row per (campaign, subscriber)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime (the tables' default timestamps)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The SQLAlchemy declarative base of every table here."""

    pass


class SubscriberStatus(enum.StrEnum):
    """Where a subscriber stands. Only `worker.subscriptions` moves a subscriber between these
    (its TRANSITIONS table is the rule); only ACTIVE subscribers get campaigns."""

    PENDING = "pending"  # signed up, not yet confirmed (double opt-in): never gets a campaign
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # a 5xx on send: suppressed
    COMPLAINED = "complained"  # a spam complaint (feedback loop): suppressed
    SUPPRESSED = "suppressed"  # suppressed by hand
    ERASED = "erased"  # personal data removed; only a keyed hash of the address is kept (Erasure)
    ALL = enum.nonmember((PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED, SUPPRESSED, ERASED))


class DeliveryStatus(enum.StrEnum):
    """Where one delivery (campaign, subscriber) stands; `worker.ledger` moves it."""

    QUEUED = "queued"  # waiting to be claimed
    CLAIMED = "claimed"  # claimed by a batch, not yet attempted
    SENDING = "sending"  # the SMTP transaction is under way
    RETRY = "retry"  # a temporary failure; due again at next_attempt_at
    SENT = "sent"
    FAILED = "failed"  # permanent failure, or out of attempts
    UNCERTAIN = "uncertain"  # its worker died mid-send: maybe delivered, never resent by itself
    SKIPPED = "skipped"  # unsubscribed or suppressed after the audience was frozen
    BOUNCED = "bounced"  # sent, then reported back as a hard bounce (webhook or DSN)
    CANCELLED = "cancelled"  # its campaign was cancelled before it was sent
    ALL = enum.nonmember((QUEUED, CLAIMED, SENDING, RETRY, SENT, FAILED, UNCERTAIN, SKIPPED, BOUNCED, CANCELLED))
    OPEN = enum.nonmember((QUEUED, CLAIMED, SENDING, RETRY))  # a campaign with any of these is not done


# Row ids are INTEGER: PostgreSQL's int4. An id from outside (a command's argument, a URL) past
# this is refused as invalid before it reaches the database, which would fail the statement.
MAX_ID = 2**31 - 1


class Subscriber(Base):
    """A person on the list: address (unique case-insensitively via `email_key`), name, status
    (`SubscriberStatus`) and the double opt-in bookkeeping."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # lower-cased address: the case-insensitive identity of a subscriber
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.ACTIVE, index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # Double opt-in (worker.subscriptions): how the person came in, when they confirmed, and the
    # nonce the one live confirmation link carries (cleared on use, so a replayed link does nothing).
    source: Mapped[str] = mapped_column(String(20), default="", server_default="")
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    confirm_nonce: Mapped[str | None] = mapped_column(String(32), nullable=True)
    confirm_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    welcome_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Erasure(Base):
    """An erased address: only a keyed hash (HMAC-SHA256 with the secret key) of it, so a later
    import or signup of the same address is recognised without keeping the address."""

    __tablename__ = "erasures"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EpisodeRecord(Base):
    """A published episode: its feed GUID and slug (both unique), title, publication time and the
    whole `Episode` as JSON in `data`."""

    __tablename__ = "episodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guid: Mapped[str] = mapped_column(String(500), unique=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    published_on: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[str] = mapped_column(Text)  # Episode.to_json()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CampaignStatus(enum.StrEnum):
    """A campaign: a draft (NEWSLETTER_AUTO_SEND=false) waits for `newsletter send` (or is
    scheduled, and the sweeper starts it); sending until no delivery is open; then done. Staff can
    pause and resume a sending one, and cancel any that is not done (`worker.ledger.control`)."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"  # by staff, or the transport is misconfigured; status_reason says why
    DONE = "done"
    CANCELLED = "cancelled"


class Campaign(Base):
    """The email for one episode (one per episode): subject, HTML and text rendered at publish,
    status (`CampaignStatus`), audience size `total` and its timestamps."""

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_status_scheduled", "status", "scheduled_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # one live campaign per episode: publishing again finds this row
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.SENDING)
    # rendered and inlined once, at publish; workers only personalise
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str] = mapped_column(String(40))
    ics: Mapped[str | None] = mapped_column(Text, nullable=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # why sending stopped (a paused or cancelled campaign): one line, shown by `newsletter status`
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # when a scheduled campaign starts (the sweeper starts it)
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Delivery(Base):
    """The ledger row for one (campaign, subscriber): the frozen address, status
    (`DeliveryStatus`), attempts, the claim holding it, Message-IDs and the last error."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id", name="uq_delivery_campaign_subscriber"),
        # What a claim reads, in the order it takes it (migration 0009): a campaign's queued rows
        # by id, and its retry rows by due time, so rows already sent are never walked past.
        # (campaign_id, status, id) also serves every other look-up by campaign and status.
        Index("ix_deliveries_campaign_status_id", "campaign_id", "status", "id"),
        # Partial, as the migrations made them (0005, 0006): only the rows a look-up can find.
        *(
            Index(f"ix_deliveries_{name}", column, postgresql_where=where, sqlite_where=where)
            for name, column, where in (
                ("claim", "claim_token", text("claim_token IS NOT NULL")),
                ("message_id", "message_id", text("message_id IS NOT NULL")),
                ("provider_message_id", "provider_message_id", text("provider_message_id IS NOT NULL")),
                ("in_flight", "claim_token", text("status IN ('claimed', 'sending')")),
            )
        ),
        Index(
            "ix_deliveries_retry",
            "campaign_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'retry'"),
            sqlite_where=text("status = 'retry'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Foreign keys on SQLite; on PostgreSQL triggers on the referenced tables instead (migration
    # 0008: a key is checked once per inserted row, which doubled publishing a million rows).
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)  # 0010
    # frozen at publish: the audience and how to address them
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # the mail provider's own id for the message (SES, Postmark, Mailgun): what their reports name
    provider_message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeliveryEvent(Base):
    """What happened to a message after it left: a bounce, a complaint or a delivery report, from
    a provider's webhook or a returned DSN. `event_key` makes every report count once."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)  # EventKind
    source: Mapped[str] = mapped_column(String(20))  # ses, postmark, mailgun, dsn
    email: Mapped[str] = mapped_column(String(320), default="")
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), nullable=True, index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"), nullable=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), nullable=True, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str] = mapped_column(Text, default="")  # the raw report, as received
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EventKind:
    """The kinds of `DeliveryEvent`: hard bounce, soft bounce, complaint, delivery."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    ALL = (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, DELIVERY)


class Claim(Base):
    """A batch in progress. Its heartbeat moves with every message; a stale one is a dead worker."""

    __tablename__ = "claims"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    worker: Mapped[str] = mapped_column(String(200), default="")
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feed(Base):
    """A polled podcast feed: its URL (unique), title, poll times, failure count, HTTP caching
    validators (ETag, Last-Modified) and the newest item time seen."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    primed: Mapped[int] = mapped_column(Integer, default=0)  # 1 once the back catalogue is recorded
    last_polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    etag: Mapped[str | None] = mapped_column(String(500), nullable=True)
    modified: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # the newest publication time among the items seen: older new items are back catalogue
    newest_item_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SeenItem(Base):
    """A feed item (or dropped file) already handled. The unique key makes 'new' race-free."""

    __tablename__ = "seen_items"
    __table_args__ = (UniqueConstraint("source", "item_key", name="uq_seen_source_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(2000))
    item_key: Mapped[str] = mapped_column(String(500))
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"), nullable=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TestSend(Base):
    """Staff test emails: kept apart from the campaign ledger, used for rate limiting and audit."""

    __tablename__ = "test_sends"
    __test__ = False  # not a pytest class

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"), nullable=True)
    recipient: Mapped[str] = mapped_column(String(320))
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="sent")
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
