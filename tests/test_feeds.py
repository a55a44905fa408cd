"""Feed polling: new items become exactly one campaign, whatever races or breaks."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from worker.db import session_scope
from worker.episodes import html_to_lines, read_feed_item
from worker.errors import FeedError
from worker.feeds import fetch, parse_feed, poll_feed, poll_folder
from worker.models import Campaign, Feed
from worker.settings import get_settings, reset_settings

from .conftest import FEEDS
from .factories import cli as run
from .factories import poll_concurrently, seed_subscribers, wait_done

ITEM = """<item><title>{title}</title><guid>{guid}</guid><link>https://podcast.example.com/{guid}</link>
<pubDate>{date}</pubDate><enclosure url="https://cdn.example.com/{guid}.mp3" type="audio/mpeg" length="1"/>
<description><![CDATA[{notes}]]></description></item>"""


def feed_xml(items: list[dict]) -> str:
    body = "".join(
        ITEM.format(**{"notes": "<p>Notes.</p>", "date": "Thu, 23 Nov 2023 10:00:00 +0000", **i}) for i in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Show</title>{body}</channel></rss>'


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: ANN002
        pass


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def publish_feed(path, content: str) -> None:  # noqa: ANN001
    """Write the feed as a host would a little later: Last-Modified moves on, so the poller's
    conditional GET sees a change (our test server has one-second resolution)."""
    import os
    import time

    path.write_text(content)
    later = time.time() + publish_feed.tick
    publish_feed.tick += 2
    os.utime(path, (later, later))


publish_feed.tick = 2


def campaigns() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Campaign))


def test_new_item_on_a_served_feed_reaches_the_subscribers(database, redis_url, smtp_server, stack, http_dir):
    root, base = http_dir
    url = f"{base}/feed.xml"
    emails = seed_subscribers(20)
    publish_feed(root / "feed.xml", feed_xml([{"title": "Old one", "guid": "ep-1"}]))
    settings = get_settings()
    stack.start_worker()
    first = poll_feed(url, settings)
    assert first.primed and first.new == [] and first.seen == 1 and campaigns() == 0  # back catalogue only

    notes = (
        "<p>Intro for episode two.</p><p>Panel Event</p><p>Big Panel</p><p>6pm - 8pm</p>"
        "<p>12 December 2030</p><p>The Hall, London</p><p>Speakers: Ada, Host</p>"
        "<p>Links &amp; Sources</p><p><a href='https://example.org/r'>A report</a></p>"
        "<p>Transcript starts here and says many things about many subjects.</p>"
    )
    publish_feed(
        root / "feed.xml",
        feed_xml([{"title": "New one", "guid": "ep-2", "notes": notes}, {"title": "Old one", "guid": "ep-1"}]),
    )
    second = poll_feed(url, settings)
    assert len(second.new) == 1 and campaigns() == 1
    assert poll_feed(url, settings).new == [] and campaigns() == 1  # a repeated poll adds nothing
    with session_scope() as s:
        cid = s.scalar(select(Campaign.id))
    st = wait_done(cid, stack=stack)
    assert st["sent"] == 20
    got = smtp_server.handler.per_recipient()
    assert got == {e: 1 for e in emails}
    msg = smtp_server.handler.received[0].message
    assert msg["Subject"] == "New one"
    html = msg.get_body(("html",)).get_content()
    assert "Big Panel" in html and "https://example.org/r" in html  # event and links read from show notes


def test_two_concurrent_polls_make_one_campaign(database, http_dir, monkeypatch):
    root, base = http_dir
    url = f"{base}/feed.xml"
    monkeypatch.setenv("NEWSLETTER_AUTO_SEND", "false")  # drafts: nothing to queue, only the ledger counts
    reset_settings()
    seed_subscribers(3)
    publish_feed(root / "feed.xml", feed_xml([{"title": "Old", "guid": "old"}]))
    settings = get_settings()
    poll_feed(url, settings)
    publish_feed(
        root / "feed.xml",
        feed_xml([{"title": f"New {i}", "guid": f"new-{i}"} for i in range(3)] + [{"title": "Old", "guid": "old"}]),
    )
    results = poll_concurrently(url, settings)
    assert sorted(slug for r in results for slug in r.new) == sorted(
        ["2023-11-23-new-0", "2023-11-23-new-1", "2023-11-23-new-2"]
    )
    assert campaigns() == 3
    with session_scope() as s:
        assert {c.status for c in s.scalars(select(Campaign))} == {"draft"}


def test_send_backlog_flag_sends_the_first_poll(database, http_dir, monkeypatch):
    root, base = http_dir
    monkeypatch.setenv("NEWSLETTER_AUTO_SEND", "false")
    reset_settings()
    publish_feed(root / "feed.xml", feed_xml([{"title": "A", "guid": "a"}, {"title": "B", "guid": "b"}]))
    report = poll_feed(f"{base}/feed.xml", get_settings(), send_backlog=True)
    assert len(report.new) == 2 and campaigns() == 2


@pytest.mark.parametrize(
    "content, name, needle",
    [
        (None, "missing.xml", "HTTP 404"),
        ("<rss><channel><item><title>x</broken>", "bad.xml", "not well-formed XML"),
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            "<rss><channel><item><title>&x;</title></item></channel></rss>",
            "xxe.xml",
            "refused",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            "<rss><channel><item><title>&b;</title></item></channel></rss>",
            "bomb.xml",
            "refused",
        ),
        ("", "empty.xml", "not"),
    ],
)
def test_broken_feeds_are_recorded_not_fatal(database, http_dir, content, name, needle):
    root, base = http_dir
    if content is not None:
        (root / name).write_text(content)
    url = f"{base}/{name}"
    report = poll_feed(url, get_settings())
    assert report.error and needle in report.error
    assert campaigns() == 0
    with session_scope() as s:
        feed = s.scalars(select(Feed).where(Feed.url == url)).one()
        assert feed.failures == 1 and needle in feed.last_error


def test_status_shows_failing_feed(settings_env, http_dir, seed_path, tmp_path):
    root, base = http_dir
    subs = tmp_path / "s.csv"
    subs.write_text("email\na@example.org\n")
    assert run("subscribers", "import", subs).returncode == 0
    assert run("publish", seed_path).returncode == 0
    proc = run("poll", f"{base}/nope.xml")
    assert proc.returncode == 1 and "HTTP 404" in proc.stderr and "Traceback" not in proc.stderr
    st = json.loads(run("status", "--json").stdout)
    assert st["feeds"][0]["url"] == f"{base}/nope.xml" and "404" in st["feeds"][0]["last_error"]
    assert "failing" in run("status").stdout


def test_every_shared_feed_yields_episodes_or_is_reported(settings):
    files = sorted(FEEDS.glob("*.rss"))
    assert len(files) > 50
    usable = 0
    for path in files:
        try:
            parsed = parse_feed(fetch(str(path))[0], str(path))
        except FeedError as exc:
            assert str(path) in str(exc)
            continue
        for entry in parsed.entries:
            ep = read_feed_item(entry, feed_url=str(path), tz=settings.tz)
            assert ep.title and ep.slug and ep.guid
            assert not ep.audio_url or ep.audio_url.startswith(("http://", "https://"))
            usable += 1
    assert usable >= 40


def test_shared_feed_edge_cases(settings):
    def episodes(name):  # noqa: ANN001, ANN202
        p = str(FEEDS / name)
        return [read_feed_item(e, feed_url=p, tz=settings.tz) for e in parse_feed(fetch(p)[0], p).entries]

    multi = episodes("multi_enclosures.rss")[0]
    assert multi.audio_url.endswith(".mp3")
    no_guid = episodes("no_guid.rss")[0]
    assert no_guid.guid  # falls back to link or content hash
    html = episodes("html_in_description.rss")[0]
    assert all("<" not in p for p in (*html.intro, *html.transcript))


def test_show_notes_html_is_sanitised_to_text():
    text = "\n".join(
        html_to_lines(
            "<p>Hi <script>alert(1)</script><b>there</b></p><img src=x onerror=alert(1)>"
            '<p><a href="javascript:alert(1)">bad</a> <a href="https://ok.example">good</a></p>'
        )
    )
    assert "alert" not in text and "javascript" not in text
    assert "Hi there" in text and "good – https://ok.example" in text


def test_drop_folder(database, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_AUTO_SEND", "false")
    reset_settings()
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "ep1.txt").write_text("Dropped Episode\n\n5 Jan 2024\n\nIntro.\n\nTranscript.\n")
    (folder / ".partial.txt").write_text("ignored")
    (folder / "broken.txt").write_bytes(b"\x00\x01")
    settings = get_settings()
    first = poll_folder(folder, settings)
    assert first.new == ["2024-01-05-dropped-episode"] and "binary" in first.error
    second = poll_folder(folder, settings)
    assert second.new == [] and second.error is None and campaigns() == 1


def test_beat_schedules_the_poll_and_the_sweep(settings_env, monkeypatch):
    from worker.celery import make_app

    monkeypatch.setenv("NEWSLETTER_POLL_INTERVAL", "42")
    monkeypatch.setenv("NEWSLETTER_SWEEP_INTERVAL", "7")
    reset_settings()
    schedule = make_app().conf.beat_schedule
    assert schedule["poll"] == {"task": "worker.tasks.poll", "schedule": 42.0}
    assert schedule["sweep"] == {"task": "worker.tasks.sweep", "schedule": 7.0}
