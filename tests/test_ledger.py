"""The ledger's state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from worker.celery import VISIBILITY_TIMEOUT
from worker.clock import db_now
from worker.db import dispose_engines, get_engine, migrate, session_factory, session_scope
from worker.episodes import load_episode
from worker.ledger import (
    ProgressWriter,
    claim_batch,
    counts,
    due,
    freeze_audience,
    get_campaign,
    mark_temporary_failure,
    resend_uncertain,
    retry_delay,
    sweep,
)
from worker.models import Claim, Delivery, Subscriber, utcnow
from worker.publish import create_campaign
from worker.settings import get_settings

from .factories import make_campaign, seed_subscribers


def test_publish_is_idempotent_and_freezes_the_audience(database, seed_path):
    cid = make_campaign(seed_path, 30)
    settings = get_settings()
    seed_subscribers(5, prefix="late")  # joined after publishing: not in this campaign
    with session_scope() as s:
        again = create_campaign(s, load_episode(seed_path, settings.tz), settings)
        assert not again.created and again.campaign.id == cid
        assert counts(s, cid)["queued"] == 30


def test_freezing_a_frozen_campaign_again_adds_only_newcomers(database, seed_path):
    cid = make_campaign(seed_path, 5)
    seed_subscribers(2, prefix="late")
    with session_scope() as s:
        campaign = get_campaign(s, cid)
        assert freeze_audience(s, campaign) == 2
        assert freeze_audience(s, campaign) == 0
        assert campaign.total == 7 and counts(s, cid)["queued"] == 7


@pytest.mark.parametrize(
    "change",
    [
        "DELETE FROM subscribers WHERE id = :s",
        "UPDATE subscribers SET id = id + 1000 WHERE id = :s",
        "DELETE FROM campaigns WHERE id = :c",
        "UPDATE campaigns SET id = id + 1000 WHERE id = :c",
    ],
)
def test_a_subscriber_or_campaign_with_deliveries_cannot_go(database, seed_path, change):
    # PostgreSQL has no foreign keys from deliveries (migration 0008: a check per inserted row
    # doubled publishing); its triggers refuse what the keys refused. SQLite keeps the keys.
    cid = make_campaign(seed_path, 3)
    with session_scope() as s:
        sid = s.scalar(select(Delivery.subscriber_id).where(Delivery.campaign_id == cid).limit(1))
    with pytest.raises(IntegrityError), session_scope() as s:
        s.execute(text(change), {"s": sid, "c": cid})
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.subscriber_id == sid)) == 1
        assert counts(s, cid)["queued"] == 3


def test_a_subscriber_without_deliveries_can_still_be_renumbered_or_deleted(database, seed_path):
    make_campaign(seed_path, 3)
    seed_subscribers(1, prefix="late")
    with session_scope() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email_key == "late0@example.org"))
        s.execute(text("UPDATE subscribers SET id = id + 1000 WHERE id = :s"), {"s": sid})
        s.execute(text("UPDATE subscribers SET name = 'same id' WHERE id = :s"), {"s": sid + 1000})
        s.execute(text("DELETE FROM subscribers WHERE id = :s"), {"s": sid + 1000})
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 3


def test_concurrent_claims_are_disjoint(database, seed_path):
    cid = make_campaign(seed_path, 400)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def claimer(i: int) -> None:
        try:
            with session_factory()() as s:
                got: list[int] = []
                while rows := claim_batch(s, cid, f"token-{i}-{len(got)}", 17, f"t{i}"):
                    got += [r.id for r in rows]
                results.append(got)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    flat = [i for r in results for i in r]
    assert len(flat) == 400 and len(set(flat)) == 400


def test_sweep_requeues_untouched_rows_and_marks_in_flight_uncertain(database, seed_path):
    cid = make_campaign(seed_path, 10)
    settings = get_settings()
    with session_factory()() as s:
        rows = claim_batch(s, cid, "dead-token", 5, "dead")
    progress = ProgressWriter.open(get_engine())
    assert progress.start("dead-token", rows[0].id, None)()
    assert progress.start("dead-token", rows[1].id, (rows[0].id, "<a@x>"))()  # in flight when it "died"
    assert not progress.start("someone-else", rows[2].id, None)()  # not their row
    with session_factory()() as s:
        s.execute(update(Claim).values(heartbeat_at=utcnow() - timedelta(seconds=settings.claim_lease + 5)))
        s.commit()
    with session_scope() as s:
        report = sweep(s, settings)
    assert report.requeued == 3 and report.uncertain == 1 and report.dead_claims == 1
    with session_scope() as s:
        c = counts(s, cid)
    assert c["sent"] == 1 and c["uncertain"] == 1 and c["queued"] == 8
    assert report.need_work == [cid]
    # a late answer from the "dead" worker still counts: sent, not left uncertain
    progress.sent("dead-token", rows[1].id, "<b@x>")
    progress.close()
    with session_scope() as s:
        assert counts(s, cid)["sent"] == 2
        assert resend_uncertain(s, cid) == 0


def test_a_write_nobody_waited_for_keeps_its_answer(database, seed_path):
    cid = make_campaign(seed_path, 3)
    with session_factory()() as s:
        rows = claim_batch(s, cid, "t", 3, "w")
    progress = ProgressWriter.open(get_engine())
    first = progress.start("t", rows[0].id, None)
    second = progress.start("someone-else", rows[1].id, None)  # reads the first reply on its way
    third = progress.start("t", rows[2].id, None)
    progress.close()  # reads the last one
    assert (first(), second(), third()) == (True, False, True)
    with session_scope() as s:
        assert counts(s, cid)["sending"] == 2


# A commit that fails after the server has sent the statement's rows: a deferred constraint
# trigger raises at commit (Sync), once (a sequence is outside the transaction), for the row it
# names. It stands for a backend killed between CommandComplete and its commit.
REFUSE_COMMIT_ONCE = """
CREATE SEQUENCE refuse_once;
CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('refuse_once') = 1 THEN RAISE EXCEPTION 'commit refused for delivery %', NEW.id; END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_commit AFTER UPDATE ON deliveries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status = 'sending' AND NEW.id = {id}) EXECUTE FUNCTION refuse_commit();
"""


@pytest.mark.parametrize("grouped", [False, True])
def test_rows_returned_by_a_write_whose_commit_fails_are_no_go_ahead(postgres_url, seed_path, grouped):
    """PostgreSQL sends a statement's rows before its autocommit transaction commits; a commit
    that then fails (here a deferred trigger; in life a backend killed in between) rolls the
    write back, so the row is still only 'claimed'. The writer must say so (raise), not hand
    the rows over as a go-ahead: content sent on them went to a row the release puts back in
    the queue, and was sent again."""
    import psycopg

    dispose_engines()
    migrate(get_settings())
    cid = make_campaign(seed_path, 3)
    with session_factory()() as s:
        rows = claim_batch(s, cid, "t", 3, "w")
        s.execute(text(REFUSE_COMMIT_ONCE.format(id=rows[1].id)))
        s.commit()
    progress = ProgressWriter.open(get_engine())
    try:
        assert progress.start("t", rows[0].id, None)()
        with pytest.raises(psycopg.Error, match="commit refused"):
            if grouped:
                progress.write_group([("t", rows[1].id, (rows[0].id, "<a@x>")), ("t", rows[2].id, None)])
            else:
                progress.start("t", rows[1].id, (rows[0].id, "<a@x>"))()
        # the connection is still good after a refused commit: the next write goes through
        assert progress.start("t", rows[2].id if not grouped else rows[1].id, None)()
    finally:
        progress.close()
    with session_scope() as s:
        statuses = dict(s.execute(select(Delivery.id, Delivery.status)).all())
    if grouped:  # the whole group was rolled back, row 2's move with it; row 1 went on later
        assert statuses == {rows[0].id: "sending", rows[1].id: "sending", rows[2].id: "claimed"}
    else:
        assert statuses == {rows[0].id: "sending", rows[1].id: "claimed", rows[2].id: "sending"}


def test_live_claims_are_left_alone(database, seed_path):
    cid = make_campaign(seed_path, 10)
    with session_factory()() as s:
        rows = claim_batch(s, cid, "live", 5, "w")
    progress = ProgressWriter.open(get_engine())
    progress.start("live", rows[0].id, None)  # closing waits for a write nobody asked about
    progress.close()
    with session_scope() as s:
        report = sweep(s, get_settings())
        assert report.requeued == 0 and report.uncertain == 0 and report.need_work == []
        assert counts(s, cid)["claimed"] == 4


def test_resend_uncertain_requeues_with_the_same_message_id(database, seed_path):
    cid = make_campaign(seed_path, 3)
    with session_scope() as s:
        s.execute(update(Delivery).where(Delivery.campaign_id == cid).values(status="uncertain"))
    with session_scope() as s:
        assert resend_uncertain(s, cid) == 3
        assert counts(s, cid)["queued"] == 3


def test_retry_schedule(database, seed_path):
    settings = get_settings()
    rng = random.Random(7)
    delays = [retry_delay(a, settings, rng) for a in range(1, 30)]
    assert all(d < VISIBILITY_TIMEOUT / 2 for d in delays)
    assert delays[0] <= settings.retry_base_delay and max(delays) <= settings.retry_max_delay
    assert delays[5] > delays[0]  # it grows
    cid = make_campaign(seed_path, 1)
    with session_factory()() as s:
        progress = ProgressWriter.open(get_engine())
        row = claim_batch(s, cid, "t", 1)[0]
        assert progress.start("t", row.id, None)()
        due = mark_temporary_failure(s, "t", row.id, "451 busy", 1, settings)
        assert due is not None
        d = s.scalars(select(Delivery)).one()
        assert d.status == "retry" and d.claim_token is None
        # out of attempts: failed, not retried forever
        s.execute(update(Delivery).values(status="queued"))
        s.commit()
        row = claim_batch(s, cid, "t2", 1)[0]
        assert progress.start("t2", row.id, None)()
        progress.close()
        assert mark_temporary_failure(s, "t2", row.id, "451 busy", settings.max_attempts, settings) is None
        assert s.scalar(select(Delivery.status)) == "failed"


def test_an_unaddressable_row_fails_alone(database, seed_path, tmp_path, monkeypatch):
    """An address that reached the database without validation fails its own row, not the batch."""
    from worker.models import Subscriber
    from worker.sending import Sender
    from worker.settings import reset_settings

    monkeypatch.setenv("NEWSLETTER_MAIL_URL", f"maildir:{tmp_path}/out")
    reset_settings()
    seed_subscribers(3)
    with session_scope() as s:
        s.add(Subscriber(email="bad address@x", email_key="bad address@x", name=""))
    settings = get_settings()
    with session_scope() as s:
        cid = create_campaign(s, load_episode(seed_path, settings.tz), settings).campaign.id
    outcome = Sender(settings).run(cid)
    assert outcome.sent == 3 and outcome.failed == 1
    with session_scope() as s:
        c = counts(s, cid)
    assert c["sent"] == 3 and c["failed"] == 1 and c["sending"] == 0


def test_claims_take_due_retries_then_queued_rows_by_id_however_many_are_sent(database, seed_path):
    cid = make_campaign(seed_path, 60)
    with session_scope() as s:
        ids = list(s.scalars(select(Delivery.id).where(Delivery.campaign_id == cid).order_by(Delivery.id)))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:40])).values(status="sent"))
        # Retries among the sent rows: two due (the older first), one not due for an hour.
        for row, offset in ((ids[5], -600.0), (ids[20], -1200.0), (ids[10], 3600.0)):
            due_at = db_now(s, offset)
            s.execute(update(Delivery).where(Delivery.id == row).values(status="retry", next_attempt_at=due_at))
    with session_factory()() as s:
        assert [r.id for r in claim_batch(s, cid, "a", 1)] == [ids[20]]
        assert [r.id for r in claim_batch(s, cid, "b", 3)] == [ids[5], ids[40], ids[41]]  # returned by id
        assert [r.id for r in claim_batch(s, cid, "c", 4)] == ids[42:46]
        assert [r.id for r in claim_batch(s, cid, "d", 100)] == ids[46:]
        assert claim_batch(s, cid, "e", 100) == []  # the retry that is not due stays
        statuses = dict(s.execute(select(Delivery.id, Delivery.status).where(Delivery.campaign_id == cid)).all())
    assert statuses[ids[10]] == "retry"
    assert [i for i in ids if statuses[i] == "claimed"] == [ids[5], ids[20], *ids[40:]]


def test_the_claim_query_reads_only_due_rows_through_its_indexes(postgres_url, seed_path):
    # PostgreSQL only (the plan is its). The driver prepares a statement it runs often, and a
    # prepared statement may run a generic plan, one made without the parameters' values: that
    # plan too must answer a claim from the claim indexes, in the order it takes rows (no
    # sort, no walk over sent rows). Costs decide only on a big table, so sequential scans and
    # sorts are priced out here.
    dispose_engines()
    migrate(get_settings())
    cid = make_campaign(seed_path, 20)
    with session_scope() as s:
        compiled = due(s, cid, 500).compile(s.get_bind(), compile_kwargs={"render_postcompile": True})
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:  # the driver's %(name)s as PREPARE's $n
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        sql = re.sub(r"%\((\w+)\)s", numbered, compiled.string)
        s.execute(text(f"PREPARE claim AS {sql}"))
        s.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        s.execute(text("SET LOCAL enable_seqscan = off"))
        s.execute(text("SET LOCAL enable_sort = off"))
        args = ", ".join(str(int(compiled.params[n])) for n in names)  # the campaign id and limits
        plan = "\n".join(s.scalars(text(f"EXPLAIN EXECUTE claim({args})")))
    assert "ix_deliveries_retry" in plan and "ix_deliveries_campaign_status_id" in plan, plan
    assert "Sort" not in plan, plan  # the indexes give the order
    # The due time bounds the scan; what is filtered is only the status, rechecked on the
    # locked row (PostgreSQL keeps a partial index's predicate for rows FOR UPDATE locks).
    assert "Index Cond: ((campaign_id = $1) AND (next_attempt_at <= $" in plan, plan
    filters = [line.strip() for line in plan.splitlines() if "Filter:" in line]
    assert all(f.startswith("Filter: ((status)::text = ") for f in filters), plan


def test_one_subscribers_deliveries_are_found_through_an_index(postgres_url, seed_path):
    # Erasing an address updates its deliveries, and deleting a subscriber is refused by a
    # trigger that looks for one (migration 0008): without ix_deliveries_subscriber_id (0010)
    # each was a scan of every delivery ever made. Sequential scans are priced out, as costs
    # decide only on a big table.
    dispose_engines()
    migrate(get_settings())
    make_campaign(seed_path, 20)
    with session_scope() as s:
        sub = s.scalar(select(func.min(Delivery.subscriber_id)))
        s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(s.scalars(text(f"EXPLAIN UPDATE deliveries SET name = '' WHERE subscriber_id = {sub}")))
        exists = "\n".join(
            s.scalars(text(f"EXPLAIN SELECT EXISTS (SELECT 1 FROM deliveries WHERE subscriber_id = {sub})"))
        )
    assert "Index Cond: (subscriber_id = " in plan and "ix_deliveries_subscriber_id" in plan, plan
    assert "ix_deliveries_subscriber_id" in exists, exists


def test_the_database_urls_own_session_settings_win_over_the_defaults(postgres_url, monkeypatch):
    # worker.db sets a statement_timeout and keepalives of its own for every connection; an
    # operator's `options` in NEWSLETTER_DATABASE_URL must still decide (PostgreSQL takes the
    # last of a setting given twice).
    from worker.settings import reset_settings

    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", postgres_url + "%20-c%20statement_timeout%3D7s")
    reset_settings()
    dispose_engines()
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
        assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() != "0"  # ours stays
        assert conn.exec_driver_sql("SHOW search_path").scalar().startswith("nl_")  # the fixture's


def test_the_model_and_the_migrations_agree(database):
    """What `alembic revision --autogenerate` would write after the migrations: nothing but
    what differs on purpose. `campaign_counts` is kept by triggers, not the ORM (0005); on
    PostgreSQL `deliveries` has no foreign keys, triggers instead (0008). (Autogenerate does not
    compare a partial index's WHERE; the model declares them as the migrations made them.)"""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from worker.models import Base

    with get_engine().connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        dialect = conn.dialect.name
    described = sorted(
        f"{d[0]} {d[1].name}" if d[0] != "add_fk" else f"add_fk {d[1].parent.name}.{d[1].column_keys[0]}" for d in found
    )
    expected = ["remove_table campaign_counts"]
    if dialect == "postgresql":
        expected += ["add_fk deliveries.campaign_id", "add_fk deliveries.subscriber_id"]
    assert described == sorted(expected), found
