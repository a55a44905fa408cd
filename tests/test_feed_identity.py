"""Feed item identity (issue 11, cases 1-2): an episode mailed once is never mailed again,
whatever else changes in the feed; items older than the newest seen are back catalogue."""

from __future__ import annotations

import shutil

import feedparser
import pytest
from sqlalchemy import func, select

from worker.db import session_scope
from worker.feed_identity import candidate_keys, identify, url_identity
from worker.feeds import poll_feed
from worker.models import Campaign, SeenItem
from worker.settings import get_settings, reset_settings

from .conftest import FIXTURES
from .factories import cli, poll_concurrently

IDENTITY = FIXTURES / "feeds" / "identity"


@pytest.fixture
def drafts(database, monkeypatch):
    """Polls make drafts (nothing to queue): the ledger alone says what would be mailed."""
    monkeypatch.setenv("NEWSLETTER_AUTO_SEND", "false")
    reset_settings()
    return get_settings()


@pytest.fixture
def feed_file(tmp_path):
    """One feed path whose content each step replaces with a fixture's."""
    path = tmp_path / "feed.rss"

    def publish(name: str) -> str:
        shutil.copyfile(IDENTITY / name, path)
        return str(path)

    return publish


def campaigns() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Campaign))


def poll_steps(settings, feed_file, *names: str):  # noqa: ANN001, ANN201
    reports = [poll_feed(feed_file(name), settings) for name in names]
    assert all(r.error is None for r in reports), [r.error for r in reports]
    return reports


def test_guid_scheme_change_sends_only_the_new_episode(drafts, feed_file):
    first, second, third = poll_steps(drafts, feed_file, "v1.rss", "v2-https.rss", "v2-https.rss")
    assert first.primed and first.new == [] and first.seen == 3
    assert second.new == ["2024-01-22-episode-4-things"] and second.seen == 3
    assert third.new == [] and third.seen == 4
    assert campaigns() == 1
    with session_scope() as s:  # the new guids are remembered too, in case path and enclosure change later
        keys = set(s.scalars(select(SeenItem.item_key)))
    assert {f"guid:https://show.example.org/episodes/{n}" for n in (1, 2, 3, 4)} <= keys


def test_concurrent_polls_after_a_guid_change_make_one_campaign(drafts, feed_file):
    poll_feed(feed_file("v1.rss"), drafts)
    results = poll_concurrently(feed_file("v2-https.rss"), drafts)
    assert sum(len(r.new) for r in results) == 1 and campaigns() == 1


def test_new_host_reordered_edited_notes_and_title_send_nothing(drafts, feed_file):
    _, second = poll_steps(drafts, feed_file, "v1.rss", "v2-new-host-edited.rss")
    assert second.new == [] and second.seen == 3 and campaigns() == 0


def test_an_item_returning_after_leaving_the_window_is_not_sent_again(drafts, feed_file):
    reports = poll_steps(drafts, feed_file, "v1.rss", "v2-window.rss", "v1.rss")
    assert [r.new for r in reports] == [[], [], []]
    assert reports[2].seen == 3 and campaigns() == 0


def test_a_re_added_item_with_new_guid_and_audio_host_is_known_by_title_and_date(drafts, feed_file):
    _, second = poll_steps(drafts, feed_file, "v1.rss", "v2-readded.rss")
    assert second.new == [] and campaigns() == 0


def test_an_item_dated_before_the_newest_seen_is_recorded_not_mailed(drafts, feed_file):
    _, second, third = poll_steps(drafts, feed_file, "v1.rss", "v2-old-item.rss", "v2-old-item.rss")
    assert second.new == [] and second.seen == 4 and campaigns() == 0
    assert third.seen == 4  # recorded: the next poll knows it
    with session_scope() as s:  # recorded under all its keys
        keys = set(s.scalars(select(SeenItem.item_key)))
    assert "id:/episodes/0" in keys and "enc:cdn.example.net/audio/episode-0.mp3" in keys


def test_send_backlog_mails_an_old_new_item(drafts, feed_file):
    poll_feed(feed_file("v1.rss"), drafts)
    report = poll_feed(feed_file("v2-old-item.rss"), drafts, send_backlog=True)
    assert report.new == ["2023-12-01-episode-0-pilot"] and campaigns() == 1


def test_home_page_links_without_guid_fall_back_to_the_enclosure(drafts, feed_file):
    first, second = poll_steps(drafts, feed_file, "no-guid-home-link.rss", "no-guid-home-link-next.rss")
    assert first.seen == 3  # three items, not one
    assert len(second.new) == 1 and second.new[0].startswith("2024-01-22-episode-4-things")
    assert any("share the same link" in n and "enclosure URL" in n for n in second.notes)
    assert campaigns() == 1


def test_home_page_links_without_guid_or_enclosure_fall_back_to_title_and_date(drafts, feed_file):
    first, second = poll_steps(drafts, feed_file, "no-guid-no-enclosure.rss", "no-guid-no-enclosure-next.rss")
    assert first.seen == 3
    assert len(second.new) == 1 and second.new[0].startswith("2024-01-22-episode-4-things")
    assert any("4 items share the same link" in n for n in second.notes)


