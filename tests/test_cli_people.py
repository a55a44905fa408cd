"""The `newsletter` command as a person meets it: status with nothing or much to show, output
piped elsewhere, poll mistakes, and the files render writes."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

import pytest
from sqlalchemy import update

from worker.db import migrate, session_scope
from worker.models import Campaign, Delivery, utcnow

from .factories import cli, sample_episode_path, seed_subscribers

SECOND = """---
title: "Episode 4: A second one"
date: 2024-01-10
summary: Another episode.
---
A transcript paragraph with enough words in it to count for something here.
"""


@pytest.fixture
def db(settings):
    migrate(settings)
    seed_subscribers(3)


def test_status_with_no_campaign_says_so_and_exits_0(settings):
    proc = cli("status")
    assert proc.returncode == 0, proc.stderr
    assert "no campaigns yet" in proc.stdout and proc.stderr == ""
    st = json.loads(cli("status", "--json", check=True).stdout)
    assert st["campaign"] is None and st["recent"] == [] and st["no_worker"] is False


def test_status_lists_recent_campaigns_newest_first(db, tmp_path):
    second = tmp_path / "second.md"
    second.write_text(SECOND)
    cli("publish", sample_episode_path(), check=True)
    cli("publish", second, check=True)
    proc = cli("status", check=True)
    assert "recent campaigns" in proc.stdout
    listing = proc.stdout.split("recent campaigns", 1)[1]
    assert listing.index("episode-4-a-second-one") < listing.index("episode-3")
    st = json.loads(cli("status", "--json", check=True).stdout)
    assert [r["campaign"] for r in st["recent"]] == [2, 1] and st["campaign"] == 2
    assert st["recent"][0]["total"] == 3 and st["recent"][0]["sent"] == 0
    one = json.loads(cli("status", "1", "--json", check=True).stdout)
    assert one["campaign"] == 1 and one["recent"] == []


def test_status_says_when_no_worker_seems_to_be_running(db):
    cli("publish", sample_episode_path(), check=True)
    fresh = cli("status", check=True)  # just published: a worker may not have started yet
    assert "no worker" not in fresh.stdout
    assert json.loads(cli("status", "--json", check=True).stdout)["no_worker"] is False
    with session_scope() as s:  # an hour later, still nothing claimed or sent
        for c in s.query(Campaign):
            c.created_at, c.started_at = c.created_at - timedelta(hours=1), None
    proc = cli("status", check=True)
    line = next(x for x in proc.stdout.splitlines() if "no worker" in x)
    assert line.startswith("no worker seems to be running: 3 rows queued") and "celery -A worker worker" in line
    assert json.loads(cli("status", "--json", check=True).stdout)["no_worker"] is True
    with session_scope() as s:  # one row moves: a worker is at it
        first = s.query(Delivery).order_by(Delivery.id).first()
        s.execute(update(Delivery).where(Delivery.id == first.id).values(status="sent", sent_at=utcnow()))
    assert "no worker" not in cli("status", check=True).stdout


def test_piped_output_is_not_wrapped_at_80_columns(settings, tmp_path):
    out_dir = tmp_path / ("a-long-folder-name-" * 6)
    proc = cli("render", sample_episode_path(), "--out", out_dir, check=True)
    assert f"written to {out_dir}" in proc.stdout.splitlines()
    bad = tmp_path / ("bad-" * 30 + ".csv")
    bad.write_bytes(b"email,name\r\nnot-an-address,Nobody\r\n")
    proc = cli("subscribers", "import", bad)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert (
        lines[0]
        == f"{bad}: line 2: 'not-an-address' is not a valid email address (An email address must have an @-sign.)"
    )
    assert lines[-1].startswith("error: 1 row rejected") and lines[-1].endswith("needs an 'email' column.")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{tmp}/feeds/mistyped.xml", "{tmp}/feeds/mistyped.xml: no such file"),
        ("file://{tmp}/feeds/mistyped.xml", "file://{tmp}/feeds/mistyped.xml: no such file"),
        ("{tmp}", "{tmp}: not a file"),
        ("ftp://example.org/feed.xml", "ftp://example.org/feed.xml: only http, https and local files are polled"),
    ],
    ids=["path", "file-url", "folder", "scheme"],
)
def test_a_mistyped_poll_source_is_reported_not_saved(settings, tmp_path, source, message):
    source, message = source.format(tmp=tmp_path), message.format(tmp=tmp_path)
    proc = cli("poll", source)
    assert proc.returncode == 2 and proc.stderr == f"error: {message}\n"
    assert json.loads(cli("status", "--json", check=True).stdout)["feeds"] == []


def test_poll_errors_name_the_path_once(settings, tmp_path):
    not_a_feed = tmp_path / "notes.xml"
    not_a_feed.write_text("just some text, not XML")
    proc = cli("poll", not_a_feed)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"{not_a_feed}: ") and proc.stderr.count(str(not_a_feed)) == 1
    proc = cli("poll", f"file://{not_a_feed}")
    assert proc.returncode == 1 and proc.stderr.count(str(not_a_feed)) == 1


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_render_writes_files_with_the_umask_permissions(settings, tmp_path, umask):
    old = os.umask(umask)
    try:
        cli("render", sample_episode_path(), "--out", tmp_path / "out", check=True)
    finally:
        os.umask(old)
    for name in ("body.html", "body.txt", "message.eml"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o666 & ~umask, name
