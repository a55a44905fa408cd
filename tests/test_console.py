"""The staff console: sign-in with the staff token gives a session cookie with the right flags;
every console form needs the session's CSRF token and a same-site origin; requests without a
session or with a wrong token are refused and change nothing; the API twins keep bearer auth."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from worker.db import dispose_engines, migrate, session_scope
from worker.episodes import load_episode
from worker.models import Campaign, Delivery
from worker.publish import create_campaign
from worker.settings import get_settings, reset_settings
from worker.web import create_app
from worker.web.console import session as console_session
from worker.web.console import signin

from .factories import seed_subscribers

TOKEN = "console-staff-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SAME = {"Origin": "http://testserver"}


@pytest.fixture
def client(settings_env, monkeypatch, seed_path):
    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", TOKEN)
    reset_settings()
    dispose_engines()
    signin._throttle.cache_clear()  # sign-in counts start afresh (no Redis here: they live in-process)
    settings = get_settings()
    migrate(settings)
    seed_subscribers(5)
    with session_scope() as s:
        create_campaign(s, load_episode(seed_path, settings.tz), settings, draft=True)
    with TestClient(create_app(settings), follow_redirects=False) as c:
        yield c
    dispose_engines()


def sign_in(client: TestClient, token: str = TOKEN, headers: dict | None = None):  # noqa: ANN201
    form = client.get("/console/sign-in")
    login = re.search(r'name="login" value="([^"]+)"', form.text).group(1)
    return client.post("/console/sign-in", data={"token": token, "login": login, "next": "/console"},
                       headers=SAME if headers is None else headers)  # fmt: skip


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page_text).group(1)


def state(campaign_id: int = 1) -> str:
    with session_scope() as s:
        return s.scalar(select(Campaign.status).where(Campaign.id == campaign_id))


def test_pages_need_a_session(client):
    for path in ("/console", "/console/campaigns/1", "/console/subscribers", "/console/feeds"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in?next=/console"), path
    assert client.get("/console/campaigns.json").status_code == 401
    r = client.post("/console/campaigns/1/send", data={"csrf": "x"}, headers=SAME)
    assert r.status_code == 403 and state() == "draft"


def test_sign_in_gives_a_well_made_session_cookie(client):
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{console_session.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure (below)
    page = client.get("/console")
    assert page.status_code == 200 and "Public Sector Technology Roundup" in page.text and "Send now" in page.text


def test_over_https_the_cookie_is_secure(settings_env, monkeypatch, seed_path):
    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", TOKEN)
    reset_settings()
    migrate(get_settings())
    with TestClient(create_app(get_settings()), base_url="https://testserver", follow_redirects=False) as c:
        r = sign_in(c, headers={"Origin": "https://testserver"})
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
    dispose_engines()


def test_wrong_tokens_and_foreign_sign_ins_are_refused(client):
    r = sign_in(client, token="wrong")
    assert (
        r.status_code == 401
        and "set-cookie" not in r.headers
        or console_session.COOKIE not in r.headers.get("set-cookie", "")
    )
    assert sign_in(client, headers={"Origin": "https://evil.example"}).status_code == 403
    assert sign_in(client, headers={}).status_code == 403  # no Origin, no Referer
    assert client.get("/console").status_code == 303


def test_sign_in_attempts_are_limited(client, monkeypatch):
    monkeypatch.setattr(signin, "SIGN_IN_LIMIT", 3)
    codes = [sign_in(client, token="wrong").status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    assert sign_in(client).status_code == 429  # even the right token waits
    assert client.get("/console").status_code == 303


def test_every_console_post_needs_the_csrf_token_and_this_site(client):
    sign_in(client)
    csrf = csrf_of(client.get("/console").text)
    assert client.post("/console/campaigns/1/send", data={"csrf": "forged"}, headers=SAME).status_code == 403
    assert client.post("/console/campaigns/1/send", data={"csrf": csrf}, headers={}).status_code == 403
    evil = {"Origin": "https://evil.example"}
    assert client.post("/console/campaigns/1/send", data={"csrf": csrf}, headers=evil).status_code == 403
    assert state() == "draft"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
    ok = client.post("/console/campaigns/1/send", data={"csrf": csrf, "back": "/console"}, headers=SAME)
    assert ok.status_code == 303 and ok.headers["location"] == "/console?did=send"
    assert state() == "sending"
    assert "Sending started." in client.get(ok.headers["location"]).text


def test_a_session_ends_when_it_expires_or_the_token_changes(client, monkeypatch):
    sign_in(client)
    assert client.get("/console").status_code == 200
    monkeypatch.setattr(console_session, "SESSION_SECONDS", -1)
    assert client.get("/console").status_code == 303
    monkeypatch.undo()
    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", TOKEN)
    settings = get_settings()
    assert client.get("/console").status_code == 200
    client.app.state.settings = settings.model_copy(update={"staff_token": "rotated"})
    assert client.get("/console").status_code == 303


def test_sign_out(client):
    sign_in(client)
    csrf = csrf_of(client.get("/console").text)
    r = client.post("/console/sign-out", data={"csrf": csrf}, headers=SAME)
    assert r.status_code == 303 and console_session.COOKIE in r.headers["set-cookie"]
    assert client.get("/console").status_code == 303


def test_the_api_twins_keep_bearer_auth(client):
    assert client.post("/campaigns/1/pause").status_code == 401
    r = client.post("/campaigns/1/pause", headers=BEARER)
    assert r.status_code == 409 and "draft" in r.json()["detail"]
    assert client.post("/campaigns/1/send", headers=BEARER).json()["state"] == "sending"
    assert client.post("/campaigns/1/pause", headers=BEARER).json()["state"] == "paused"
    assert client.post("/campaigns/1/pause", headers=BEARER).json()["state"] == "paused"  # idempotent
    assert client.post("/campaigns/1/resume", headers=BEARER).json()["state"] == "sending"
    done = client.post("/campaigns/1/cancel", headers=BEARER, json={"reason": "wrong episode"}).json()
    assert done["state"] == "cancelled" and done["queued"] == 0
    assert client.post("/campaigns/1/schedule", headers=BEARER, json={"at": "2099-01-01T10:00"}).status_code == 409
    assert client.post("/campaigns/99/pause", headers=BEARER).status_code == 404
    listed = client.get("/campaigns", headers=BEARER).json()
    assert [c["campaign"] for c in listed] == [1] and listed[0]["reason"] == "wrong episode"


def test_campaign_page_lists_recipients_and_problems(client):
    sign_in(client)
    csrf = csrf_of(client.get("/console").text)
    client.post("/console/campaigns/1/send", data={"csrf": csrf}, headers=SAME)
    with session_scope() as s:
        from sqlalchemy import update

        s.execute(update(Delivery).where(Delivery.email == "reader2@example.org")
                  .values(status="failed", last_error="gave up after 8 attempts: 451 busy"))  # fmt: skip
    page = client.get("/console/campaigns/1")
    assert page.status_code == 200 and "gave up after 8 attempts" in page.text and "Retry 1 failed" in page.text
    found = client.get("/console/campaigns/1", params={"q": "READER3", "status": "queued"})
    assert "reader3@example.org" in found.text and "reader4@example.org" not in found.text
    assert "1 match." in found.text
    assert client.get("/console/campaigns/1", params={"status": "nonsense"}).status_code == 422
    assert client.get("/console/campaigns/99").status_code == 404
    for path in ("/console/campaigns/2147483648", "/console/subscribers/2147483648"):
        r = client.get(path)  # past the ids' INTEGER: an error page, not a database error
        assert r.status_code == 422 and "<html" in r.text.lower(), path


def test_subscribers_search_change_import_export(client):
    sign_in(client)
    page = client.get("/console/subscribers", params={"q": "reader1"})
    assert page.status_code == 200 and "reader1@example.org" in page.text and "reader2@example.org" not in page.text
    csrf = csrf_of(page.text)
    sid = re.search(r'href="/console/subscribers/(\d+)">reader1@', page.text).group(1)
    one = client.get(f"/console/subscribers/{sid}")
    assert one.status_code == 200 and "<option>unsubscribed</option>" in one.text
    r = client.post(f"/console/subscribers/{sid}/status", data={"csrf": csrf, "to": "unsubscribed"}, headers=SAME)
    assert r.status_code == 303
    refused = client.post(f"/console/subscribers/{sid}/status", data={"csrf": csrf, "to": "pending"}, headers=SAME)
    assert refused.status_code == 409  # staff may not make an unsubscribed person pending
    forged = client.post(f"/console/subscribers/{sid}/status", data={"csrf": "x", "to": "active"}, headers=SAME)
    assert forged.status_code == 403
    csv_text = client.get("/console/subscribers.csv", params={"status": "unsubscribed"}).text
    assert csv_text.splitlines() == ["email,name,status", "reader1@example.org,Reader 1,unsubscribed"]
    upload = b"email,name\nnew@example.org,New Person\nnot-an-address,Bad\nreader1@example.org,Back Again\n"
    r = client.post("/console/subscribers/import", data={"csrf": csrf}, headers=SAME,
                    files={"file": ("people.csv", upload, "text/csv")})  # fmt: skip
    assert r.status_code == 200 and "1 added" in r.text and "1 left unsubscribed or suppressed" in r.text
    assert '<td class="n">3</td>' in r.text  # the bad row, by line
    assert "unsubscribed" in client.get(f"/console/subscribers/{sid}").text  # an import never reactivates


def test_feeds_page(client):
    sign_in(client)
    page = client.get("/console/feeds")
    assert page.status_code == 200 and "Poll now" in page.text and "No feed has been polled yet" in page.text


def test_campaign_page_shows_bounces_and_complaints(client):
    from worker.models import DeliveryEvent

    sign_in(client)
    assert "No bounce or complaint reported" in client.get("/console/campaigns/1").text
    with session_scope() as s:
        s.add(DeliveryEvent(event_key="t1", kind="complaint", source="ses", email="reader3@example.org",
                            campaign_id=1, detail="abuse report"))  # fmt: skip
        s.add(DeliveryEvent(event_key="t2", kind="delivery", source="ses", email="reader4@example.org", campaign_id=1))
    page = client.get("/console/campaigns/1").text
    assert "complaint" in page and "reader3@example.org" in page and "abuse report (ses)" in page
    assert 'reader4@example.org</td><td class="wide">' not in page  # deliveries are counted, not listed
