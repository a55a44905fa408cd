"""The staff console driven in Chromium against a real stack: a prefork worker and two beat
processes (one too many, on purpose), Redis, PostgreSQL and an SMTP server.

Sign in; watch a 2,000-subscriber campaign progress; pause it mid-way (counts stop moving);
resume; finish, every subscriber exactly once; retry the rows that failed from the page;
schedule a draft a few seconds ahead and see beat start it once; cancel one mid-way (no queued
rows left). Every page is screenshotted at 375 and 1280 px and checked for sideways scrolling."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import func, select

from worker.db import session_scope
from worker.episodes import load_episode
from worker.models import Campaign, Delivery, utcnow
from worker.publish import create_campaign
from worker.settings import get_settings, reset_settings
from worker.web import create_app

from .conftest import CHROMIUM, CHROMIUM_ARGS
from .factories import seed_subscribers
from .smtp_server import FaultyHandler, SMTPServer, free_port
from .stack import wait_for

TOKEN = "console-browser-token"
N = 2000
FLAKY = [f"reader{i}@example.org" for i in range(0, N, 200)]  # 10 addresses: one 451, then fine


def shots_dir(tmp_path) -> Path:  # noqa: ANN001
    d = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def episode(tmp_path, n: int) -> int:  # noqa: ANN001
    path = tmp_path / f"ep{n}.txt"
    path.write_text(f"Console Episode {n}\n\n{n} Dec 2025\n\nIntro {n}.\n\nTranscript of episode {n}.\n")
    settings = get_settings()
    with session_scope() as s:
        return create_campaign(s, load_episode(path, settings.tz), settings, draft=True).campaign.id


def counts(campaign_id: int) -> dict[str, int]:
    with session_scope() as s:
        rows = s.execute(
            select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id).group_by(Delivery.status)
        ).all()
    return {str(k): v for k, v in rows}


def campaign(campaign_id: int) -> Campaign:
    with session_scope() as s:
        c = s.get(Campaign, campaign_id)
        s.expunge(c)
        return c


@pytest.fixture
def console(postgres_url, redis_url, stack, monkeypatch, tmp_path):
    handler = FaultyHandler(tempfail={a: 1 for a in FLAKY})
    with SMTPServer(handler) as smtp:
        port = free_port()
        for k, v in {
            "NEWSLETTER_MAIL_URL": smtp.url,
            "NEWSLETTER_STAFF_TOKEN": TOKEN,
            "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
            "NEWSLETTER_SEND_RATE": "150",
            "NEWSLETTER_BATCH_SIZE": "50",
            "NEWSLETTER_MAX_ATTEMPTS": "1",
            "NEWSLETTER_SWEEP_INTERVAL": "2",
        }.items():
            monkeypatch.setenv(k, v)
        reset_settings()
        from worker.db import migrate

        migrate(get_settings())
        seed_subscribers(N)
        server = uvicorn.Server(uvicorn.Config(create_app(get_settings()), host="127.0.0.1", port=port,
                                               log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, 20, "the web server to start")
        stack.start_worker()
        stack.start_beat()
        second = stack._spawn(["beat", "--loglevel", "INFO", "-s", str(tmp_path / "beat2-schedule")], "beat2")[0]
        try:
            yield f"http://127.0.0.1:{port}", handler, stack
        finally:
            second.terminate()
            second.wait(timeout=20)
            server.should_exit = True
            thread.join(timeout=10)


def test_the_console_runs_campaigns(console, tmp_path):
    from playwright.sync_api import sync_playwright

    base, smtp, stack = console
    out = shots_dir(tmp_path)
    first, scheduled, doomed = episode(tmp_path, 1), episode(tmp_path, 2), episode(tmp_path, 3)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{base}/console")
        assert "/console/sign-in" in page.url
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Campaigns')")

        # send, watch it move, pause mid-way
        row = f"#c{first}"
        page.click(f"{row} form[action$='/send'] button")
        page.wait_for_function(
            # (null-safe: the page reloads after the click, and a wait that throws fails the test)
            f"() => +document.querySelector('{row} [data-field=sent]')?.textContent > 300",
            timeout=60_000,
        )
        page.click(f"{row} form[action$='/pause'] button")
        page.wait_for_selector(f"{row} [data-field=state]:has-text('paused')")
        wait_for(lambda: not counts(first).get("claimed") and not counts(first).get("sending"), 30,
                 "the batches under way to give their rows back")  # fmt: skip
        paused_at = counts(first)
        assert 0 < paused_at.get("sent", 0) < N and paused_at.get("queued", 0) > 0
        # the counts stop moving: two sweeps later (beat every 2 s) nothing more has gone out
        seen_sweeps = stack.logs().count("worker.tasks.sweep")
        wait_for(lambda: stack.logs().count("worker.tasks.sweep") >= seen_sweeps + 4, 30, "two more sweeps")
        assert counts(first) == paused_at and campaign(first).status == "paused"
        page.screenshot(path=str(out / "console-campaigns-paused-1280.png"), full_page=True)

        page.click(f"{row} form[action$='/resume'] button")
        page.wait_for_selector(f"{row} [data-field=state]:has-text('done')", timeout=120_000)
        final = counts(first)
        assert final.get("sent") == N - len(FLAKY) and final.get("failed") == len(FLAKY)
        got = smtp.per_recipient()
        assert len(got) == N - len(FLAKY) and set(got.values()) == {1}  # nobody twice

        # retry the failed rows from the campaign's page
        page.goto(f"{base}/console/campaigns/{first}")
        assert page.locator("text=gave up after 1 attempts").count() == len(FLAKY)
        page.screenshot(path=str(out / "console-campaign-failed-1280.png"), full_page=True)
        page.click("form[action$='/retry-failed'] button")
        wait_for(lambda: counts(first).get("sent") == N, 60, "the retried rows to be sent")
        got = smtp.per_recipient()
        assert len(got) == N and set(got.values()) == {1}

        # schedule a draft a few seconds ahead: beat (twice over) starts it once
        page.goto(f"{base}/console")
        at = (utcnow() + timedelta(seconds=4)).astimezone(get_settings().tz)
        page.fill(f"#at-{scheduled}", at.strftime("%Y-%m-%dT%H:%M:%S"))
        page.click(f"#c{scheduled} form[action$='/schedule'] button")
        page.wait_for_selector(f"#c{scheduled} [data-field=state]:has-text('scheduled')")
        assert campaign(scheduled).status == "scheduled" and counts(scheduled) == {}
        page.wait_for_selector(f"#c{scheduled} [data-field=state]:has-text('done')", timeout=120_000)
        started = campaign(scheduled).started_at
        assert started is not None and started >= at - timedelta(seconds=1)
        assert counts(scheduled) == {"sent": N}
        got = smtp.per_recipient()  # started once: everyone has exactly two emails, one per campaign
        assert len(got) == N and set(got.values()) == {2}

        # cancel one mid-way
        page.click(f"#c{doomed} form[action$='/send'] button")
        page.wait_for_function(
            f"() => +document.querySelector('#c{doomed} [data-field=sent]')?.textContent > 100", timeout=60_000
        )
        page.once("dialog", lambda d: d.accept())
        page.fill(f"#c{doomed} input[name=reason]", "wrong audience")
        page.click(f"#c{doomed} form[action$='/cancel'] button")
        page.wait_for_selector(f"#c{doomed} [data-field=state]:has-text('cancelled')")
        wait_for(lambda: not {"queued", "claimed", "sending", "retry"} & set(counts(doomed)), 30,
                 "no open row left")  # fmt: skip
        left = counts(doomed)
        assert left.get("sent", 0) + left.get("cancelled", 0) == N and left.get("cancelled", 0) > 0
        assert campaign(doomed).status_reason == "wrong audience"

        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            for name, path in [("campaigns", "/console"), ("campaign", f"/console/campaigns/{first}"),
                               ("subscribers", "/console/subscribers"), ("feeds", "/console/feeds")]:  # fmt: skip
                page.goto(base + path)
                page.screenshot(path=str(out / f"console-{name}-{width}.png"), full_page=True)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
        for width in (375, 1280):
            fresh = browser.new_context(viewport={"width": width, "height": 900}).new_page()
            fresh.goto(f"{base}/console/feeds")
            assert "/console/sign-in" in fresh.url  # no session in a new browser
            fresh.screenshot(path=str(out / f"console-sign-in-{width}.png"), full_page=True)
            assert fresh.evaluate("document.documentElement.scrollWidth") <= width
        browser.close()
