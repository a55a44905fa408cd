"""Pages for people: HTML errors in the site's style (JSON for the API), the archive and its
Atom feed, the web copy of the email, the unsubscribe states, the staff preview, offline /docs."""

from __future__ import annotations

import re

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from worker.db import dispose_engines, migrate, session_scope
from worker.episodes import load_episode
from worker.message import unsubscribe_token
from worker.models import Subscriber
from worker.publish import create_campaign
from worker.settings import get_settings, reset_settings
from worker.web import create_app

from .factories import seed_subscribers

TOKEN = "staff-secret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SLUG = "2023-11-23-public-sector-technology-roundup-episode-3"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends
LATER = """---
title: "Episode 4: Later"
date: 2024-01-10
summary: The fourth one, with a <b>tag</b> in it.
---
Transcript of the fourth episode.
"""
EARLIER = "Episode Zero\n\n1 Jan 2020\n\nThe very first.\n\nTranscript words.\n"


@pytest.fixture
def client(settings_env, monkeypatch, seed_path, tmp_path):
    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", TOKEN)
    monkeypatch.setenv("NEWSLETTER_STAFF_ALLOWLIST", "staff@news.example.org")
    reset_settings()
    dispose_engines()
    settings = get_settings()
    migrate(settings)
    seed_subscribers(2)
    (tmp_path / "later.md").write_text(LATER)
    (tmp_path / "earlier.txt").write_text(EARLIER)
    with session_scope() as s:
        for path in (seed_path, tmp_path / "later.md", tmp_path / "earlier.txt"):
            create_campaign(s, load_episode(path, settings.tz), settings, draft=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c
    dispose_engines()


def is_site_page(text: str) -> bool:
    return text.startswith("<!DOCTYPE html>") and 'class="site"' in text and "<footer" in text


def test_errors_a_browser_reaches_are_pages_in_the_sites_style(client):
    for path, code, words in [
        ("/episodes/nope", 404, "Page not found"),
        ("/no/such/page", 404, "Page not found"),
        ("/unsubscribe/not-a-token", 400, "This link does not work"),
        (f"/preview/{SLUG}", 401, "Staff sign-in needed"),
    ]:
        r = client.get(path, headers=HTML)
        assert r.status_code == code, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert is_site_page(r.text) and words in r.text, path
        assert '"detail"' not in r.text
    assert client.get(f"/preview/{SLUG}", headers=HTML).headers["www-authenticate"].startswith("Basic")


def test_the_api_keeps_json_errors(client):
    assert client.get("/campaigns/99", headers={**BEARER, **HTML}).json() == {"detail": "no such campaign"}
    assert client.get("/campaigns/1", headers=HTML).json() == {"detail": "staff credentials required"}
    r = client.post("/staff/test-sends", headers=BEARER, json={"episode": SLUG})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "to"]
    assert client.get("/no/such/thing", headers={"Accept": "application/json"}).json() == {"detail": "Not Found"}


def test_a_server_error_is_a_page_for_people_and_json_for_programs(client, monkeypatch):
    from worker.web import public

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("secret internals")

    monkeypatch.setattr(public, "load_episode", broken)
    page = client.get(f"/episodes/{SLUG}", headers=HTML)
    assert page.status_code == 500 and is_site_page(page.text)
    assert "Something went wrong on our side" in page.text and "secret internals" not in page.text
    monkeypatch.setattr(public, "session_scope", broken)
    api = client.get("/healthz")
    assert api.status_code == 500 and api.json() == {"detail": "internal server error"}


def test_the_archive_lists_episodes_newest_first_with_an_atom_feed(client):
    r = client.get("/")
    assert r.status_code == 200 and is_site_page(r.text)
    titles = re.findall(r'<h2><a href="/episodes/[^"]+">([^<]+)</a></h2>', r.text)
    assert titles == ["Episode 4: Later", "Public Sector Technology Roundup: Episode 3", "Episode Zero"]
    assert "&lt;b&gt;tag&lt;/b&gt;" in r.text  # episode text is data
    assert 'type="application/atom+xml"' in r.text
    feed = client.get("/feed.atom")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(feed.content)
    assert not parsed.bozo and parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == titles
    assert parsed.entries[0].link == "https://news.example.org/episodes/2024-01-10-episode-4-later"


def test_the_archive_pages(client, monkeypatch):
    from worker.web import archive

    monkeypatch.setattr(archive, "PAGE_SIZE", 2)
    first = client.get("/")
    assert first.text.count("<li>") == 2 and 'href="/?page=2"' in first.text
    second = client.get("/?page=2")
    assert second.text.count("<li>") == 1 and "Episode Zero" in second.text and "?page=3" not in second.text
    assert client.get("/?page=0", headers=HTML).status_code == 422


