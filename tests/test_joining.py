"""Signup with double opt-in, confirmation links, the manage page (the real app, SQLite and
PostgreSQL, Redis for the shared limits). The queue is replaced by a direct call of the task's
function; tests/test_joining_e2e.py runs the real worker."""

from __future__ import annotations

import email
import mailbox
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from worker import joining
from worker.db import session_scope
from worker.joining import ConfirmLinks
from worker.joining_mail import send_joining_email
from worker.message import Identities, unsubscribe_token
from worker.models import Subscriber
from worker.settings import get_settings, reset_settings
from worker.web import create_app
from worker.web.csrf import csrf_token

from .factories import old_link


@pytest.fixture
def app(database, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSLETTER_REDIS_URL", redis_url)
    monkeypatch.setenv("NEWSLETTER_SIGNUP_BLOCKED_DOMAINS", "blocked.example, spam.example.net")
    monkeypatch.setenv("NEWSLETTER_SIGNUP_IP_LIMIT_PER_HOUR", "1000")
    monkeypatch.setenv("NEWSLETTER_SIGNUP_ADDRESS_LIMIT_PER_HOUR", "1000")
    reset_settings()
    sent: list[tuple[str, int]] = []

    def enqueue(settings, kind, ids):  # noqa: ANN001 - the task's function, without the broker
        for sid in ids:
            sent.append((kind, sid))
            send_joining_email(settings, kind, sid)

    monkeypatch.setattr(joining, "enqueue_email", enqueue)
    with TestClient(create_app(get_settings())) as client:
        client.sent = sent
        yield client


def outbox() -> list[email.message.EmailMessage]:
    box = get_settings().mail_url.removeprefix("maildir:")
    try:
        return [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in mailbox.Maildir(box)]
    except FileNotFoundError:
        return []


def text_of(msg) -> str:  # noqa: ANN001
    return msg.get_body(preferencelist=("plain",)).get_content()


def confirm_link(msg) -> str:  # noqa: ANN001
    return re.search(r"https?://\S+/confirm/(\S+)", text_of(msg)).group(1)


def status_of(address: str) -> str | None:
    with session_scope() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email_key == address.lower()))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def signup(client, address: str, **extra) -> None:  # noqa: ANN001
    r = client.post("/subscribe", data={"email": address, **extra})
    assert r.status_code == 200 and "Check your inbox" in r.text


