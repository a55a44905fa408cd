"""Campaign control on the ledger, on SQLite and PostgreSQL: pause stops claims and gives rows
back without duplicates; resume continues; cancel leaves nothing queued; a scheduled campaign is
started once even by two sweepers at the same moment; retry-failed takes only temporary failures
of active subscribers; the CLI twins exit 2 on a state that does not allow the change."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from worker import control, sending
from worker.db import session_scope
from worker.episodes import load_episode
from worker.errors import CampaignStateError, NewsletterError
from worker.ledger import claim_batch
from worker.ledger import control as ledger_control
from worker.models import Campaign, Delivery, Subscriber, utcnow
from worker.publish import create_campaign
from worker.sending import Sender
from worker.settings import get_settings
from worker.transports.base import Transport

from .factories import cli, seed_subscribers


@pytest.fixture
def draft(database, seed_path):
    seed_subscribers(40)
    settings = get_settings()
    with session_scope() as s:
        return create_campaign(s, load_episode(seed_path, settings.tz), settings, draft=True).campaign.id


def by_status(cid: int) -> dict[str, int]:
    with session_scope() as s:
        rows = s.execute(select(Delivery.status, func.count()).where(Delivery.campaign_id == cid)
                         .group_by(Delivery.status)).all()  # fmt: skip
    return {str(k): v for k, v in rows}


def status_of(cid: int) -> str:
    with session_scope() as s:
        return s.scalar(select(Campaign.status).where(Campaign.id == cid))


class PausingTransport(Transport):
    """Maildir-like sink that pauses the campaign after `after` messages (as staff would)."""

    def __init__(self, cid: int, after: int):
        self.cid, self.after, self.sent = cid, after, []

    def send(self, sender, rcpt, message, confirm=None):  # noqa: ANN001, ANN201
        if confirm is not None and not confirm():
            return False
        self.sent.append(rcpt)
        if len(self.sent) == self.after:
            control.pause(get_settings(), self.cid)
        return True

    def close(self) -> None:
        pass


def test_pause_gives_the_rest_back_and_resume_sends_each_once(draft, monkeypatch):
    settings = get_settings()
    monkeypatch.setattr(sending, "STATUS_CHECK_INTERVAL", 0.0)
    monkeypatch.setattr("worker.control._enqueue", lambda cid: None)
    control.send_now(settings, draft)
    transport = PausingTransport(draft, after=7)
    Sender(settings, transport=transport).run(draft)
    assert status_of(draft) == "paused"
    assert by_status(draft) == {"sent": 7, "queued": 33}  # the batch stopped after its current message
    with session_scope() as s:
        assert claim_batch(s, draft, "t", 100, "test") == []  # no new claims while paused
    assert status_of(draft) == "paused"  # and a paused campaign is never marked done
    Sender(settings, transport=transport).run(draft)
    assert len(transport.sent) == 7
    control.resume(settings, draft)
    transport.after = -1
    Sender(settings, transport=transport).run(draft)
    assert by_status(draft) == {"sent": 40} and status_of(draft) == "done"
    assert len(transport.sent) == len(set(transport.sent)) == 40


def test_cancel_leaves_no_row_queued_and_says_why(draft, monkeypatch):
    settings = get_settings()
    monkeypatch.setattr("worker.control._enqueue", lambda cid: None)
    control.send_now(settings, draft)
    with session_scope() as s:
        s.execute(update(Delivery).where(Delivery.id <= 5).values(status="sent"))
    report = control.cancel(settings, draft, "wrong list")
    assert report.state == "cancelled"
    assert by_status(draft) == {"sent": 5, "cancelled": 35}
    with session_scope() as s:
        c = s.get(Campaign, draft)
        assert c.status_reason == "wrong list"
    with pytest.raises(CampaignStateError, match="cancelled"):
        control.resume(settings, draft)


def test_two_sweepers_start_a_scheduled_campaign_once(draft, monkeypatch):
    settings = get_settings()
    control.schedule(settings, draft, utcnow() + timedelta(hours=1))
    control.schedule(settings, draft, utcnow() + timedelta(seconds=1))  # editing the schedule works
    with session_scope() as s:
        assert ledger_control.start_due_scheduled(s) == []  # not yet
    started: list[list[int]] = []
    barrier = threading.Barrier(2)
    later = utcnow() + timedelta(seconds=5)

    def sweeper() -> None:
        barrier.wait()
        with session_scope() as s:
            started.append(ledger_control.start_due_scheduled(s, now=later))

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(started) == [[], [draft]]
    assert status_of(draft) == "sending" and by_status(draft) == {"queued": 40}


def test_two_concurrent_sends_of_a_draft_freeze_its_audience_once(draft, monkeypatch):
    # The audience is frozen with a plain INSERT (no ON CONFLICT): only the conditional move out
    # of draft keeps a second send from trying to add everyone again.
    monkeypatch.setattr("worker.control._enqueue", lambda cid: None)
    settings = get_settings()
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def sender() -> None:
        barrier.wait()
        try:
            control.send_now(settings, draft)
            outcomes.append("sent")
        except NewsletterError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) in (["CampaignStateError", "sent"], ["InputError", "sent"])
    assert status_of(draft) == "sending" and by_status(draft) == {"queued": 40}


def test_scheduling_needs_a_draft_and_a_future_time(draft):
    settings = get_settings()
    with pytest.raises(CampaignStateError, match="past"):
        control.schedule(settings, draft, utcnow() - timedelta(hours=2))
    control.schedule(settings, draft, utcnow() + timedelta(days=1))
    assert control.unschedule(settings, draft).state == "draft"


def test_retry_failed_takes_temporary_failures_of_active_subscribers_only(draft, monkeypatch):
    settings = get_settings()
    monkeypatch.setattr("worker.control._enqueue", lambda cid: None)
    control.send_now(settings, draft)
    with session_scope() as s:
        ids = list(s.scalars(select(Delivery.id).where(Delivery.campaign_id == draft).order_by(Delivery.id)))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:3]))
                  .values(status="failed", last_error="gave up after 8 attempts: 451 try later"))  # fmt: skip
        s.execute(update(Delivery).where(Delivery.id.in_(ids[3:5]))
                  .values(status="failed", last_error="550 5.1.1 no such user"))  # fmt: skip
        gone = s.scalar(select(Delivery.subscriber_id).where(Delivery.id == ids[2]))
        s.execute(update(Subscriber).where(Subscriber.id == gone).values(status="bounced"))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[5:])).values(status="sent"))
        s.execute(update(Campaign).where(Campaign.id == draft).values(status="done"))
    assert control.retry_failed(settings, draft).state == "sending"
    assert by_status(draft) == {"queued": 2, "failed": 3, "sent": 35}


def test_cli_twins(draft):
    r = cli("campaigns", "pause", draft)
    assert r.returncode == 2 and "draft" in r.stderr
    assert cli("campaigns", "send", draft).returncode == 0
    r = cli("campaigns", "pause", draft)
    assert r.returncode == 0 and "paused" in r.stdout
    assert cli("campaigns", "resume", draft).returncode == 0
    r = cli("campaigns", "list")
    assert r.returncode == 0 and "sending" in r.stdout
    r = cli("campaigns", "cancel", draft, "--reason", "test")
    assert r.returncode == 0 and "cancelled" in r.stdout
    r = cli("campaigns", "schedule", draft, "tomorrow")
    assert r.returncode == 2 and "tomorrow" in r.stderr
    assert cli("campaigns", "retry-failed", 999).returncode == 2


def test_send_is_campaigns_send_and_resume_in_one(draft):
    # a draft: sent now (its audience frozen); then not again; paused: resumed
    r = cli("send", draft)
    assert r.returncode == 0 and f"campaign {draft} queued for 40 subscribers" in r.stdout, r.stderr
    assert status_of(draft) == "sending"
    r = cli("send", draft)
    assert r.returncode == 2 and "only a draft or scheduled campaign can be sent" in r.stderr
    assert cli("campaigns", "pause", draft).returncode == 0
    r = cli("send", draft)
    assert r.returncode == 0 and "resumed" in r.stdout and status_of(draft) == "sending"


def test_publish_draft_then_send(database, seed_path):
    seed_subscribers(3)
    r = cli("publish", seed_path, "--draft")
    assert r.returncode == 0 and "a draft; `newsletter send 1` sends it" in r.stdout, r.stderr
    assert status_of(1) == "draft"
    r = cli("send", 1)
    assert r.returncode == 0 and "campaign 1 queued for 3 subscribers" in r.stdout and status_of(1) == "sending"


def test_resend_takes_uncertain_and_temporarily_failed_rows(draft):
    assert cli("send", draft).returncode == 0
    with session_scope() as s:
        ids = list(s.scalars(select(Delivery.id).where(Delivery.campaign_id == draft).order_by(Delivery.id)))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:2]))
                  .values(status="failed", last_error="gave up after 8 attempts: 451 try later"))  # fmt: skip
        s.execute(update(Delivery).where(Delivery.id == ids[2]).values(status="failed", last_error="550 no such user"))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[3:6])).values(status="uncertain"))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[6:])).values(status="sent"))
    r = cli("resend", draft)
    assert r.returncode == 2 and "--uncertain, --failed or both" in r.stderr
    r = cli("resend", draft, "--failed", "--uncertain")
    assert r.returncode == 0, r.stderr
    assert "3 uncertain deliveries queued again" in r.stdout and "2 failed deliveries queued again" in r.stdout
    assert by_status(draft) == {"queued": 5, "failed": 1, "sent": 34}


def test_resend_neither_revives_a_cancelled_campaign_nor_resumes_a_paused_one(draft, monkeypatch):
    from worker.ledger import resend_uncertain

    settings = get_settings()
    monkeypatch.setattr("worker.control._enqueue", lambda cid: None)
    control.send_now(settings, draft)
    with session_scope() as s:
        ids = list(s.scalars(select(Delivery.id).where(Delivery.campaign_id == draft).order_by(Delivery.id)))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:2])).values(status="uncertain"))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[2:])).values(status="sent"))
    control.pause(settings, draft)
    with session_scope() as s:
        assert resend_uncertain(s, draft) == 2
    assert status_of(draft) == "paused" and by_status(draft) == {"queued": 2, "sent": 38}  # out on resume
    control.cancel(settings, draft, "wrong episode")
    with session_scope() as s:
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:2])).values(status="uncertain"))
    for flag in ("--uncertain", "--failed"):
        r = cli("resend", draft, flag)
        assert r.returncode == 2 and "cancelled: it sends nothing more" in r.stderr, r.stderr
    assert status_of(draft) == "cancelled" and by_status(draft) == {"uncertain": 2, "sent": 38}


def test_the_sweep_starts_a_due_scheduled_campaign_once(draft):
    from worker.ledger import sweep

    settings = get_settings()
    control.schedule(settings, draft, utcnow() + timedelta(seconds=1))
    with session_scope() as s:
        assert sweep(s, settings).started == []  # not yet due
    with session_scope() as s:
        s.execute(update(Campaign).where(Campaign.id == draft).values(scheduled_at=utcnow() - timedelta(seconds=1)))
    with session_scope() as s:
        first = sweep(s, settings)
    with session_scope() as s:
        second = sweep(s, settings)
    assert first.started == [draft] and draft in first.need_work and second.started == []
    assert status_of(draft) == "sending" and by_status(draft) == {"queued": 40}


def test_outside_the_send_window_nothing_is_claimed(draft, monkeypatch):
    from worker.ledger import sweep

    settings = get_settings()
    monkeypatch.setattr("worker.control._enqueue", lambda cid: None)
    control.send_now(settings, draft)
    now = utcnow().astimezone(settings.tz)
    closed = f"{(now + timedelta(hours=1)):%H:00}-{(now + timedelta(hours=2)):%H:00}"
    shut = settings.model_copy(update={"send_window": closed})
    closed_run = Sender(shut, transport=PausingTransport(draft, after=-1)).run(draft)
    assert closed_run.sent == 0 and closed_run.next_due_in is None  # no follow-up task spinning until it opens
    with session_scope() as s:
        assert sweep(s, shut).need_work == []  # nothing re-enqueued while the window is shut
    opened = f"{(now - timedelta(hours=1)):%H:00}-{(now + timedelta(hours=2)):%H:00}"
    assert (
        Sender(settings.model_copy(update={"send_window": opened}), transport=PausingTransport(draft, after=-1))
        .run(draft)
        .sent
        == 40
    )
