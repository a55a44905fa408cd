"""What people see, in real headless Chromium (Debian's, driven by Playwright): the email, the
archive, the episode page, the web copy of the email, the unsubscribe pages and the staff
preview, each at 375 px and 1280 px, light and dark. Every page is screenshotted (full page) into
$SCREENSHOTS_DIR (default: the test's tmp dir) and checked for horizontal scrolling, the
font stack, heading line height and underlined buttons."""

from __future__ import annotations

import email
import email.policy
import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from worker.message import unsubscribe_token
from worker.settings import get_settings

from .factories import BROWSER_STAFF_TOKEN as TOKEN
from .factories import deliver, inbox, seed_subscribers

WIDTHS = (375, 1280)
SCHEMES = ("light", "dark")
SANS = re.compile(r"(?:^|,\s*)sans-serif$")
SLUG = "2023-11-23-public-sector-technology-roundup-episode-3"

CHECKS = """() => {
  const doc = document.documentElement;
  const out = {scroll: doc.scrollWidth, fonts: [], headings: [], buttons: []};
  for (const el of document.querySelectorAll('p, li, h1, h2, h3, a, td, button, label')) {
    if (!el.textContent.trim() || el.closest('[aria-hidden=true], .preheader')) continue;
    const cs = getComputedStyle(el);
    out.fonts.push([el.tagName, cs.fontFamily]);
    if (/^H[1-3]$/.test(el.tagName))
      out.headings.push([el.textContent.trim().slice(0, 40), parseFloat(cs.lineHeight) / parseFloat(cs.fontSize)]);
    if (el.matches('button, .button, .button-a'))
      out.buttons.push([el.textContent.trim(), cs.textDecorationLine]);
  }
  return out;
}"""


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def look(page, name: str, width: int, scheme: str, out: Path) -> dict:  # noqa: ANN001
    """Screenshot the page and check what a reader would notice."""
    shot = out / f"{name}-{width}-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    got = page.evaluate(CHECKS)
    where = f"{name} at {width}px {scheme}"
    assert got["scroll"] <= width, f"{where}: scrolls sideways ({got['scroll']}px)"
    assert got["fonts"], where
    bad = [f for f in got["fonts"] if not SANS.search(f[1].strip())]
    assert not bad, f"{where}: elements without the sans-serif stack: {bad[:5]}"
    tall = [h for h in got["headings"] if not 1.0 <= h[1] <= 1.4]
    assert not tall, f"{where}: heading line height off: {tall}"
    underlined = [b for b in got["buttons"] if "underline" in b[1]]
    assert not underlined, f"{where}: underlined buttons: {underlined}"
    got["shot"] = shot
    return got


FUTURE = date.today() + timedelta(days=40)
WITH_EVENT = f"""---
title: "Episode 4: Accessibility in practice"
date: {date.today().isoformat()}
number: 4
summary: Accessible services, and our spring meet-up.
event:
  title: Spring Meet-up
  starts: {FUTURE.isoformat()}T18:00
  ends: {FUTURE.isoformat()}T20:30
  venue: The Library, 1 Long Road, London
  signup_url: https://tickets.example.com/spring
  speakers:
    - {{name: Ada Lovelace, role: Analyst}}
    - {{name: Grace Hopper, role: Admiral}}
links:
  - {{title: "Accessibility guide", url: "https://example.com/a11y"}}
---
Welcome to episode four, where accessibility is the whole story.

Screen reader users rely on headings to move through a page, so every service page now has a clear heading order.

Colour contrast checks run on every build, and failures stop the release before any user sees them.

Thanks for listening, and see you at the meet-up.
"""


@pytest.fixture
def site(live, seed_path, tmp_path):  # noqa: F811
    base, outbox = live
    seed_subscribers(3)
    deliver(seed_path)
    fourth = tmp_path / "ep4.md"
    fourth.write_text(WITH_EVENT)
    deliver(fourth)
    return base, outbox


