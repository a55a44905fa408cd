"""The status rules (worker.subscriptions): every change goes through the one table."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from worker.db import session_scope
from worker.errors import NotFound, TransitionRefused
from worker.models import Subscriber
from worker.models import SubscriberStatus as S
from worker.subscriptions import TRANSITIONS, Actor, allowed, suppress, transition, unsubscribe


def add(email: str, status: str) -> int:
    with session_scope() as s:
        sub = Subscriber(email=email, email_key=email.lower(), name="", status=status, status_reason="")
        s.add(sub)
        s.flush()
        return sub.id


def status_of(email: str) -> str:
    with session_scope() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email_key == email.lower()))


def test_the_table_says_what_the_issue_asks():
    # an unsubscribed person may come back by confirming again (a link mailed to them)
    assert allowed(S.UNSUBSCRIBED, S.ACTIVE, Actor.SUBSCRIBER)
    # bounced or complained come back only through staff
    for gone in (S.BOUNCED, S.COMPLAINED, S.SUPPRESSED):
        for to in (S.ACTIVE, S.PENDING, S.UNSUBSCRIBED):
            assert not allowed(gone, to, Actor.SUBSCRIBER)
            assert not allowed(gone, to, Actor.DELIVERY)
        assert allowed(gone, S.ACTIVE, Actor.STAFF)
    # the mail system can only suppress; it never activates anybody
    assert all(to in (S.BOUNCED, S.COMPLAINED) for (_, to), who in TRANSITIONS.items() if Actor.DELIVERY in who)
    # erased is final
    assert not any(before == S.ERASED for before, _ in TRANSITIONS)
    # pending becomes active only by confirming (or staff), never by the mail system
    assert not allowed(S.PENDING, S.ACTIVE, Actor.DELIVERY)


def test_transition_follows_the_table_for_every_pair(database):
    pairs = list(itertools.product([x for x in S.ALL if x != S.ERASED], S.ALL))
    for i, (before, after) in enumerate(pairs):
        for actor in Actor:
            email = f"p{i}-{actor.value}@example.com"
            add(email, before)
            with session_scope() as s:
                if allowed(before, after, actor) and after == S.ERASED:
                    with pytest.raises(TransitionRefused, match="subscribers erase"):
                        transition(s, after, actor, email=email)  # the status alone, data kept
                    blank = {"email": "", "email_key": f"erased:{email}"}  # as privacy.erase does
                    change = transition(s, after, actor, email=email, reason="test", values=blank)
                    assert change.after == after and change.changed
                elif allowed(before, after, actor):
                    change = transition(s, after, actor, email=email, reason="test")
                    assert change.after == after and change.changed == (before != after)
                else:
                    with pytest.raises(TransitionRefused):
                        transition(s, after, actor, email=email)
            if after != S.ERASED or not allowed(before, after, actor):
                assert status_of(email) == (after if allowed(before, after, actor) else before)


def test_lenient_unsubscribe_and_unknown_address(database):
    add("gone@example.com", S.BOUNCED)
    add("here@example.com", S.ACTIVE)
    with session_scope() as s:
        assert unsubscribe(s, "HERE@example.com").changed
        kept = unsubscribe(s, "gone@example.com")
        assert not kept.changed and kept.after == S.BOUNCED
        with pytest.raises(NotFound):
            unsubscribe(s, "nobody@example.com")
    assert status_of("here@example.com") == S.UNSUBSCRIBED and status_of("gone@example.com") == S.BOUNCED


def test_suppress_is_one_conditional_update(database):
    active, complained, erased = (
        add("a@example.com", S.ACTIVE),
        add("c@example.com", S.COMPLAINED),
        add("e@example.com", S.ERASED),
    )
    with session_scope() as s:
        assert suppress(s, active, S.BOUNCED, "550 5.1.1 no such user")
        assert not suppress(s, active, S.BOUNCED, "again")  # already bounced: nothing to do
        assert suppress(s, active, S.COMPLAINED, "feedback loop")
        assert not suppress(s, complained, S.BOUNCED)  # a complaint is not downgraded
        assert not suppress(s, erased, S.BOUNCED)
    assert [status_of(e) for e in ("a@example.com", "c@example.com", "e@example.com")] == [
        S.COMPLAINED,
        S.COMPLAINED,
        S.ERASED,
    ]


def test_staff_bring_a_bounced_address_back_with_the_cli(database):
    from .factories import cli as run

    add("back@example.com", S.BOUNCED)
    add("gone@example.com", S.ERASED)
    proc = run("subscribers", "set-status", "BACK@example.com", "active", "--reason", "mailbox fixed")
    assert proc.returncode == 0 and "back@example.com is now active" in proc.stdout.lower()
    assert status_of("back@example.com") == S.ACTIVE
    refused = run("subscribers", "set-status", "gone@example.com", "active")
    assert refused.returncode == 2 and "erased" in refused.stderr and "Traceback" not in refused.stderr
    assert run("subscribers", "set-status", "back@example.com", "sleeping").returncode == 2
    # "erased" by status alone would keep the address and name: only `subscribers erase` erases
    refused = run("subscribers", "set-status", "back@example.com", "erased")
    assert refused.returncode == 2 and "newsletter subscribers erase" in refused.stderr
    assert status_of("back@example.com") == S.ACTIVE
    assert run("subscribers", "set-status", "nobody@example.com", "active").returncode == 2


def test_the_readme_table_is_the_transitions_table():
    from worker.settings import PROJECT_DIR

    readme = (PROJECT_DIR / "README.md").read_text()
    lines = readme[readme.index("| from \\ to |") :].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    words = {"person": Actor.SUBSCRIBER, "staff": Actor.STAFF, "mail system": Actor.DELIVERY}
    documented = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "(new)":
            continue
        for to, cell in zip(header, cells[1:], strict=True):
            who = frozenset(actor for word, actor in words.items() if word in cell)
            if who:
                documented[(cells[0], to)] = who
    assert documented == {pair: who for pair, who in TRANSITIONS.items() if pair[1] in header}
    assert set(header) | {S.PENDING} == set(S.ALL)


def test_no_other_module_writes_a_subscribers_status():
    """Issue 10: the rules live in one module. Any UPDATE of subscribers elsewhere leaves the
    status alone (names, confirmation bookkeeping); status changes call worker.subscriptions."""
    import re as _re

    from worker.settings import PACKAGE_DIR

    offenders = []
    for path in PACKAGE_DIR.rglob("*.py"):
        if path.name == "subscriptions.py" or "migrations" in path.parts:
            continue
        text = path.read_text()
        for match in _re.finditer(r"update\(Subscriber\)", text):
            statement = text[match.start() : text.find("execution_options", match.start())]
            if _re.search(r"(?<!\.)\bstatus\s*=(?!=)", statement):
                offenders.append(f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}")
        if _re.search(r"\.status\s*=\s*SubscriberStatus", text):
            offenders.append(f"{path.name}: assigns .status")
    assert offenders == []
