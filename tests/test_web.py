"""The web side: archive page, unsubscribe (GET confirms, POST acts), staff endpoints."""

from __future__ import annotations

import base64
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from worker.db import session_scope
from worker.episodes import load_episode
from worker.message import Recipient, compose, unsubscribe_token
from worker.models import Subscriber, TestSend
from worker.publish import create_campaign
from worker.settings import Settings, get_settings, reset_settings
from worker.web import create_app

from .factories import seed_subscribers

TOKEN = "staff-secret-token"


@pytest.fixture
def client(database, monkeypatch, seed_path):
    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", TOKEN)
    monkeypatch.setenv("NEWSLETTER_STAFF_ALLOWLIST", "staff@news.example.org,@team.example.org")
    reset_settings()
    seed_subscribers(3)
    settings = get_settings()
    with session_scope() as s:
        create_campaign(s, load_episode(seed_path, settings.tz), settings, draft=True)
    with TestClient(create_app(settings)) as c:
        yield c


SLUG = "2023-11-23-public-sector-technology-roundup-episode-3"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def status_of(email: str) -> str:
    with session_scope() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email_key == email))


def test_episode_page_has_the_full_transcript(client):
    r = client.get(f"/episodes/{SLUG}")
    assert r.status_code == 200
    assert "That’s a wrap for episode three" in r.text  # the last transcript paragraph
    assert "A Whole Team Approach" in r.text and "This event has finished" in r.text  # kept, marked over
    assert client.get("/episodes/nope").status_code == 404
    ics = client.get(f"/episodes/{SLUG}/event.ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")


def test_unsubscribe_get_confirms_post_acts(client):
    token = unsubscribe_token(get_settings(), "reader1@example.org")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    assert status_of("reader1@example.org") == "active"  # a GET never unsubscribes
    done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert status_of("reader1@example.org") == "unsubscribed"
    again = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and status_of("reader1@example.org") == "unsubscribed"


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda t: t[:-3] + ("abc" if not t.endswith("abc") else "xyz"), 400),  # tampered signature
        (lambda t: t[: len(t) // 2], 400),  # truncated
        (
            lambda t: unsubscribe_token(
                Settings(secret_key="other", list_id=get_settings().list_id), "reader2@example.org"
            ),
            400,
        ),  # signed with another key
        (lambda t: unsubscribe_token(get_settings(), "stranger@example.org"), 404),  # valid, unknown address
        (lambda t: "not-a-token", 400),
    ],
)
def test_bad_tokens_change_nothing(client, mutate, code):
    token = mutate(unsubscribe_token(get_settings(), "reader2@example.org"))
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == code
    assert client.get(f"/unsubscribe/{token}").status_code == code
    assert status_of("reader2@example.org") == "active"


def test_one_token_cannot_unsubscribe_someone_else(client):
    settings = get_settings()
    mine = unsubscribe_token(settings, "reader0@example.org")
    payload, sig = mine.rsplit(".", 1)
    other_payload = unsubscribe_token(settings, "reader1@example.org").rsplit(".", 1)[0]
    assert client.post(f"/unsubscribe/{other_payload}.{sig}").status_code == 400
    assert status_of("reader1@example.org") == "active"


@pytest.mark.parametrize(
    "method, path", [("get", f"/preview/{SLUG}"), ("get", "/campaigns/1"), ("post", "/staff/test-sends")]
)
def test_staff_endpoints_need_credentials(client, method, path):
    assert getattr(client, method)(path).status_code == 401
    assert getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    bad_basic = base64.b64encode(b"staff:wrong").decode()
    assert getattr(client, method)(path, headers={"Authorization": f"Basic {bad_basic}"}).status_code == 401
    r = client.get(path) if method == "get" else client.post(path)
    assert r.headers.get("www-authenticate", "").startswith("Basic")


def test_staff_with_credentials(client):
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    preview = client.get(f"/preview/{SLUG}", headers={"Authorization": f"Basic {basic}"})
    assert preview.status_code == 200 and "srcdoc=" in preview.text and "Mobile" in preview.text
    st = client.get("/campaigns/1", headers=BEARER)
    assert st.status_code == 200 and st.json()["campaign"] == 1 and st.json()["state"] == "draft"
    assert client.get("/campaigns/99", headers=BEARER).status_code == 404
    # past INTEGER (PostgreSQL's int4): refused as invalid, not a database error (500)
    for path in ("/campaigns/2147483648", "/campaigns/0"):
        r = client.get(path, headers=BEARER)
        assert r.status_code == 422 and "campaign_id" in r.text, (path, r.status_code)
    assert client.post("/campaigns/2147483648/pause", headers=BEARER).status_code == 422