def test_the_web_copy_of_the_email_is_the_email_itself_and_nobodys(client):
    r = client.get(f"/episodes/{SLUG}/email")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    with session_scope() as s:
        from worker.models import Campaign

        stored = s.scalars(select(Campaign).order_by(Campaign.id)).first()
        nonce, subject = stored.nonce, stored.subject
    assert f"<title>{subject}</title>" in r.text and 'role="article"' in r.text  # the email's own document
    assert "Hi there," in r.text and nonce not in r.text  # every placeholder filled, none with a person
    assert "reader0@example.org" not in r.text and "/unsubscribe/" not in r.text
    assert 'href="https://news.example.org/unsubscribe"' in r.text
    assert r.headers["referrer-policy"] == "no-referrer" and "set-cookie" not in r.headers
    assert not re.search(r"<img[^>]+(open|pixel|track)", r.text)
    help_page = client.get("/unsubscribe")
    assert help_page.status_code == 200 and "own unsubscribe link" in help_page.text
    assert client.get("/episodes/nope/email", headers=HTML).status_code == 404


def test_the_episode_page_keeps_a_finished_event_and_says_so(client):
    r = client.get(f"/episodes/{SLUG}")
    assert 'id="event"' in r.text and "A Whole Team Approach" in r.text
    assert "This event has finished" in r.text
    assert "Add to calendar" not in r.text  # nothing to sign up for any more


def test_already_unsubscribed_says_so_and_offers_to_resubscribe(client):
    token = unsubscribe_token(get_settings(), "reader1@example.org")
    first = client.get(f"/unsubscribe/{token}")
    assert "Unsubscribe from" in first.text and "already" not in first.text
    done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert "You are unsubscribed" in done.text and f'href="/manage/{token}"' in done.text
    again = client.get(f"/unsubscribe/{token}")
    assert again.status_code == 200 and "You are already unsubscribed" in again.text
    assert "Resubscribe" in again.text and f'href="/manage/{token}"' in again.text and "<form" not in again.text
    with session_scope() as s:
        assert (
            s.scalar(select(Subscriber.status).where(Subscriber.email_key == "reader1@example.org")) == "unsubscribed"
        )


def test_the_preview_says_its_as_of_time_and_forces_each_colour_scheme(client):
    r = client.get(f"/preview/{SLUG}", headers=BEARER)
    assert r.status_code == 200
    assert re.search(
        r'id="as-of">As of <time datetime="[^"]+">[A-Z][a-z]+day \d+ \w+ \d{4}, \d\d:\d\d \w+</time> '
        r"\(campaign 1&#39;s send time\)",
        r.text,
    )
    light = re.search(r'data-light="([^"]*)"', r.text).group(1)
    dark = re.search(r'data-dark="([^"]*)"', r.text).group(1)
    assert "prefers-color-scheme" not in light and "@media not all" in light
    assert "prefers-color-scheme" not in dark and "@media all" in dark
    asked = client.get(f"/preview/{SLUG}?as_of=2023-11-20T09:00", headers=BEARER)
    assert "Monday 20 November 2023, 09:00 GMT</time> (as asked)" in asked.text
    assert "A Whole Team Approach" in asked.text  # the event was still ahead then
    assert client.get(f"/preview/{SLUG}?as_of=yesterday", headers={**BEARER, **HTML}).status_code == 422


def test_an_off_list_test_address_gets_a_page_with_a_way_back(smtp_server, client):
    path = f"/preview/{SLUG}/send-test"
    r = client.post(path, headers={**BEARER, **HTML}, data={"to": "someone@elsewhere.example"})
    assert r.status_code == 403 and is_site_page(r.text)
    assert "not in NEWSLETTER_STAFF_ALLOWLIST" in r.text and f'href="/preview/{SLUG}"' in r.text
    ok = client.post(path, headers=BEARER, data={"to": "staff@news.example.org"})
    assert "Test email sent" in ok.text and f'href="/preview/{SLUG}"' in ok.text
    assert smtp_server.handler.per_recipient() == {"staff@news.example.org": 1}


def test_docs_need_no_internet(client):
    r = client.get("/docs")
    assert r.status_code == 200
    sources = re.findall(r'(?:src|href)=["\']([^"\']+)', r.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    for s in sources:
        assert client.get(s).status_code == 200, s
    assert "cdn" not in r.text.lower()
