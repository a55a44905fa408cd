"""Joining the list: double opt-in signup, confirmation, resubscribing, a welcome email.

The flow (README, "Joining"):

1. `signup()` — from the form or JSON. A new address becomes **pending**; a pending or
   unsubscribed one gets a new confirmation email; active and suppressed ones get nothing. The
   caller answers the same whatever happened, so the answer never tells whether an address was
   on the list.
2. `claim_confirmation()` — at most one confirmation email per address per hour, decided by one
   conditional UPDATE, so any number of web processes agree. The email is sent by a Celery task
   (`worker.tasks.send_joining_email`), which checks the status again just before sending.
3. `confirm()` — the POST behind the link's page. The link carries the address and a nonce kept
   on the row, signed with a timestamp (itsdangerous, expires after NEWSLETTER_CONFIRM_LINK_DAYS);
   confirming clears the nonce, so a replayed link changes nothing.

Status changes go through `worker.subscriptions` (the TRANSITIONS table).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .db import rowcount
from .errors import BadLink, LinkExpired, NotFound, TransitionRefused
from .models import Erasure, Subscriber, utcnow
from .models import SubscriberStatus as S
from .settings import Settings
from .subscribers import clean_name
from .subscriptions import SUPPRESSED, Actor, erasure_hash, transition

log = logging.getLogger(__name__)

#: At most one confirmation email per address in this long, whatever is posted.
CONFIRM_INTERVAL = timedelta(hours=1)
#: Who may be sent a confirmation email: nobody active, and never a suppressed address.
CONFIRMABLE = (S.PENDING, S.UNSUBSCRIBED)


class ConfirmLinks:
    """Signed, timestamped confirmation tokens: {"e": address, "n": nonce, "l": list id}."""

    def __init__(self, settings: Settings):
        self._serializer = URLSafeTimedSerializer(settings.signing_key, salt="newsletter.confirm")
        self._list_id = settings.list_id
        self.max_age = settings.confirm_link_days * 86400

    def make(self, email: str, nonce: str) -> str:
        return self._serializer.dumps({"e": email.lower(), "n": nonce, "l": self._list_id})

    def read(self, token: str) -> tuple[str, str]:
        """(address, nonce). Raises LinkExpired past the age limit, BadLink for a tampered,
        malformed or foreign token."""
        try:
            data = self._serializer.loads(token, max_age=self.max_age)  # type: ignore[arg-type]  # floats work
        except SignatureExpired:
            raise LinkExpired("this confirmation link has expired") from None
        except BadSignature:
            raise BadLink("this confirmation link is not valid") from None
        if (
            not isinstance(data, dict)
            or data.get("l") != self._list_id
            or not isinstance(data.get("e"), str)
            or not isinstance(data.get("n"), str)
        ):
            raise BadLink("this confirmation link is not valid")
        return data["e"], data["n"]


def refused_domain(settings: Settings, email: str) -> bool:
    """Whether the address's domain, or a parent of it, is blocked or disposable (settings)."""
    domain = email.rpartition("@")[2].lower()
    refused = settings.signup_refused_domains
    parts = domain.split(".")
    return any(".".join(parts[i:]) in refused for i in range(len(parts)))


@dataclass(frozen=True)
class Signup:
    """What `signup` did, for logs and tests only — never shown to whoever posted.
    `outcome`: created | again | already | suppressed | refused; `send`: a confirmation email is due."""

    outcome: str
    subscriber_id: int | None = None
    send: bool = False


def signup(
    session: Session,
    settings: Settings,
    email: str,
    name: str = "",
    *,
    source: str = "signup",
    pending_status: str = S.PENDING,
) -> Signup:
    """Record a signup for a validated address (see `subscribers.normalise_email`), in the
    caller's transaction. Never changes an active or suppressed subscriber; an address erased
    before is welcome again (the person signs up themselves), its erasure hash goes on confirmation."""
    if refused_domain(settings, email):
        return Signup("refused")
    key = email.lower()
    row = session.execute(select(Subscriber.id, Subscriber.status).where(Subscriber.email_key == key)).first()
    if row is None:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        now = utcnow()
        session.execute(
            insert(Subscriber)
            .values(
                email=email,
                email_key=key,
                name=clean_name(name),
                status=pending_status,
                status_reason=source,
                source=source,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["email_key"])
        )
        row = session.execute(select(Subscriber.id, Subscriber.status).where(Subscriber.email_key == key)).one()
        outcome = "created"
    else:
        outcome = "again"
    sid, status = row
    if status == S.ACTIVE:
        return Signup("already", sid)
    if status in SUPPRESSED:
        return Signup("suppressed", sid)
    if name and status == S.PENDING:
        # Only an unconfirmed name may be set this way: nobody can rename a confirmed subscriber.
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == sid, Subscriber.status == S.PENDING)
            .values(name=clean_name(name))
            .execution_options(synchronize_session=False)
        )
    return Signup(outcome, sid, claim_confirmation(session, sid))


