"""Export (streamed, round-trips into import), erasure (no trace but the keyed hash), imports
marked pending or confirmed."""

from __future__ import annotations

import csv
import io
import json

import sqlalchemy as sa
from sqlalchemy import select

from worker.db import get_engine, session_scope
from worker.episodes import load_episode
from worker.joining import signup
from worker.models import DeliveryEvent, Erasure, Subscriber, TestSend
from worker.privacy import erase
from worker.publish import publish_episode
from worker.sending import Sender
from worker.settings import get_settings
from worker.subscriptions import erasure_hash

from .factories import cli as run
from .factories import seed_subscribers


def rows_of(stdout: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(stdout)))


def test_export_round_trips_into_import(database, tmp_path, monkeypatch):
    seed_subscribers(3)
    with session_scope() as s:
        s.add(
            Subscriber(
                email="Odd@example.com",
                email_key="odd@example.com",
                name="=SUM(A1)",
                status="unsubscribed",
                status_reason="",
            )
        )
        s.add(
            Subscriber(
                email="b@example.com",
                email_key="b@example.com",
                name='Bee, "quoted"',
                status="bounced",
                status_reason="",
            )
        )
        s.add(Subscriber(email="p@example.com", email_key="p@example.com", name="", status="pending", status_reason=""))
    exported = run("subscribers", "export", "--format", "csv", check=True).stdout
    original = rows_of(exported)
    assert len(original) == 6 and {r["status"] for r in original} == {"active", "unsubscribed", "bounced", "pending"}
    assert next(r for r in original if r["email"] == "Odd@example.com")["name"] == "'=SUM(A1)"  # no formula
    as_json = json.loads(run("subscribers", "export", "--format", "json", "--status", "active", check=True).stdout)
    assert [x["email"] for x in as_json] == [f"reader{i}@example.org" for i in range(3)]
    file = tmp_path / "export.csv"
    file.write_text(exported)
    # into an empty database
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{tmp_path}/second.db")
    monkeypatch.setenv("NEWSLETTER_MAIL_URL", f"maildir:{tmp_path}/outbox2")
    proc = run("subscribers", "import", file, check=True)
    assert "added 6" in proc.stdout and "rejected 0" in proc.stdout
    again = rows_of(run("subscribers", "export", check=True).stdout)
    keep = ("email", "name", "status")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in original]
    assert run("subscribers", "export", "--format", "xml").returncode == 2


def test_import_pending_or_confirmed(database, tmp_path):
    file = tmp_path / "in.csv"
    file.write_text("email,name\nnew1@example.com,One\nnew2@example.com,\n")
    proc = run("subscribers", "import", "--pending", file, check=True)
    assert "confirmation emails queued 2" in proc.stdout
    with session_scope() as s:
        assert set(s.scalars(select(Subscriber.status))) == {"pending"}
        assert all(s.scalars(select(Subscriber.confirm_nonce)))
    # again within the hour: no second confirmation email
    assert "confirmation emails queued 0" in run("subscribers", "import", "--pending", file, check=True).stdout
    file.write_text("email,status\nnew3@example.com,\nnew4@example.com,unsubscribed\nx@example.com,erased\n")
    # a bad row is reported and makes the exit status 1; the good rows still go in
    proc = run("subscribers", "import", "--confirmed", file)
    assert proc.returncode == 1 and "line 4" in proc.stderr and "status 'erased'" in proc.stderr
    with session_scope() as s:
        got = dict(s.execute(select(Subscriber.email, Subscriber.status)).all())
    assert got["new3@example.com"] == "active" and got["new4@example.com"] == "unsubscribed"


def all_text_cells() -> list[tuple[str, str, str]]:
    """(table, column, value) for every text value in every table of the database."""
    engine = get_engine()
    meta = sa.MetaData()
    meta.reflect(bind=engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(table.select()):
                for column, value in zip(table.columns, row, strict=True):
                    if value is not None:
                        out.append((table.name, column.name, str(value)))
    return out


def test_erase_leaves_no_trace_but_the_keyed_hash(database, seed_path, tmp_path):
    settings = get_settings()
    seed_subscribers(2)
    address = "Erase.Me@Example.com"
    with session_scope() as s:
        s.add(
            Subscriber(
                email=address,
                email_key=address.lower(),
                name="Zyxwv Erasable",
                status="active",
                status_reason="550 5.1.1 <erase.me@example.com> no",
            )
        )
        s.add(
            DeliveryEvent(
                event_key=f"ses:abc:{address.lower()}",
                kind="soft_bounce",
                source="ses",
                email=address,
                detail=f"mailbox of {address} full",
                payload=f'{{"to": "{address}"}}',
            )
        )
        s.add(TestSend(recipient=address, requested_by="staff", status="failed", error=f"550 <{address}> unknown"))
    campaign = publish_episode(load_episode(seed_path, settings.tz), settings, enqueue=False).campaign
    Sender(settings).run(campaign.id)
    assert any(address.lower() in v.lower() for _, _, v in all_text_cells())
    proc = run("subscribers", "erase", "ERASE.ME@example.com", check=True)
    assert "erased (1 ledger rows cleared)" in proc.stdout
    leftovers = [(t, c) for t, c, v in all_text_cells() if "erase.me" in v.lower() or "zyxwv" in v.lower()]
    assert leftovers == []
    digest = erasure_hash(settings.signing_key, address)
    with session_scope() as s:
        assert s.scalars(select(Erasure.key_hash)).all() == [digest]
        tomb = s.scalars(select(Subscriber).where(Subscriber.status == "erased")).one()
        assert (tomb.email, tomb.name) == ("", "")
    # erasing again is harmless; an unknown address is an input error
    assert "erased before" in run("subscribers", "erase", address, check=True).stdout
    assert run("subscribers", "erase", "never@example.com").returncode == 2
    # a later import of the address leaves it out ...
    file = tmp_path / "again.csv"
    file.write_text(f"email\n{address}\n")
    assert "erased before 1" in run("subscribers", "import", file, check=True).stdout
    with session_scope() as s:
        assert s.scalar(select(Subscriber.id).where(Subscriber.email_key == address.lower())) is None
    # ... but the person may sign up again themselves; confirming drops the hash
    from worker.joining import confirm
    from worker.joining_mail import links_for

    with session_scope() as s:
        assert signup(s, settings, address, "Erin").send
        nonce = s.scalar(select(Subscriber.confirm_nonce).where(Subscriber.email_key == address.lower()))
    token = links_for(settings, address, nonce)["confirm_url"].rsplit("/", 1)[1]
    with session_scope() as s:
        assert confirm(s, settings, token).outcome == "confirmed"
        assert s.scalars(select(Erasure.key_hash)).all() == []


def test_erase_in_code_reports_rows(database):
    seed_subscribers(1)
    with session_scope() as s:
        report = erase(s, get_settings().signing_key, "reader0@example.org")
    assert not report.already and report.deliveries == 0
