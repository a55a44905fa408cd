"""An attacker's pass over the public surface: header injection through the signup name, answers
that must not tell whether an address is on the list, links used in the wrong place, and RFC 8058
one-click unsubscribe without cookies."""

from __future__ import annotations

import email
import mailbox
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from worker import joining
from worker.bounces.sns import sns_url_allowed
from worker.db import session_scope
from worker.joining_mail import send_joining_email
from worker.message import Identities, unsubscribe_token
from worker.models import Subscriber
from worker.settings import get_settings, reset_settings
from worker.web import create_app


@pytest.fixture
def app(database, redis_url, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_REDIS_URL", redis_url)
    monkeypatch.setenv("NEWSLETTER_SIGNUP_IP_LIMIT_PER_HOUR", "1000")
    reset_settings()
    monkeypatch.setattr(joining, "enqueue_email", lambda s, kind, ids: [send_joining_email(s, kind, i) for i in ids])
    with TestClient(create_app(get_settings())) as client:
        yield client


def raw_outbox() -> list[bytes]:
    box = get_settings().mail_url.removeprefix("maildir:")
    try:
        return [m.as_bytes() for m in mailbox.Maildir(box)]
    except FileNotFoundError:
        return []


def status_of(address: str) -> str | None:
    with session_scope() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email_key == address.lower()))


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.net",
        "Eve\nSubject: pwned",
        "Eve\rX-Evil: 1",
        "Eve\u2028Bcc: victim@example.net\u0085X-Evil: 1",
        "Eve\x00\x07\x1b[31m\x7f",
        "E" * 5000,
        '"Eve" <attacker@evil.example>, victim@example.net',
    ],
)
def test_a_hostile_name_cannot_add_headers_or_recipients(app, name):
    r = app.post("/subscribe", data={"email": "eve@example.com", "name": name})
    assert r.status_code == 200
    [raw] = raw_outbox()
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    fields = [line.split(b":", 1)[0].lower() for line in re.split(rb"\r?\n(?![ \t])", head)]
    assert b"bcc" not in fields and b"x-evil" not in fields and fields.count(b"subject") == 1
    assert fields.count(b"to") == 1
    assert all(len(line) <= 998 for line in head.splitlines())
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == ["eve@example.com"]
    assert "pwned" not in str(msg["Subject"])


def test_the_answer_is_the_same_whatever_the_address_standing(app):
    with session_scope() as s:
        for addr, st in [
            ("on@example.com", "active"),
            ("gone@example.com", "bounced"),
            ("spam@example.com", "complained"),
        ]:
            s.add(Subscriber(email=addr, email_key=addr, status=st, status_reason=""))

    def strip(text: str) -> str:
        return re.sub(r'name="csrf" value="[^"]*"', "", text)

    answers = set()
    for addr in ["new@example.com", "on@example.com", "gone@example.com", "spam@example.com", "new@example.com"]:
        form = app.post("/subscribe", data={"email": addr})
        js = app.post("/subscribe", json={"email": addr})
        answers.add(
            (
                form.status_code,
                strip(form.text),
                js.status_code,
                js.text,
                tuple(sorted((k, v) for k, v in form.headers.items() if k not in ("date", "content-length"))),
            )
        )
    assert len(answers) == 1
    assert status_of("gone@example.com") == "bounced" and status_of("spam@example.com") == "complained"
    assert len(raw_outbox()) == 1  # only new@, once