def test_every_page_at_two_widths_in_both_schemes(site, browser, tmp_path):  # noqa: F811
    base, outbox = site
    out = shots_dir(tmp_path)
    settings = get_settings()
    mail = [m for m in inbox(outbox)["reader0@example.org"] if "Accessibility" in m["Subject"]][0]
    msg = email.message_from_bytes(mail.as_bytes(), policy=email.policy.default)
    email_html = msg.get_body(("html",)).get_content()
    view_online = re.search(r'href="([^"]+)"[^>]*>View this email in your browser', email_html).group(1)
    gone = unsubscribe_token(settings, "reader2@example.org")
    pages = {
        "archive": "/",
        "episode": "/episodes/" + re.search(r"/episodes/([^/\"#]+)", email_html).group(1),
        "episode-past-event": f"/episodes/{SLUG}",
        "email-web-copy": f"/episodes/{SLUG}/email",
        "unsubscribe-confirm": f"/unsubscribe/{unsubscribe_token(settings, 'reader1@example.org')}",
        "unsubscribe-bad-link": "/unsubscribe/not-a-valid-token",
        "not-found": "/episodes/no-such-episode",
    }
    shots = []
    for width in WIDTHS:
        for scheme in SCHEMES:
            ctx = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
            page = ctx.new_page()
            page.set_content(email_html)
            shots.append(look(page, "email", width, scheme, out)["shot"])
            for name, path in pages.items():
                page.goto(base + path)
                shots.append(look(page, name, width, scheme, out)["shot"])
            # the unsubscribed states
            page.goto(f"{base}/unsubscribe/{gone}")
            if page.locator("button[type=submit]").count():
                page.click("button[type=submit]")
                page.wait_for_selector("text=You are unsubscribed")
                shots.append(look(page, "unsubscribed", width, scheme, out)["shot"])
                page.goto(f"{base}/unsubscribe/{gone}")
            assert "already unsubscribed" in page.text_content("h1")
            assert page.get_attribute("text=Resubscribe", "href") == f"/manage/{gone}"
            shots.append(look(page, "already-unsubscribed", width, scheme, out)["shot"])
            ctx.close()
    assert view_online.startswith(base + "/episodes/")
    # each page in each view, plus the one "You are unsubscribed" page (the first view unsubscribes)
    assert len(set(shots)) == len(WIDTHS) * len(SCHEMES) * (len(pages) + 2) + 1
    assert all(s.stat().st_size > 5000 for s in shots)


def frame_background(page) -> str:  # noqa: ANN001
    return page.frame_locator("#f").locator("td.card").first.evaluate("e => getComputedStyle(e).backgroundColor")


# the frame shows the whole email: as tall as its document. Both wait while a toggle reloads the
# frame (its document is blank for a moment: no card yet), instead of failing on the gap.
FITS = (
    "() => { const d = document.getElementById('f').contentDocument; "
    "return !!d && !!d.querySelector('td.card') "
    "&& document.getElementById('f').clientHeight >= d.documentElement.scrollHeight; }"
)
CARD_IS = (
    "c => { const d = document.getElementById('f').contentDocument; "
    "const card = d && d.querySelector('td.card'); "
    "return !!card && getComputedStyle(card).backgroundColor === c; }"
)


@pytest.mark.parametrize("browser_scheme", SCHEMES)
def test_preview_toggles_work_whatever_the_browsers_scheme(site, browser, tmp_path, browser_scheme):  # noqa: F811
    base, _ = site
    out = shots_dir(tmp_path)
    for width in WIDTHS:
        ctx = browser.new_context(
            viewport={"width": width, "height": 900},
            color_scheme=browser_scheme,
            http_credentials={"username": "staff", "password": TOKEN},
        )
        page = ctx.new_page()
        assert page.goto(f"{base}/preview/{SLUG}").status == 200
        assert re.match(r"As of \w+day \d+ \w+ \d{4}, \d\d:\d\d", page.text_content("#as-of"))
        assert frame_background(page) == "rgb(255, 255, 255)"  # light, even in a dark browser
        page.wait_for_function(FITS)
        look(page, "preview", width, f"{browser_scheme}-browser-light-email", out)
        page.check("input[value=dark]")
        page.wait_for_function(CARD_IS, arg="rgb(27, 33, 40)")
        page.check("input[value=mobile]")
        assert page.evaluate("document.getElementById('f').clientWidth") <= 375
        page.wait_for_function(FITS)
        look(page, "preview", width, f"{browser_scheme}-browser-dark-email-mobile", out)
        page.check("input[value=light]")
        page.wait_for_function(CARD_IS, arg="rgb(255, 255, 255)")
        page.fill("input[name=to]", "someone@elsewhere.example")
        page.click("form.send button")
        page.wait_for_selector("text=Test email not sent")
        look(page, "preview-refused", width, browser_scheme, out)
        page.click("text=Back to the preview")
        page.wait_for_selector("#as-of")
        ctx.close()


def test_api_docs_render_with_no_internet(live, browser):  # noqa: F811
    base, _ = live
    page = browser.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"{base}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "newsletter-worker" in page.text_content(".swagger-ui .info .title")
    page.wait_for_selector('[data-path="/unsubscribe/{token}"]')  # operations listed: the 3.1 spec was read
    assert asked and all(u.startswith(base) or u.startswith("data:") for u in asked), asked
