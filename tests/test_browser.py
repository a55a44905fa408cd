"""Real headless Chromium (Debian's, driven by Playwright) against the real web app."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from worker.db import session_scope
from worker.models import Subscriber

from .factories import BROWSER_STAFF_TOKEN as TOKEN
from .factories import deliver, inbox, seed_subscribers


def test_unsubscribe_in_a_real_browser(live, browser, seed_path, tmp_path):
    base, outbox = live
    seed_subscribers(3)
    deliver(seed_path)
    mail = inbox(outbox)["reader1@example.org"][0]
    import email
    import email.policy

    msg = email.message_from_bytes(mail.as_bytes(), policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    link = re.search(r'href="([^"]+/unsubscribe/[^"]+)"', html).group(1)
    assert link.startswith(base)

    page = browser.new_page()
    page.goto(link)
    assert "Unsubscribe from" in page.text_content("h1")
    with session_scope() as s:  # opening the link changed nothing
        assert s.scalar(select(Subscriber.status).where(Subscriber.email_key == "reader1@example.org")) == "active"
    page.click("button[type=submit]")
    page.wait_for_selector("text=You are unsubscribed")
    with session_scope() as s:
        assert (
            s.scalar(select(Subscriber.status).where(Subscriber.email_key == "reader1@example.org")) == "unsubscribed"
        )

    second = tmp_path / "ep2.txt"
    second.write_text("Episode Two\n\n1 Dec 2023\n\nIntro.\n\nTranscript words.\n")
    deliver(second)
    box = inbox(outbox)
    assert len(box["reader0@example.org"]) == 2 and len(box["reader2@example.org"]) == 2
    assert len(box["reader1@example.org"]) == 1  # the next campaign skipped them


def test_one_click_with_a_plain_http_client(live, seed_path):
    base, outbox = live
    seed_subscribers(2)
    deliver(seed_path)
    mail = inbox(outbox)["reader0@example.org"][0]
    url = re.match(r"<([^>]+)>", mail["List-Unsubscribe"]).group(1)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # what a mailbox provider does: POST the body, no cookies, no session, no redirects
    r = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 200 and "set-cookie" not in r.headers
    with session_scope() as s:
        assert (
            s.scalar(select(Subscriber.status).where(Subscriber.email_key == "reader0@example.org")) == "unsubscribed"
        )


@pytest.mark.parametrize("width", [375, 600])
def test_preview_has_no_horizontal_scroll(live, browser, seed_path, width):
    base, _ = live
    seed_subscribers(1)
    deliver(seed_path)
    context = browser.new_context(
        viewport={"width": width, "height": 800}, http_credentials={"username": "staff", "password": TOKEN}
    )
    page = context.new_page()
    slug = "2023-11-23-public-sector-technology-roundup-episode-3"
    resp = page.goto(f"{base}/preview/{slug}")
    assert resp.status == 200
    page.check("input[value=mobile]")
    assert page.evaluate("document.getElementById('f').clientWidth") <= 375  # the email's viewport
    frame = page.frame_locator("#f")
    card = "td.card"
    assert frame.locator(card).first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"
    page.check("text=Dark")
    frame.locator("h1").wait_for()
    assert frame.locator(card).first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(27, 33, 40)"
    assert frame.locator("h1").text_content() == "Public Sector Technology Roundup: Episode 3"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
