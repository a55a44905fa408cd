"""The editor's highlights from a feed (issue 12): chapter titles from a `podcast:chapters` JSON
file over HTTP or from Podlove Simple Chapters, else a bulleted list in the show notes."""

from __future__ import annotations

import json
import os
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import feedparser
import pytest
from sqlalchemy import select

from worker.chapters import chapter_titles, fetch_json_chapters, json_chapter_titles
from worker.db import session_scope
from worker.episodes import Episode, read_feed_item
from worker.feeds import poll_feed
from worker.models import EpisodeRecord as EpisodeRow
from worker.settings import get_settings, reset_settings

from .conftest import FIXTURES

CHAPTERS = FIXTURES / "feeds" / "chapters"
LONDON = ZoneInfo("Europe/London")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: ANN002
        pass


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over a folder holding the chapters fixtures; yields (folder, base URL)."""
    root = tmp_path / "www"
    shutil.copytree(CHAPTERS, root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def entry_of(path, base: str = ""):  # noqa: ANN001, ANN201
    return feedparser.parse(path.read_text().replace("{BASE}", base).encode()).entries[0]


def test_json_chapters_over_http(served):
    _, base = served
    entry = entry_of(CHAPTERS / "podcast-chapters.rss", base)
    titles = chapter_titles(entry, feed_url=f"{base}/feed.rss")
    assert titles == ("Why open data needs maintainers", "What a panel can change")


def test_chapters_on_a_private_address_other_than_the_feed_host_are_not_fetched(served):
    _, base = served
    entry = entry_of(CHAPTERS / "podcast-chapters.rss", base)
    assert chapter_titles(entry, feed_url="https://feeds.example.org/show.rss") == ()
    assert fetch_json_chapters(f"{base}/chapters.json", feed_url="https://feeds.example.org/x") == ()


def test_podlove_simple_chapters():
    entry = entry_of(CHAPTERS / "psc.rss")
    assert chapter_titles(entry) == ("Maintaining open data", "Panels & what they change")


@pytest.mark.parametrize("path", ["missing.json", "not-json.json"])
def test_unreadable_chapters_give_none(served, path):
    root, base = served
    (root / "not-json.json").write_text("<html>nope</html>")
    assert fetch_json_chapters(f"{base}/{path}", feed_url=base) == ()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "ftp://x.example/c.json", "javascript:x"])
def test_only_http_chapters_are_fetched(url):
    assert fetch_json_chapters(url) == ()


@pytest.mark.parametrize("doc", [b"[]", b'{"chapters": "x"}', b'{"chapters": [1, {"title": 2}]}', b"\xff"])
def test_odd_chapter_documents(doc):
    assert json_chapter_titles(doc) in ((), ("2",))


def test_too_big_chapters_file_is_ignored(served):
    root, base = served
    (root / "big.json").write_text(json.dumps({"chapters": [{"title": "x" * 100}] * 20000}))
    assert fetch_json_chapters(f"{base}/big.json", feed_url=base) == ()


def test_bulleted_list_in_the_notes():
    ep = read_feed_item(entry_of(CHAPTERS / "bulleted-notes.rss"), feed_url="f", tz=LONDON)
    assert ep.highlights == ("Why open data needs maintainers", "What a panel can change")
    assert ep.intro == ("A short intro.",) and ep.transcript == ("Transcript starts here.",)


def test_no_highlights_when_absent():
    ep = read_feed_item(entry_of(FIXTURES / "feeds" / "text" / "plain-notes.rss"), feed_url="f", tz=LONDON)
    assert ep.highlights == ()


def test_a_polled_item_carries_its_chapter_titles(database, served, monkeypatch):
    root, base = served
    monkeypatch.setenv("NEWSLETTER_AUTO_SEND", "false")
    reset_settings()
    feed = root / "feed.rss"
    feed.write_text((CHAPTERS / "psc.rss").read_text())
    settings = get_settings()
    poll_feed(f"{base}/feed.rss", settings)  # primes with the older item
    both = (CHAPTERS / "podcast-chapters.rss").read_text().replace("{BASE}", base)
    older = (CHAPTERS / "psc.rss").read_text()
    item = older[older.index("<item>") : older.index("</item>") + 7]
    feed.write_text(
        both.replace("</channel>", item + "</channel>").replace(
            '<rss version="2.0" ', '<rss version="2.0" xmlns:psc="http://podlove.org/simple-chapters" '
        )
    )
    later = feed.stat().st_mtime + 5  # a later Last-Modified, so the conditional GET sees a change
    os.utime(feed, (later, later))
    report = poll_feed(f"{base}/feed.rss", settings)
    assert report.new == ["2024-02-19-episode-9-json-chapters"]
    with session_scope() as s:
        data = s.scalars(select(EpisodeRow.data)).one()
    assert Episode.from_json(data).highlights == ("Why open data needs maintainers", "What a panel can change")


def test_a_redirect_to_a_private_address_is_not_followed(served):
    """A public-looking chapters URL may redirect inward: every hop is checked."""
    import http.server

    root, base = served

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"{base}/chapters.json")
            self.end_headers()

        def log_message(self, *args):  # noqa: ANN002
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hop = f"http://127.0.0.2:{server.server_address[1]}/c.json"
        # the feed lives on 127.0.0.2: its own host is allowed, the redirect to 127.0.0.1 is not
        assert fetch_json_chapters(hop, feed_url=f"http://127.0.0.2:{server.server_address[1]}/feed") == ()
        assert fetch_json_chapters(f"{base}/chapters.json", feed_url=base)  # direct, same host: read
    finally:
        server.shutdown()
        server.server_close()


def test_a_topics_list_deep_in_the_transcript_stays_there(tmp_path):
    from worker.episodes import load_episode

    body = "\n\n".join(f"Transcript paragraph {i}." for i in range(10))
    path = tmp_path / "ep.txt"
    path.write_text(f"Show\n\n1 Feb 2024\n\nIntro.\n\n{body}\n\nTopics\n- one\n- two\n\nThe end.\n")
    ep = load_episode(path, LONDON)
    assert ep.highlights == () and ep.transcript[-2:] == ("Topics - one - two", "The end.")
    path.write_text("Show\n\n1 Feb 2024\n\nIntro.\n\nIn this episode:\n- one\n- 01:02 two\n\nTranscript.\n")
    ep = load_episode(path, LONDON)
    assert ep.highlights == ("one", "two") and ep.intro == ("Intro.",) and ep.transcript == ("Transcript.",)


def test_a_timestamped_chapter_list_in_the_notes_keeps_only_the_topics():
    ep = read_feed_item(entry_of(CHAPTERS / "timestamped-notes.rss"), feed_url="f", tz=LONDON)
    assert ep.highlights == ("The budget, line by line", "Listener questions")