def claim_confirmation(session: Session, subscriber_id: int) -> bool:
    """Take the right to send this subscriber a confirmation email now: True at most once per
    CONFIRM_INTERVAL, and only while pending or unsubscribed. Keeps an existing nonce, so links
    already mailed keep working until they expire."""
    now = utcnow()
    result = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status.in_(CONFIRMABLE),
            or_(Subscriber.confirm_sent_at.is_(None), Subscriber.confirm_sent_at < now - CONFIRM_INTERVAL),
        )
        .values(confirm_sent_at=now, confirm_nonce=func.coalesce(Subscriber.confirm_nonce, secrets.token_urlsafe(12)))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def claim_confirmations(session: Session, email_keys: list[str]) -> list[int]:
    """`claim_confirmation` for many (lower-cased) addresses, e.g. an import's pending rows;
    returns the subscriber ids now due a confirmation email."""
    due: list[int] = []
    for start in range(0, len(email_keys), 1000):
        ids = session.scalars(select(Subscriber.id).where(Subscriber.email_key.in_(email_keys[start : start + 1000])))
        due.extend(sid for sid in list(ids) if claim_confirmation(session, sid))
    return due


@dataclass(frozen=True)
class Confirmation:
    """`outcome`: confirmed | already (active, link used before) | used (a replayed or superseded
    link: nothing changed); `welcome`: a welcome email is due."""

    outcome: str
    email: str
    subscriber_id: int | None = None
    welcome: bool = False


def peek(session: Session, settings: Settings, token: str) -> tuple[str, str]:
    """(address, status) behind a confirmation link, changing nothing (the GET page).
    Raises LinkExpired, BadLink (also when nobody has that address)."""
    email, _nonce = ConfirmLinks(settings).read(token)
    status = session.scalar(select(Subscriber.status).where(Subscriber.email_key == email))
    if status is None:
        raise BadLink("nobody signed up with this link")
    return email, status


def confirm(session: Session, settings: Settings, token: str) -> Confirmation:
    """Pending or unsubscribed -> active, for the link's address, if the link is the live one.
    Raises LinkExpired, BadLink, and TransitionRefused for a suppressed address."""
    email, nonce = ConfirmLinks(settings).read(token)
    try:
        change = transition(
            session,
            S.ACTIVE,
            Actor.SUBSCRIBER,
            email=email,
            reason="confirmed",
            require=(Subscriber.confirm_nonce == nonce,),
            values={"confirmed_at": utcnow(), "confirm_nonce": None, "confirm_sent_at": None},
        )
    except NotFound:
        status = session.scalar(select(Subscriber.status).where(Subscriber.email_key == email))
        if status is None:
            raise BadLink("nobody signed up with this link") from None
        return Confirmation("already" if status == S.ACTIVE else "used", email)
    session.execute(delete(Erasure).where(Erasure.key_hash == erasure_hash(settings.signing_key, email)))
    welcome = settings.welcome_email and claim_welcome(session, change.subscriber_id)
    return Confirmation("confirmed", email, change.subscriber_id, welcome)


def claim_welcome(session: Session, subscriber_id: int) -> bool:
    """True once per subscriber ever: the welcome email is sent once."""
    result = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status == S.ACTIVE, Subscriber.welcome_sent_at.is_(None))
        .values(welcome_sent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def request_resubscribe(session: Session, email: str) -> str:
    """From the manage page: an unsubscribed (or still pending) person asks to come back; they
    confirm again from a new email. Returns "sent", "recently" (an email went out within the
    hour) or "already". Raises TransitionRefused for a suppressed address (staff only)."""
    sub = session.execute(select(Subscriber.id, Subscriber.status).where(Subscriber.email_key == email)).first()
    if sub is None:
        raise NotFound("no subscription for this link")
    if sub.status == S.ACTIVE:
        return "already"
    if sub.status not in CONFIRMABLE:
        raise TransitionRefused(f"a subscriber who is {sub.status} can only be brought back by staff")
    return "sent" if claim_confirmation(session, sub.id) else "recently"


def rename(session: Session, email: str, name: str) -> str:
    """Set a subscriber's display name (one line, at most 200 characters); returns it."""
    name = clean_name(name)
    result = session.execute(
        update(Subscriber)
        .where(Subscriber.email_key == email, Subscriber.status != S.ERASED)
        .values(name=name, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise NotFound("no subscription for this link")
    return name


def enqueue_email(settings: Settings, kind: str, subscriber_ids: list[int]) -> None:
    """Queue confirmation or welcome emails (`worker.queue.joining_emails`: one task each, by
    name). The task waits for the global send rate (NEWSLETTER_SEND_RATE), so an import of many
    pending rows is mailed at that pace. `settings` is the caller's (the queue reads the same)."""
    if subscriber_ids:
        from .queue import joining_emails

        joining_emails(kind, subscriber_ids)
