"""A person's data: export (the whole list for staff, one person's own as JSON) and erasure.

Erasure removes the address and name from `subscribers`, from every delivery row of the ledger
(and their error texts) and from staff test-send records; the subscriber row stays as a
tombstone with status `erased` (so the ledger's history still adds up) and only a keyed hash of
the address is kept (`erasures`), so a later import of the same address is recognised and left
out, while the person may still sign up again themselves.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .db import rowcount
from .errors import NotFound
from .models import (
    Campaign,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EpisodeRecord,
    Erasure,
    Subscriber,
    TestSend,
    utcnow,
)
from .models import SubscriberStatus as S
from .subscribers import export_cell
from .subscriptions import Actor, erasure_hash, transition

EXPORT_FIELDS = ("email", "name", "status", "source", "created_at", "confirmed_at")


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def export_subscribers(session: Session, status: str | None = None, fmt: str = "csv") -> Iterator[str]:
    """The list as CSV (header `email,name,status,source,created_at,confirmed_at`, spreadsheet
    formulas neutralised) or as a JSON array, in chunks of text, reading rows in batches of 1,000
    so memory stays flat at any size. Erased rows hold no data and are left out. The CSV imports
    back with `newsletter subscribers import` (statuses kept)."""
    query = select(*(getattr(Subscriber, f) for f in EXPORT_FIELDS)).where(Subscriber.status != S.ERASED)
    if status:
        query = query.where(Subscriber.status == status)
    rows = session.execute(query.order_by(Subscriber.id).execution_options(yield_per=1000))
    if fmt == "json":
        yield "["
        first = True
        for row in rows:
            item = {f: (_iso(v) if f.endswith("_at") else v) for f, v in zip(EXPORT_FIELDS, row, strict=True)}
            yield ("" if first else ",") + "\n" + json.dumps(item, ensure_ascii=False)
            first = False
        yield "\n]\n"
        return
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_FIELDS)
    for n, row in enumerate(rows, 1):
        email, name, st, source, created, confirmed = row
        writer.writerow([export_cell(email), export_cell(name), st, source, _iso(created), _iso(confirmed)])
        if n % 1000 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def person_data(session: Session, email: str) -> dict:
    """Everything held about one address, for `GET /manage/{token}/export`: the subscriber row
    and each campaign sent or attempted to it. NotFound for an unknown or erased address."""
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))
    if sub is None or sub.status == S.ERASED:
        raise NotFound("no subscription for this link")
    deliveries = session.execute(
        select(Campaign.id, EpisodeRecord.title, Delivery.status, Delivery.sent_at, Delivery.attempts)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .join(EpisodeRecord, EpisodeRecord.id == Campaign.episode_id)
        .where(Delivery.subscriber_id == sub.id)
        .order_by(Delivery.id)
    )
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "status_reason": sub.status_reason,
        "source": sub.source,
        "created_at": _iso(sub.created_at),
        "confirmed_at": _iso(sub.confirmed_at),
        "updated_at": _iso(sub.updated_at),
        "emails": [
            {"campaign": cid, "episode": title, "status": st, "sent_at": _iso(sent), "attempts": attempts}
            for cid, title, st, sent, attempts in deliveries
        ],
    }


@dataclass(frozen=True)
class ErasureReport:
    """`already`: the address was erased before (nothing else to do); `deliveries`: ledger rows
    cleared."""

    already: bool
    deliveries: int = 0


def erase(session: Session, signing_key: str, email: str) -> ErasureReport:
    """Remove an address's personal data everywhere and keep only its keyed hash, in the
    caller's transaction. NotFound when the address was never here (and was not erased before)."""
    key = email.strip().lower()
    digest = erasure_hash(signing_key, key)
    sub_id = session.scalar(select(Subscriber.id).where(Subscriber.email_key == key))
    if sub_id is None:
        if session.get(Erasure, digest) is not None:
            return ErasureReport(True)
        raise NotFound(f"no subscriber {email!r}")
    transition(
        session,
        S.ERASED,
        Actor.STAFF,
        subscriber_id=sub_id,
        reason="erased",
        values={
            "email": "",
            "email_key": f"erased:{sub_id}",
            "name": "",
            "source": "",
            "confirmed_at": None,
            "confirm_nonce": None,
            "confirm_sent_at": None,
            "welcome_sent_at": None,
        },
    )
    now = utcnow()
    # Rows not yet in a worker's hands will never be sent; the rest keep their outcome, minus the data.
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == sub_id, Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.RETRY]))
        .values(status=DeliveryStatus.SKIPPED, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    cleared = rowcount(
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == sub_id)
            .values(email="", name="", last_error=None)
            .execution_options(synchronize_session=False)
        )
    )
    session.execute(
        update(TestSend)
        .where(func.lower(TestSend.recipient) == key)
        .values(recipient="erased", error=None)
        .execution_options(synchronize_session=False)
    )
    _clear_events(session, sub_id, key, digest)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(Erasure).values(key_hash=digest, erased_at=now).on_conflict_do_nothing())
    return ErasureReport(False, cleared)


def _clear_events(session: Session, sub_id: int, key: str, digest: str) -> None:
    """Bounce and complaint reports about the address: address, detail and raw payload go; the
    unique event key keeps deduplicating with the address in it replaced by part of the hash."""
    pattern = re.compile(re.escape(key), re.IGNORECASE)
    rows = session.execute(
        select(DeliveryEvent.id, DeliveryEvent.event_key).where(
            or_(
                DeliveryEvent.subscriber_id == sub_id,
                func.lower(DeliveryEvent.email) == key,
                func.lower(DeliveryEvent.event_key).contains(key, autoescape=True),
            )
        )
    ).all()
    for event_id, event_key in rows:
        session.execute(
            update(DeliveryEvent)
            .where(DeliveryEvent.id == event_id)
            .values(event_key=pattern.sub(f"erased-{digest[:16]}", event_key), email="", detail="", payload="")
            .execution_options(synchronize_session=False)
        )
