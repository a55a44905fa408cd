"""The one place that moves a subscriber between statuses, and the rules for doing so.

Statuses are `worker.models.SubscriberStatus`. Who may make a change is an `Actor`:

- SUBSCRIBER: the person themselves, proven by a signed link mailed to the address (confirm,
  manage, unsubscribe/RFC 8058 one-click) or by signing up on the form;
- STAFF: the CLI and staff endpoints (imports included);
- DELIVERY: what the mail system tells us (a 5xx on send, a bounce report, a complaint).

`TRANSITIONS` maps (from, to) to the actors allowed to make that change; the README shows it as
a table. Anything not in it is refused. A change to the status a subscriber already has is no
change and always allowed. Every change is one conditional UPDATE (`WHERE status IN (...)`), so
two processes racing cannot take a subscriber somewhere the table does not allow.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from .db import rowcount
from .errors import NotFound, TransitionRefused
from .models import Erasure, Subscriber, SubscriberStatus, utcnow

log = logging.getLogger(__name__)

S = SubscriberStatus


class Actor(str, enum.Enum):
    """Who asks for a status change."""

    SUBSCRIBER = "subscriber"
    STAFF = "staff"
    DELIVERY = "delivery"


_P, _St, _D = Actor.SUBSCRIBER, Actor.STAFF, Actor.DELIVERY

#: (from, to) -> who may make that change. The README's "Subscriber statuses" table is this one.
TRANSITIONS: dict[tuple[str, str], frozenset[Actor]] = {
    (S.PENDING, S.ACTIVE): frozenset({_P, _St}),  # confirms (double opt-in); staff: consent recorded elsewhere
    (S.PENDING, S.UNSUBSCRIBED): frozenset({_P, _St}),
    (S.PENDING, S.BOUNCED): frozenset({_D, _St}),
    (S.PENDING, S.COMPLAINED): frozenset({_D, _St}),
    (S.PENDING, S.SUPPRESSED): frozenset({_St}),
    (S.ACTIVE, S.UNSUBSCRIBED): frozenset({_P, _St}),
    (S.ACTIVE, S.BOUNCED): frozenset({_D, _St}),
    (S.ACTIVE, S.COMPLAINED): frozenset({_D, _St}),
    (S.ACTIVE, S.SUPPRESSED): frozenset({_St}),
    (S.UNSUBSCRIBED, S.ACTIVE): frozenset({_P, _St}),  # resubscribes: confirms again from a link mailed to them
    (S.UNSUBSCRIBED, S.BOUNCED): frozenset({_D, _St}),
    (S.UNSUBSCRIBED, S.COMPLAINED): frozenset({_D, _St}),
    (S.UNSUBSCRIBED, S.SUPPRESSED): frozenset({_St}),
    # Suppressed addresses come back only through staff.
    (S.BOUNCED, S.ACTIVE): frozenset({_St}),
    (S.BOUNCED, S.UNSUBSCRIBED): frozenset({_St}),
    (S.BOUNCED, S.COMPLAINED): frozenset({_D, _St}),
    (S.BOUNCED, S.SUPPRESSED): frozenset({_St}),
    (S.COMPLAINED, S.ACTIVE): frozenset({_St}),
    (S.COMPLAINED, S.UNSUBSCRIBED): frozenset({_St}),
    (S.COMPLAINED, S.SUPPRESSED): frozenset({_St}),
    (S.SUPPRESSED, S.ACTIVE): frozenset({_St}),
    (S.SUPPRESSED, S.UNSUBSCRIBED): frozenset({_St}),
    # Erasure is final: the row keeps no personal data; a new signup is a new row.
    **{(s, S.ERASED): frozenset({_St}) for s in S.ALL if s != S.ERASED},
}

#: Statuses that never get any email, not even a confirmation or a welcome.
SUPPRESSED = frozenset({S.BOUNCED, S.COMPLAINED, S.SUPPRESSED, S.ERASED})


def allowed(before: str, after: str, actor: Actor) -> bool:
    """Whether `actor` may move a subscriber from `before` to `after` (same status: always)."""
    return before == after or actor in TRANSITIONS.get((before, after), frozenset())


def sources(after: str, actor: Actor) -> list[str]:
    """The statuses from which `actor` may move a subscriber to `after`."""
    return [before for (before, to), who in TRANSITIONS.items() if to == after and actor in who]


@dataclass(frozen=True)
class Change:
    """The outcome of `transition`. `changed` is False when the subscriber already had `after`,
    or when the change was not allowed and `strict=False` (then `after == before`)."""

    subscriber_id: int
    before: str
    after: str
    changed: bool


def transition(
    session: Session,
    to: str,
    actor: Actor,
    *,
    email: str | None = None,
    subscriber_id: int | None = None,
    reason: str = "",
    strict: bool = True,
    values: dict | None = None,
    require: tuple = (),
) -> Change:
    """Move one subscriber (by address, case-insensitive, or by id) to status `to`, in the
    caller's transaction. `values` are more columns to set with the change (e.g. confirmed_at);
    `require` more SQL conditions the row must meet (e.g. the confirmation nonce).

    Raises NotFound when there is no such subscriber (or it does not meet `require`), and
    TransitionRefused when the rules do not allow the change (with `strict=False` a refused
    change is reported as `changed=False` instead)."""
    if to not in S.ALL:
        raise TransitionRefused(f"unknown status {to!r}; one of {', '.join(S.ALL)}")
    if to == S.ERASED and not (values and values.get("email") == ""):
        # The status alone would say "erased" over an address and name still kept everywhere:
        # only `privacy.erase`, which removes them in the same transaction, makes this move.
        raise TransitionRefused("erasing removes the address and name everywhere: use `newsletter subscribers erase`")
    key = Subscriber.email_key == email.strip().lower() if email is not None else Subscriber.id == subscriber_id
    where = and_(key, *require)
    for _ in range(3):  # a concurrent change between the read and the update: read again
        row = session.execute(select(Subscriber.id, Subscriber.status).where(where)).first()
        if row is None:
            raise NotFound(f"no subscriber {email!r}" if email is not None else f"no subscriber #{subscriber_id}")
        sid, before = row
        if before == to:
            if values:
                session.execute(
                    update(Subscriber)
                    .where(Subscriber.id == sid)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            return Change(sid, before, to, False)
        if not allowed(before, to, actor):
            if strict:
                raise TransitionRefused(f"a subscriber who is {before} cannot be made {to} by {actor.value}")
            return Change(sid, before, before, False)
        result = session.execute(
            update(Subscriber)
            .where(where, Subscriber.id == sid, Subscriber.status == before)
            .values(status=to, status_reason=reason[:500], updated_at=utcnow(), **(values or {}))
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) == 1:
            log.info("subscriber #%s: %s -> %s by %s (%s)", sid, before, to, actor.value, reason[:100])
            return Change(sid, before, to, True)
    raise TransitionRefused(f"subscriber #{sid} kept changing; try again")


def suppress(
    session: Session, subscriber_id: int, to: str = S.BOUNCED, reason: str = "", actor: Actor = Actor.DELIVERY
) -> bool:
    """What the mail system reports (a 5xx on send, a bounce, a complaint): one conditional
    UPDATE, no read, for the sending hot path. Returns whether the status changed; statuses the
    table does not allow the change from (already complained, erased) are left alone."""
    result = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status.in_(sources(to, actor)))
        .values(status=to, status_reason=reason[:500], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


def unsubscribe(session: Session, email: str, actor: Actor = Actor.SUBSCRIBER, reason: str = "") -> Change:
    """Stop all email to an address. Idempotent; an address that is already suppressed (bounced,
    complained) stays so. Raises NotFound for an unknown address."""
    return transition(session, S.UNSUBSCRIBED, actor, email=email, reason=reason, strict=False)


# -- erasure: the keyed hash --------------------------------------------------------------------


def erasure_hash(signing_key: str, email: str) -> str:
    """HMAC-SHA256 of the lower-cased address with the secret key, hex (64 characters): the same
    address always gives the same value, and the address cannot be recovered without the key."""
    return hmac.new(signing_key.encode(), b"erasure\x00" + email.strip().lower().encode(), hashlib.sha256).hexdigest()


def erased(session: Session, signing_key: str, emails: Iterable[str]) -> set[str]:
    """The lower-cased addresses among `emails` that were erased before. Looks them up 1,000 at
    a time (PostgreSQL takes at most 65,535 parameters in a statement)."""
    by_hash = {erasure_hash(signing_key, e): e.strip().lower() for e in emails}
    hashes = list(by_hash)
    found: set[str] = set()
    for start in range(0, len(hashes), 1000):
        chunk = hashes[start : start + 1000]
        found.update(by_hash[h] for h in session.scalars(select(Erasure.key_hash).where(Erasure.key_hash.in_(chunk))))
    return found
