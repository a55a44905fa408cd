"""The digest (what the email says) and its calendar file, without any server."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

from worker.digest import build_digest, send_time
from worker.episodes import Episode, Event, Speaker, load_episode
from worker.message import Recipient, compose


def run(*args, env=None, check=True):  # noqa: ANN001
    """The `newsletter` command as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


EVENT_TITLE = "A Whole Team Approach to Effective Product Discovery: Panel Discussion"


def episode(**kw) -> Episode:
    base = dict(
        title="Episode 9: Tests",
        date=date(2024, 3, 1),
        slug="episode-9",
        guid="urn:ep:9",
        intro=("An intro.",),
        transcript=("A transcript paragraph with enough words in it to count.",),
    )
    return Episode(**{**base, **kw})


def event(settings, **kw) -> Event:
    base = dict(
        title="Spring Social",
        starts=datetime(2024, 3, 20, 18, 0, tzinfo=settings.tz),
        ends=datetime(2024, 3, 20, 21, 30, tzinfo=settings.tz),
        venue="The Pub, London",
        signup_url="https://tickets.example.com/s",
        speakers=(Speaker("Grace Hopper", "Admiral"),),
        description=("Drinks and talks.",),
    )
    return Event(**{**base, **kw})


# -- the send time: one rule for render, send-test, publish and the preview -------------------


def test_send_time_is_now_unless_given(settings):
    before = datetime.now(UTC)
    now = send_time(settings)
    assert before <= now <= datetime.now(UTC) and now.tzinfo is not None
    naive = send_time(settings, datetime(2024, 1, 1, 12, 0))
    assert naive == datetime(2024, 1, 1, 12, 0, tzinfo=settings.tz)
    aware = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert send_time(settings, aware) is aware


def test_an_event_is_advertised_until_it_ends(settings):
    ep = episode(event=event(settings))
    ends = ep.event.ends
    assert build_digest(ep, settings, ends - timedelta(minutes=1)).event is not None
    gone = build_digest(ep, settings, ends)
    assert gone.event is None and gone.ics is None
    # no as_of: judged now (2024's event is long over), as a publish or a test send is
    assert build_digest(ep, settings).event is None


def test_render_and_send_test_judge_the_event_as_of_now_like_publish(settings_env, seed_path, tmp_path):
    """The sample's event (29 Nov 2023) is over now: neither render nor a test email shows it,
    as a campaign published now would not; `--as-of` shows the email as it was sent then."""
    import mailbox

    now_dir, then_dir = tmp_path / "now", tmp_path / "then"
    run("render", seed_path, "--out", now_dir, check=True)
    run("render", seed_path, "--out", then_dir, "--as-of", "2023-11-23T09:00", check=True)
    assert EVENT_TITLE not in (now_dir / "body.html").read_text() and not (now_dir / "event.ics").exists()
    assert EVENT_TITLE in (then_dir / "body.html").read_text() and (then_dir / "event.ics").exists()

    env = {"NEWSLETTER_STAFF_ALLOWLIST": "@staff.example.org"}
    run("send-test", seed_path, "--to", "now@staff.example.org", env=env, check=True)
    run("send-test", seed_path, "--to", "then@staff.example.org", "--as-of", "2023-11-23", env=env, check=True)
    box = {m["To"]: m for m in mailbox.Maildir(str(tmp_path / "var" / "outbox"), create=False)}
    bodies = {
        to.split("<")[1].split("@")[0]: email.message_from_bytes(bytes(m), policy=email.policy.default)
        .get_body(("html",))
        .get_content()
        for to, m in box.items()
    }
    assert EVENT_TITLE not in bodies["now"]
    assert EVENT_TITLE in bodies["then"]


def test_compose_as_of_none_is_now(settings, seed_path):
    ep = load_episode(seed_path, settings.tz)
    assert compose(ep, settings).ics is None
    assert compose(ep, settings, datetime(2023, 11, 23)).ics is not None
    html, _ = compose(ep, settings).personalised(Recipient("r@example.org"))
    assert EVENT_TITLE not in html