def test_links_only_work_where_they_belong(app):
    settings = get_settings()
    with session_scope() as s:
        s.add(Subscriber(email="me@example.com", email_key="me@example.com", status="active", status_reason=""))
    manage = Identities(settings).manage_token("me@example.com")
    confirm = joining.ConfirmLinks(settings).make("me@example.com", "nonce")
    for path in [
        f"/manage/{confirm}",
        f"/manage/{confirm}/export",
        f"/unsubscribe/{confirm}",
        f"/unsubscribe/{manage}",
        f"/manage/{manage[:-2]}xx/export",
        "/manage/%00/export",
        "/manage/" + "A" * 5000 + "/export",
    ]:
        r = app.get(path)
        assert r.status_code in (400, 404), (path[:80], r.status_code)
        assert "me@example.com" not in r.text
    assert app.post(f"/unsubscribe/{confirm}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert app.post(f"/unsubscribe/{manage}", data={"List-Unsubscribe": "One-Click"}).status_code in (400, 404)
    assert status_of("me@example.com") == "active"
    export = app.get(f"/manage/{manage}/export")
    assert export.status_code == 200 and export.headers["cache-control"] == "no-store"


def test_one_click_unsubscribe_needs_no_cookie_and_no_csrf(app):
    with session_scope() as s:
        s.add(Subscriber(email="oc@example.com", email_key="oc@example.com", status="active", status_reason=""))
    token = unsubscribe_token(get_settings(), "oc@example.com")
    r = app.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": "https://mail.example.net"},
    )
    assert r.status_code == 200 and status_of("oc@example.com") == "unsubscribed"
    assert "set-cookie" not in r.headers
    again = app.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and status_of("oc@example.com") == "unsubscribed"


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com\n/x.pem",
        "https://sns.us-east-1.amazonaws.com\t/x.pem",
        "https://sns.us-east-1.amazonaws.com#@evil.com/x.pem",
        "https://:@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        " https://sns.us-east-1.amazonaws.com/x.pem",
    ],
)
def test_odd_sns_certificate_urls_are_refused(url):
    assert not sns_url_allowed(url)


def test_a_cross_site_post_with_cached_basic_credentials_changes_nothing(settings_env, monkeypatch, seed_path):
    """Browsers replay cached basic-auth credentials on a cross-site form post: a page elsewhere
    must not be able to send, pause or cancel a campaign through the staff API."""
    import base64

    from worker.db import dispose_engines, migrate
    from worker.episodes import load_episode
    from worker.models import Campaign
    from worker.publish import create_campaign

    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", "api-staff-token")
    reset_settings()
    dispose_engines()
    settings = get_settings()
    migrate(settings)
    with session_scope() as s:
        create_campaign(s, load_episode(seed_path, settings.tz), settings, draft=True)
    basic = {"Authorization": "Basic " + base64.b64encode(b"staff:api-staff-token").decode()}
    with TestClient(create_app(settings)) as c:
        for action in ["send", "cancel", "pause"]:
            for hostile in [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}]:
                r = c.post(f"/campaigns/1/{action}", headers={**basic, **hostile})
                assert r.status_code == 403, (action, hostile, r.status_code)
        with session_scope() as s:
            assert s.scalar(select(Campaign.status)) == "draft"
        assert c.post("/campaigns/1/send", headers={**basic, "Origin": "http://testserver"}).status_code == 200
        assert c.post("/campaigns/1/pause", headers={"Authorization": "Bearer api-staff-token"}).status_code == 200
    dispose_engines()


def test_every_staff_route_refuses_a_caller_without_credentials(settings_env, monkeypatch):
    from worker.web import ROUTERS
    from worker.web.auth import require_staff

    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", "api-staff-token")
    reset_settings()
    app = create_app(get_settings())

    def staff_only(router, route) -> bool:  # noqa: ANN001
        declared = [d.dependency for d in [*router.dependencies, *route.dependencies]]
        return require_staff in declared or any(d.call is require_staff for d in route.dependant.dependencies)

    staff_routes = [r for router in ROUTERS for r in router.routes if staff_only(router, r)]
    assert len(staff_routes) >= 5
    with TestClient(app) as c:
        for route in staff_routes:
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            for method in route.methods - {"HEAD"}:
                for auth in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!"}]:
                    r = c.request(method, path, headers=auth)
                    assert r.status_code == 401, (method, path, auth, r.status_code)


def test_webhooks_refuse_garbage_and_oversized_bodies(settings_env, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SES_SNS_TOPICS", "arn:aws:sns:us-east-1:123456789012:t")
    monkeypatch.setenv("NEWSLETTER_POSTMARK_WEBHOOK_SECRET", "pm")
    monkeypatch.setenv("NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY", "mg")
    reset_settings()
    with TestClient(create_app(get_settings())) as c:
        for hook in ["ses", "postmark", "mailgun"]:
            for body in [b"", b"\x00\xff" * 10, b"[]", b"{}", b'{"Type": "Notification"}', b"x" * 3_000_000]:
                r = c.post(f"/hooks/{hook}", content=body, headers={"content-type": "application/json"})
                assert 400 <= r.status_code < 500, (hook, body[:20], r.status_code)
