"""Joining end to end: Chromium signs up through the form on the real web app; a real Celery
worker sends the confirmation email to the aiosmtpd server; the link's page confirms; the next
campaign reaches that address exactly once and nobody unconfirmed. PostgreSQL and Redis.

Also writes screenshots of the new pages and of the confirmation email (375 and 1280 px, light
and dark) to tests/artifacts/joining/ when JOINING_SCREENSHOTS is set."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select

from worker.db import dispose_engines, migrate, session_scope
from worker.episodes import load_episode
from worker.models import Subscriber
from worker.publish import publish_episode
from worker.settings import get_settings, reset_settings
from worker.web import create_app

from .factories import old_link, seed_subscribers, wait_done
from .smtp_server import free_port
from .stack import wait_for

SHOTS = Path(os.environ.get("JOINING_SCREENSHOTS", "")) if os.environ.get("JOINING_SCREENSHOTS") else None


@pytest.fixture
def site(postgres_url, redis_url, smtp_server, monkeypatch):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("NEWSLETTER_BASE_URL", base)
    monkeypatch.setenv("NEWSLETTER_REDIS_URL", redis_url)
    monkeypatch.setenv("NEWSLETTER_SIGNUP_IP_LIMIT_PER_HOUR", "1000")
    reset_settings()
    dispose_engines()
    migrate(get_settings())
    server = uvicorn.Server(
        uvicorn.Config(create_app(get_settings()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "the web server to start")
    yield base
    server.should_exit = True
    thread.join(timeout=10)
    dispose_engines()


def status_of(address: str) -> str | None:
    with session_scope() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email_key == address))


def mail_to(smtp_server, address: str) -> list:  # noqa: ANN001
    return [r for r in smtp_server.handler.received if r.rcpt == address]


def shoot(browser, name: str, url: str | None = None, html: str | None = None) -> None:  # noqa: ANN001
    if SHOTS is None:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        for width in (375, 1280):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            if url:
                page.goto(url)
            else:
                page.set_content(html)
            assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways"
            page.screenshot(path=str(SHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
            page.close()


def test_a_listener_signs_up_confirms_and_gets_the_next_campaign_once(site, browser, smtp_server, stack, seed_path):
    base, chromium = site, browser
    seed_subscribers(2)
    stack.start_worker()
    page = chromium.new_page()
    page.goto(f"{base}/subscribe")
    shoot(chromium, "subscribe", f"{base}/subscribe")
    page.fill("input[name=email]", "listener@example.net")
    page.fill("input[name=name]", "Lis Tener")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    shoot(chromium, "check-inbox", html=page.content())
    # someone else signs up and never confirms
    other = chromium.new_page()
    other.goto(f"{base}/subscribe")
    other.fill("input[name=email]", "unconfirmed@example.net")
    other.click("button[type=submit]")
    other.wait_for_selector("text=Check your inbox")

    got = wait_for(
        lambda: mail_to(smtp_server, "listener@example.net"), 60, "the confirmation email", details=stack.logs
    )
    msg = got[0].message
    assert msg["Subject"].startswith("Confirm your subscription")
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    shoot(chromium, "confirm-email", html=html)
    link = re.search(r"(http://\S+/confirm/\S+)", text).group(1)
    assert f'href="{link}"' in html
    assert status_of("listener@example.net") == "pending"

    page.goto(link)
    shoot(chromium, "confirm-page", link)
    assert status_of("listener@example.net") == "pending"  # the page alone changes nothing
    page.click("button[type=submit]")
    page.wait_for_selector("text=You are subscribed")
    shoot(chromium, "subscribed", html=page.content())
    assert status_of("listener@example.net") == "active"
    page.click("text=Manage your subscription")
    page.wait_for_selector("text=Your subscription")
    shoot(chromium, "manage", page.url)

    wait_for(lambda: mail_to(smtp_server, "unconfirmed@example.net"), 60, "the second confirmation email")
    settings = get_settings()
    campaign = publish_episode(load_episode(seed_path, settings.tz), settings).campaign
    st = wait_done(campaign.id, stack=stack)
    assert st["sent"] == 3
    assert len(mail_to(smtp_server, "listener@example.net")) == 2  # the confirmation, then the episode once
    episode_mail = mail_to(smtp_server, "listener@example.net")[1].message
    assert "Confirm" not in episode_mail["Subject"] and episode_mail["To"] == "Lis Tener <listener@example.net>"
    assert len(mail_to(smtp_server, "unconfirmed@example.net")) == 1  # only its confirmation email

    # unsubscribe from the manage page, then the page offers to resubscribe
    page.click("text=Unsubscribe")
    page.wait_for_selector("text=You are unsubscribed")
    assert status_of("listener@example.net") == "unsubscribed"
    shoot(chromium, "manage-unsubscribed", html=page.content())
    page.click("text=Resubscribe")
    page.wait_for_selector("text=We sent an email")
    again = wait_for(lambda: mail_to(smtp_server, "listener@example.net")[2:], 60, "the resubscribe email")
    link2 = re.search(r"(http://\S+/confirm/\S+)", again[0].message.get_body(preferencelist=("plain",)).get_content())
    page.goto(link2.group(1))
    page.click("button[type=submit]")
    page.wait_for_selector("text=You are subscribed")
    assert status_of("listener@example.net") == "active"

    # a tampered link and an expired one: clear pages
    page.goto(f"{base}/confirm/{link.rsplit('/', 1)[1][:-4]}AAAA")
    assert "This link does not work" in page.text_content("h1")
    shoot(chromium, "bad-link", html=page.content())
    expired = old_link(settings, "unconfirmed@example.net", "any", days=8)
    response = page.goto(f"{base}/confirm/{expired}")
    assert response.status == 410 and "This link has expired" in page.text_content("h1")
    shoot(chromium, "expired-link", html=page.content())
