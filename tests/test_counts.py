"""Per-campaign counts kept by the database (migration 0005) agree with the rows, whatever
writes them: publishing, claims, progress, failures, sweeps, resends, and plain SQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, select, text, update

from worker.bounces.stats import feedback_counts
from worker.db import get_engine, session_factory, session_scope
from worker.errors import NotFound
from worker.ledger import (
    ProgressWriter,
    claim_batch,
    counts,
    mark_permanent_failure,
    mark_temporary_failure,
    release_claim,
    resend_uncertain,
    status,
    sweep,
)
from worker.models import Campaign, Delivery, DeliveryEvent, Subscriber
from worker.settings import get_settings

from .factories import make_campaign


def counted(cid: int) -> dict[str, int]:
    """What the rows say, counted the slow way."""
    with session_scope() as s:
        rows = s.execute(
            text("SELECT status, count(*) FROM deliveries WHERE campaign_id = :c GROUP BY status"), {"c": cid}
        ).all()
    return {status: n for status, n in rows}


def kept(cid: int) -> dict[str, int]:
    """What the counts table says."""
    with session_scope() as s:
        rows = s.execute(
            text("SELECT status, sum(n) FROM campaign_counts WHERE campaign_id = :c GROUP BY status"), {"c": cid}
        ).all()
    return {status: int(n) for status, n in rows if n}


def test_counts_follow_every_writer(database, seed_path):
    settings = get_settings()
    cid = make_campaign(seed_path, 60)
    assert kept(cid) == counted(cid) == {"queued": 60}
    with session_factory()() as s:
        rows = claim_batch(s, cid, "t1", 10)
        assert kept(cid) == counted(cid)
        progress = ProgressWriter.open(get_engine())
        finished = None
        for row in rows[:6]:
            assert progress.start("t1", row.id, finished)()
            finished = (row.id, f"<{row.id}@x>")
        progress.sent("t1", *finished)
        assert progress.start("t1", rows[6].id, None)()
        mark_temporary_failure(s, "t1", rows[6].id, "451", 1, settings)
        assert progress.start("t1", rows[7].id, None)()
        mark_permanent_failure(s, "t1", rows[7].id, rows[7].subscriber_id, "550 no such user")
        assert progress.start("t1", rows[8].id, None)()  # left 'sending': its worker "dies"
        progress.close()
        release_claim(s, "t1")  # rows[9] back to the queue
        assert kept(cid) == counted(cid)
        assert counted(cid)["sent"] == 6 and counted(cid)["sending"] == 1
        # the sweeper: the in-flight row of a claim that is gone becomes uncertain
        sweep(s, settings)
        assert counted(cid).get("uncertain") == 1
        assert kept(cid) == counted(cid)
        assert resend_uncertain(s, cid) == 1
        assert kept(cid) == counted(cid)
        # and plain SQL, as an operator might write it
        s.execute(
            update(Delivery).where(Delivery.campaign_id == cid, Delivery.status == "queued").values(status="skipped")
        )
        s.commit()
        assert kept(cid) == counted(cid)
        s.execute(text("DELETE FROM deliveries WHERE campaign_id = :c AND status = 'skipped'"), {"c": cid})
        s.commit()
        assert kept(cid) == counted(cid)
    with session_scope() as s:
        reported = {k: v for k, v in counts(s, cid).as_dict().items() if v}
    assert reported == counted(cid)


def test_the_report_is_one_statement_and_agrees_with_the_rows(database, seed_path):
    cid = make_campaign(seed_path, 8)
    with session_scope() as s:
        ids = s.scalars(select(Delivery.id).where(Delivery.campaign_id == cid).order_by(Delivery.id)).all()
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:3])).values(status="sent"))
        s.execute(update(Delivery).where(Delivery.id == ids[3]).values(status="bounced"))
        gone = s.scalar(select(Delivery.subscriber_id).where(Delivery.id == ids[0]))
        later = s.scalar(select(Campaign.started_at).where(Campaign.id == cid)) + timedelta(seconds=1)
        s.execute(update(Subscriber).where(Subscriber.id == gone).values(status="unsubscribed", updated_at=later))
        for kind, delivery in (("delivery", ids[1]), ("delivery", ids[1]), ("complaint", ids[2])):
            s.add(DeliveryEvent(event_key=f"{kind}-{delivery}-{uuid.uuid4().hex}", kind=kind, source="test",
                                delivery_id=delivery, campaign_id=cid))  # fmt: skip
    statements: list[str] = []
    engine = get_engine()
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with session_scope() as s:
            report = status(s, cid)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    queries = [q for q in statements if not q.startswith("BEGIN")]  # SQLite's BEGIN IMMEDIATE
    assert len(queries) == 1  # polled during a send: one round trip, however many rows
    assert {k: v for k, v in report.counts.as_dict().items() if v} == counted(cid) == {
        "queued": 4, "sent": 3, "bounced": 1}  # fmt: skip
    assert report.title and report.episode and report.state == "sending"
    assert report.eta_seconds is not None and report.eta_seconds >= 0
    with session_scope() as s:
        assert report.feedback == feedback_counts(s, cid) == {
            "delivered": 1, "bounced": 1, "complained": 1, "unsubscribed": 1}  # fmt: skip
        with pytest.raises(NotFound):
            status(s, cid + 1000)