def test_form_signup_confirm_and_the_answer_never_tells(app):
    signup(app, "new@example.com", name="Ada Lovelace")
    assert status_of("new@example.com") == "pending"
    [msg] = outbox()
    assert msg["To"] == "Ada Lovelace <new@example.com>" and "Confirm your subscription" in msg["Subject"]
    assert "List-Unsubscribe" not in msg and "Hi Ada," in text_of(msg)
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert re.search(r'<a class="button-a" href="[^"]+/confirm/[^"]+" style="[^"]*background|style="[^"]*"', html)
    assert re.search(r'class="button-a"[^>]*style=[\'"][^>]*font-weight: ?bold', html)  # inlined like the digest
    token = confirm_link(msg)
    page = app.get(f"/confirm/{token}")
    assert page.status_code == 200 and "new@example.com" in page.text and 'method="post"' in page.text
    assert status_of("new@example.com") == "pending"  # a GET changes nothing
    assert app.post(f"/confirm/{token}", data={}).status_code == 403  # no CSRF token
    done = app.post(f"/confirm/{token}", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of("new@example.com") == "active"
    # the same answer for an address that is on the list (JSON too)
    again = app.post("/subscribe", json={"email": "NEW@example.com"})
    fresh = app.post("/subscribe", json={"email": "other@example.com"})
    assert again.status_code == fresh.status_code == 202 and again.json() == fresh.json()
    assert len(outbox()) == 2  # nothing to the active address; one to the new one


def test_invalid_address_and_bodies(app):
    assert app.post("/subscribe", data={"email": "not-an-address"}).status_code == 422
    assert app.post("/subscribe", json={"email": "x@example"}).status_code == 422
    assert app.post("/subscribe", json=["a"]).status_code == 422
    assert app.post("/subscribe", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    assert app.post("/subscribe", content=b"x", headers={"content-type": "text/plain"}).status_code == 422
    assert outbox() == []


def test_honeypot_and_blocked_domains_refuse_silently(app):
    signup(app, "bot@example.com", website="http://spam.example")
    signup(app, "someone@blocked.example")
    signup(app, "someone@mail.spam.example.net")  # a subdomain of a blocked domain
    signup(app, "throwaway@mailinator.com")  # the default disposable list
    assert [status_of(a) for a in ("bot@example.com", "someone@blocked.example", "throwaway@mailinator.com")] == [
        None,
        None,
        None,
    ]
    assert outbox() == []


def test_two_hundred_signups_one_email(app):
    for i in range(200):
        r = app.post("/subscribe", json={"email": "flood@example.com", "name": f"N{i}"})
        assert r.status_code == 202
    assert len(outbox()) == 1 and len(app.sent) == 1


def test_per_ip_and_per_address_limits_are_shared(app, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SIGNUP_IP_LIMIT_PER_HOUR", "3")
    reset_settings()
    with TestClient(create_app(get_settings())) as other:  # another "web process", same Redis
        codes = [
            c.post("/subscribe", json={"email": f"p{i}@example.com"}).status_code
            for i, c in enumerate([other, other, other, other])
        ]
    assert codes == [202, 202, 202, 429]


def test_never_mails_a_suppressed_address_and_pending_gets_no_campaign(app):
    with session_scope() as s:
        s.add(Subscriber(email="gone@example.com", email_key="gone@example.com", status="bounced", status_reason=""))
        s.add(Subscriber(email="spam@example.com", email_key="spam@example.com", status="complained", status_reason=""))
    signup(app, "gone@example.com")
    signup(app, "spam@example.com")
    assert outbox() == [] and status_of("gone@example.com") == "bounced"
    signup(app, "wait@example.com")
    from worker.ledger import freeze_audience  # noqa: F401 - the audience query is the ledger's

    with session_scope() as s:
        active = s.scalars(select(Subscriber.email).where(Subscriber.status == "active")).all()
    assert "wait@example.com" not in active


def test_expired_tampered_foreign_and_replayed_links_change_nothing(app, monkeypatch):
    signup(app, "late@example.com")
    token = confirm_link(outbox()[0])
    settings = get_settings()
    # tampered
    bad = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert app.get(f"/confirm/{bad}").status_code == 400
    # foreign: another list's key, and an unsubscribe token in the confirm slot
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "another-key")
    reset_settings()
    foreign = ConfirmLinks(get_settings()).make("late@example.com", "x")
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key")
    reset_settings()
    assert app.get(f"/confirm/{foreign}").status_code == 400
    assert app.get(f"/confirm/{unsubscribe_token(settings, 'late@example.com')}").status_code == 400
    # a wrong nonce: signed correctly, but not the live link
    wrong = ConfirmLinks(settings).make("late@example.com", "not-the-nonce")
    page = app.get(f"/confirm/{token}")
    assert app.post(f"/confirm/{wrong}", data={"csrf": csrf_of(page.text)}).status_code == 403  # csrf is per link
    wrong_page = app.get(f"/confirm/{wrong}")
    assert app.post(f"/confirm/{wrong}", data={"csrf": csrf_of(wrong_page.text)}).status_code == 409
    assert status_of("late@example.com") == "pending"
    # expired: signed eight days ago, with the live nonce (the default limit is 7 days)
    with session_scope() as s:
        nonce = s.scalar(select(Subscriber.confirm_nonce))
    old = old_link(settings, "late@example.com", nonce, days=8)
    expired = app.get(f"/confirm/{old}")
    assert expired.status_code == 410 and "expired" in expired.text and 'href="/subscribe"' in expired.text
    assert app.post(f"/confirm/{old}", data={"csrf": csrf_token(settings, old)}).status_code == 410
    assert status_of("late@example.com") == "pending"
    assert app.get(f"/confirm/{old_link(settings, 'late@example.com', nonce, days=6)}").status_code == 200
    # the live link works once; replayed, it changes nothing
    assert app.post(f"/confirm/{token}", data={"csrf": csrf_of(page.text)}).status_code == 200
    with session_scope() as s:
        s.execute(Subscriber.__table__.update().values(status="unsubscribed"))
    replay = app.post(f"/confirm/{token}", data={"csrf": csrf_of(page.text)})
    assert replay.status_code == 409 and status_of("late@example.com") == "unsubscribed"


def test_manage_page_unsubscribe_resubscribe_rename_export(app):
    signup(app, "me@example.com", name="Me")
    token = confirm_link(outbox()[0])
    page = app.get(f"/confirm/{token}")
    app.post(f"/confirm/{token}", data={"csrf": csrf_of(page.text)})
    manage = Identities(get_settings()).manage_token("me@example.com")
    m = app.get(f"/manage/{manage}")
    assert m.status_code == 200 and "me@example.com" in m.text and "Subscribed" in m.text
    csrf = csrf_of(m.text)
    r = app.post(f"/manage/{manage}/name", data={"name": "Me Myself\r\nBcc: x", "csrf": csrf})
    assert r.status_code == 200 and "Me Myself Bcc: x" in r.text  # one line
    r = app.post(f"/manage/{manage}/unsubscribe", data={"csrf": csrf})
    assert "Unsubscribed" in r.text and status_of("me@example.com") == "unsubscribed"
    r = app.post(f"/manage/{manage}/resubscribe", data={"csrf": csrf})
    assert "We sent an email" in r.text and status_of("me@example.com") == "unsubscribed"
    latest = outbox()
    assert len(latest) == 2
    token2 = next(confirm_link(x) for x in latest if confirm_link(x) != token)
    page2 = app.get(f"/confirm/{token2}")
    assert app.post(f"/confirm/{token2}", data={"csrf": csrf_of(page2.text)}).status_code == 200
    assert status_of("me@example.com") == "active"
    # the unsubscribe token opens the same page (the unsubscribe pages link here)
    assert app.get(f"/manage/{unsubscribe_token(get_settings(), 'me@example.com')}").status_code == 200
    data = app.get(f"/manage/{manage}/export").json()
    assert data["email"] == "me@example.com" and data["status"] == "active" and data["emails"] == []
    # no CSRF token, or one from another page: refused
    assert app.post(f"/manage/{manage}/unsubscribe").status_code == 403
    other = Identities(get_settings()).manage_token("x@example.com")
    assert app.post(f"/manage/{other}/unsubscribe", data={"csrf": csrf}).status_code == 403
    assert (
        app.post(
            f"/manage/{manage}/unsubscribe", data={"csrf": csrf}, headers={"origin": "https://evil.example"}
        ).status_code
        == 403
    )
    assert status_of("me@example.com") == "active"
    assert app.get(f"/manage/{manage[:-2]}xx").status_code == 400
    assert app.get(f"/manage/{other}").status_code == 404


def test_resubscribe_refused_for_bounced(app):
    with session_scope() as s:
        s.add(Subscriber(email="b@example.com", email_key="b@example.com", status="bounced", status_reason=""))
    manage = Identities(get_settings()).manage_token("b@example.com")
    m = app.get(f"/manage/{manage}")
    assert "Not receiving emails" in m.text and "Resubscribe" not in m.text
    r = app.post(f"/manage/{manage}/resubscribe", data={"csrf": csrf_token(get_settings(), manage)})
    assert r.status_code == 409
    assert status_of("b@example.com") == "bounced" and outbox() == []


def test_welcome_email_is_sent_once_when_enabled(app, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_WELCOME_EMAIL", "true")
    reset_settings()
    with TestClient(create_app(get_settings())) as client:
        signup(client, "hello@example.com")
        token = confirm_link(outbox()[0])
        page = client.get(f"/confirm/{token}")
        client.post(f"/confirm/{token}", data={"csrf": csrf_of(page.text)})
        with session_scope() as s:  # unsubscribe and come back: no second welcome
            s.execute(Subscriber.__table__.update().values(status="unsubscribed"))
        manage = Identities(get_settings()).manage_token("hello@example.com")
        m = client.get(f"/manage/{manage}")
        client.post(f"/manage/{manage}/resubscribe", data={"csrf": csrf_of(m.text)})
        token2 = next(
            confirm_link(x) for x in outbox() if "confirm" in x["Subject"].lower() and confirm_link(x) != token
        )
        page2 = client.get(f"/confirm/{token2}")
        assert client.post(f"/confirm/{token2}", data={"csrf": csrf_of(page2.text)}).status_code == 200
    kinds = [m["Subject"] for m in outbox()]
    assert sum(s.startswith("Welcome") for s in kinds) == 1
    welcome = next(m for m in outbox() if m["Subject"].startswith("Welcome"))
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_schemathesis_finds_no_server_error_in_the_joining_operations(database, redis_url, monkeypatch):
    """Generated requests against every joining/manage operation, with random tokens and with
    real ones (a pending and an active subscriber): never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    monkeypatch.setenv("NEWSLETTER_REDIS_URL", redis_url)
    monkeypatch.setenv("NEWSLETTER_SIGNUP_IP_LIMIT_PER_HOUR", "100000")
    reset_settings()
    settings = get_settings()
    monkeypatch.setattr(joining, "enqueue_email", lambda *a, **k: None)  # no broker here
    with session_scope() as s:
        joining.signup(s, settings, "pending@example.com", "P")
        s.add(
            Subscriber(email="on@example.com", email_key="on@example.com", name="On", status="active", status_reason="")
        )
        nonce = s.scalar(select(Subscriber.confirm_nonce).where(Subscriber.email_key == "pending@example.com"))
    ids = Identities(settings)
    real = [
        ids.manage_token("on@example.com"),
        ids.manage_token("pending@example.com"),
        ConfirmLinks(settings).make("pending@example.com", nonce),
    ]
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    operations = [r.ok() for r in schema.get_all_operations()]
    ours = [op for op in operations if op.path.startswith(("/subscribe", "/confirm", "/manage"))]
    assert len(ours) == 9
    statuses: set[int] = set()
    for operation in ours:

        @given(case=operation.as_strategy())
        @hsettings(
            max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def check(case) -> None:  # noqa: ANN001
            tokens = [None, *real] if "token" in (case.path_parameters or {}) else [None]
            for token in tokens:
                if token:
                    case.path_parameters["token"] = token
                response = case.call()
                statuses.add(response.status_code)
                assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

        check()
    assert {200, 202, 400, 403, 422} <= statuses


def test_every_digest_links_to_the_recipients_manage_page(app, seed_path):
    from worker.episodes import load_episode
    from worker.message import Recipient, compose

    settings = get_settings()
    with session_scope() as s:
        s.add(
            Subscriber(
                email="Reader@example.com", email_key="reader@example.com", name="R", status="active", status_reason=""
            )
        )
    template = compose(load_episode(seed_path, settings.tz), settings)
    html, text = template.personalised(Recipient("Reader@example.com", "R"))
    url = re.search(r"Manage your subscription: (\S+)", text).group(1)
    assert re.search(rf'href="{re.escape(url)}"[^>]*>Manage your subscription</a>', html)
    assert url.startswith(f"{settings.base_url}/manage/")
    page = app.get(url.removeprefix(settings.base_url))
    assert page.status_code == 200 and "Reader@example.com" in page.text and "Subscribed" in page.text


def test_a_confirmation_refused_for_good_suppresses_the_address(database, smtp_server):
    settings = get_settings()
    smtp_server.handler.permfail.add("nobody@example.com")
    with session_scope() as s:
        sid = joining.signup(s, settings, "nobody@example.com").subscriber_id
        ok = joining.signup(s, settings, "fine@example.com").subscriber_id
    assert send_joining_email(settings, "confirm", sid) is False
    assert status_of("nobody@example.com") == "bounced"
    assert send_joining_email(settings, "confirm", ok) is True
    assert [r.rcpt for r in smtp_server.handler.received] == ["fine@example.com"]
    # a bounced address is not mailed again, whatever is queued
    assert send_joining_email(settings, "confirm", sid) is False