def test_staff_test_send_goes_only_to_allowed_addresses(smtp_server, client):
    ok = client.post(
        "/staff/test-sends",
        headers=BEARER,
        json={"episode": SLUG, "to": ["staff@news.example.org", "Someone@Team.example.org"]},
    )
    assert ok.status_code == 200, ok.text
    assert [r["ok"] for r in ok.json()] == [True, True]
    refused = client.post(
        "/staff/test-sends",
        headers=BEARER,
        json={"episode": SLUG, "to": ["staff@news.example.org", "reader0@example.org"]},
    )
    assert refused.status_code == 403  # one bad address refuses the whole request: no partial send
    got = smtp_server.handler.per_recipient()
    assert got == {"staff@news.example.org": 1, "someone@team.example.org": 1}
    msg = smtp_server.handler.received[0].message
    assert msg["Subject"].startswith("[TEST] ")
    assert "Test email" in msg.get_body(("html",)).get_content()
    assert "/unsubscribe-test" in msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # never touches the campaign ledger, never reaches subscribers
    st = client.get("/campaigns/1", headers=BEARER).json()
    assert st["total"] == 0 and st["sent"] == 0
    with session_scope() as s:
        assert len(s.scalars(select(TestSend)).all()) == 2
    assert client.post("/unsubscribe-test").status_code == 200


def test_test_sends_are_rate_limited(client, smtp_server, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TEST_SEND_RATE_PER_HOUR", "2")
    reset_settings()
    with TestClient(create_app(get_settings())) as c:
        body = {"episode": SLUG, "to": ["staff@news.example.org"]}
        assert c.post("/staff/test-sends", headers=BEARER, json=body).status_code == 200
        assert c.post("/staff/test-sends", headers=BEARER, json=body).status_code == 200
        assert c.post("/staff/test-sends", headers=BEARER, json=body).status_code == 429
    assert smtp_server.handler.per_recipient() == {"staff@news.example.org": 2}


def test_body_over_the_limit_is_413(client, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_MAX_REQUEST_BYTES", "1000")
    reset_settings()
    with TestClient(create_app(get_settings())) as c:
        r = c.post("/staff/test-sends", headers=BEARER, content=b"x" * 5000)
        assert r.status_code == 413
        token = unsubscribe_token(get_settings(), "reader0@example.org")
        assert (
            c.post(
                f"/unsubscribe/{token}",
                content=b"a=" + b"x" * 5000,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ).status_code
            == 413
        )
    assert status_of("reader0@example.org") == "active"


def test_openapi_and_health(client):
    spec = client.get("/openapi.json").json()
    assert "/unsubscribe/{token}" in spec["paths"] and "/staff/test-sends" in spec["paths"]
    assert client.get("/healthz").json() == {"ok": True}


def test_emailed_unsubscribe_link_resolves(client):
    settings = get_settings()
    template = compose(load_episode_from_db(), settings)
    raw, _ = template.build(Recipient("reader0@example.org"))
    url = re.search(rb"List-Unsubscribe: <([^>]+)>", raw).group(1).decode()
    path = url.replace(settings.base_url, "")
    assert client.get(path).status_code == 200
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert status_of("reader0@example.org") == "unsubscribed"


def load_episode_from_db():
    from worker.episodes import Episode
    from worker.models import EpisodeRecord

    with session_scope() as s:
        return Episode.from_json(s.scalars(select(EpisodeRecord)).one().data)


def test_preview_form_refuses_cross_site_posts(smtp_server, client):
    path = f"/preview/{SLUG}/send-test"
    evil = client.post(
        path, headers={**BEARER, "Origin": "https://evil.example"}, data={"to": "staff@news.example.org"}
    )
    assert evil.status_code == 403
    same = client.post(path, headers={**BEARER, "Origin": "http://testserver"}, data={"to": "staff@news.example.org"})
    assert same.status_code == 200 and "Test email sent" in same.text
    assert smtp_server.handler.per_recipient() == {"staff@news.example.org": 1}