def test_rows_recorded_by_the_previous_version_still_count(drafts, feed_file):
    """Before this version a seen row was 'guid:' + the raw guid: an upgrade must not resend."""
    url = feed_file("v1.rss")
    poll_feed(url, drafts)  # primes the feed
    with session_scope() as s:  # keep only what the old poller would have written
        s.query(SeenItem).delete()
        for n in (1, 2, 3):
            s.add(SeenItem(source=url, item_key=f"guid:http://show.example.org/episodes/{n}"))
    report = poll_feed(url, drafts)
    assert report.new == [] and report.seen == 3 and campaigns() == 0


@pytest.mark.parametrize(
    "a, b",
    [
        ("http://show.example.org/episodes/1", "https://show.example.org/episodes/1"),
        ("http://show.example.org/episodes/1", "https://podcast.example.com/episodes/1/"),
        ("https://show.example.org/?p=123", "http://www.show.example.org/?p=123"),
        ("urn:uuid:1f0c", " urn:uuid:1f0c "),
    ],
)
def test_url_guids_keep_their_identity_across_scheme_and_host(a, b):
    assert url_identity(a) == url_identity(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("https://show.example.org/episodes/1", "https://show.example.org/episodes/2"),
        ("https://show.example.org/?p=1", "https://show.example.org/?p=2"),
        ("tag:show.example.org,2024:1", "tag:show.example.org,2024:2"),
    ],
)
def test_different_guids_stay_different(a, b):
    assert url_identity(a) != url_identity(b)


def test_identify_drops_shared_keys_and_says_so():
    parsed = feedparser.parse((IDENTITY / "no-guid-home-link.rss").read_bytes())
    ids = identify(parsed.entries)
    assert [k.primary for k in ids.items] == [f"enc:cdn.example.net/audio/episode-{n}.mp3" for n in (3, 2, 1)]
    assert ids.notes == ["3 items share the same link; they are told apart by enclosure URL, then title and date"]
    assert all(not k.startswith("link:") for item in ids.items for k in item.keys)


def test_a_guid_that_is_the_home_page_is_no_identity():
    keys = candidate_keys(
        {
            "id": "https://show.example.org/",
            "title": "T",
            "enclosures": [{"href": "https://cdn.example.net/a.mp3", "type": "audio/mpeg"}],
        }
    )
    assert keys["id"] == "id:/"
    (item,) = identify(
        [
            {
                "id": "https://show.example.org/",
                "title": "T",
                "enclosures": [{"href": "https://cdn.example.net/a.mp3", "type": "audio/mpeg"}],
            }
        ]
    ).items
    assert item.primary == "enc:cdn.example.net/a.mp3"


def test_the_poll_command_says_when_items_cannot_be_told_apart(drafts, feed_file):
    url = feed_file("no-guid-home-link.rss")
    proc = cli("poll", url)
    assert proc.returncode == 0, proc.stderr
    assert "3 items share the same link; they are told apart by enclosure URL" in proc.stderr


@pytest.mark.parametrize("name", ["latest-only-show-page", "latest-only-no-guid"])
def test_a_feed_of_only_its_newest_item_linking_to_the_show_page_mails_each_new_item(drafts, feed_file, name):
    """One item per document, every item's link the show's page: in one document nothing is
    shared, but across polls that link names no item, and a new week must still be mailed."""
    first, second, third = poll_steps(drafts, feed_file, f"{name}-1.rss", f"{name}-2.rss", f"{name}-2.rss")
    assert first.new == [] and first.seen == 1
    assert len(second.new) == 1 and second.new[0].startswith("2024-01-08-weekly-2")
    assert third.new == [] and third.seen == 1
    assert campaigns() == 1


def test_an_old_item_known_only_by_its_link_stays_known(drafts, feed_file):
    """A re-keyed old item (new guid, new audio host, edited title) whose link is its own page
    is the item already seen: the link still counts for items not newer than the newest seen."""
    poll_steps(drafts, feed_file, "v1.rss")
    path = feed_file("v1.rss")
    text = open(path).read()
    for n in (1, 2, 3):
        text = text.replace(f"<guid>http://show.example.org/episodes/{n}</guid>", f"<guid>urn:uuid:0000-{n}</guid>")
        text = text.replace(f"Episode {n}: Things", f"Episode {n}: Things (remastered)")
    text = text.replace("http://cdn.example.net/audio/", "https://media.example.com/a/")
    with open(path, "w") as fh:
        fh.write(text)
    report = poll_feed(path, drafts)
    assert report.error is None and report.new == [] and report.seen == 3 and campaigns() == 0


def test_a_guid_or_link_equal_to_the_channel_link_is_no_identity():
    doc = (IDENTITY / "latest-only-show-page-1.rss").read_bytes()
    parsed = feedparser.parse(doc)
    (item,) = identify(parsed.entries, site_links=[parsed.feed.get("link", "")]).items
    assert not any(k.startswith("link:") for k in item.all)
    assert item.primary == "id:weekly-1"


def test_an_item_dated_in_the_future_does_not_hold_back_the_next_episodes(drafts, feed_file):
    """A mistyped year (2094) must not make every later episode 'older than the newest seen'."""
    _, second, third = poll_steps(drafts, feed_file, "v1.rss", "v2-typo-future-date.rss", "v3-after-typo.rss")
    assert second.new == ["2094-01-22-episode-4-things"]
    assert third.new == ["2024-01-29-episode-5-things"] and campaigns() == 2
