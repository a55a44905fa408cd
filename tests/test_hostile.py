"""Hostile input: nothing crashes, nothing leaks, nothing half-happens."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from worker.db import session_scope
from worker.episodes import load_episode
from worker.feeds import poll_feed
from worker.publish import create_campaign
from worker.settings import get_settings, reset_settings
from worker.subscribers import import_csv

from .factories import cli as run
from .factories import seed_subscribers

STAFF_TOKEN = "schemathesis-staff-token"


@pytest.fixture
def api_schema(settings_env, monkeypatch, seed_path):
    from worker.db import dispose_engines, migrate
    from worker.web import create_app

    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", STAFF_TOKEN)
    monkeypatch.setenv("NEWSLETTER_STAFF_ALLOWLIST", "@staff.example.org")
    reset_settings()
    dispose_engines()
    migrate(get_settings())
    seed_subscribers(2)
    with session_scope() as s:
        create_campaign(s, load_episode(seed_path, get_settings().tz), get_settings(), draft=True)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(get_settings()))


def test_no_server_errors(api_schema):
    """Every operation, with generated parameters and bodies, anonymous and as staff: never a 5xx.
    (Driven through Hypothesis directly: schemathesis' pytest plugin does not load under pytest 9.)"""
    from hypothesis import given

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    seen_statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @hsettings(
            max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def check(case) -> None:  # noqa: ANN001
            for headers in ({}, {"Authorization": f"Bearer {STAFF_TOKEN}"}):
                response = case.call(headers=headers)
                seen_statuses.add(response.status_code)
                assert response.status_code < 500, (
                    case.method,
                    case.formatted_path,
                    response.status_code,
                    response.text[:300],
                )

        check()
    assert {200, 401} <= seen_statuses  # the generator reached both sides of the auth wall


def test_campaign_ids_beyond_the_database_integer(api_schema):
    """Found by the run above: an id past 64 bits used to reach SQLite and fail with a 500."""
    from fastapi.testclient import TestClient

    from worker.web import create_app

    with TestClient(create_app(get_settings())) as c:
        r = c.get(f"/campaigns/{2**70}", headers={"Authorization": f"Bearer {STAFF_TOKEN}"})
        assert r.status_code == 422


def test_huge_episode_file_is_refused(tmp_path):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as fh:
        fh.write(b"Title\n\n1 Jan 2024\n\n")
        fh.truncate(50 * 1024 * 1024)
    proc = run("render", big, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "50 MB" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "date_line",
    ["1 Jan 9999", "31 Feb 2024", "0 Jan 2024", "2024-13-01", "1 Jan 0001", "99999999999999999999 Jan 2024"],
)
def test_absurd_dates_exit_2(tmp_path, date_line):
    p = tmp_path / "ep.txt"
    p.write_text(f"Title\n\n{date_line}\n\nIntro.\n")
    proc = run("render", p, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "ep.txt" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "encoding, ok", [("utf-16", True), ("utf-8-sig", True), ("cp1252", False), ("shift_jis", False)]
)
def test_encodings(tmp_path, encoding, ok):
    p = tmp_path / "ep.txt"
    p.write_bytes("Tïtle – ¥ ’quote’\n\n1 Jan 2024\n\nIntro café.\n".encode(encoding, errors="replace"))
    proc = run("render", p, "--out", tmp_path / "out")
    assert (proc.returncode == 0) is ok, proc.stderr
    if not ok:
        assert "not valid UTF-8" in proc.stderr


def test_ten_thousand_links(tmp_path):
    links = "\n".join(f"Link {i} – https://example.com/{i}" for i in range(10_000))
    p = tmp_path / "ep.txt"
    p.write_text(f"Title\n\n1 Jan 2024\n\nIntro.\n\nLinks & Sources\n\n{links}\n\nTranscript here.\n")
    proc = run("render", p, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "out" / "body.html").read_bytes()
    assert len(html) < 60_000 and b"more links on the episode page" in html


def test_header_injection_through_the_cli(tmp_path, seed_path):
    proc = run("render", seed_path, "--out", tmp_path / "o", "--to", "a@example.org\r\nBcc: b@example.org")
    assert proc.returncode == 2
    ok = run("render", seed_path, "--out", tmp_path / "o", "--to", "a@example.org", "--name", "X\r\nBcc: b@example.org")
    assert ok.returncode == 0
    head = (tmp_path / "o" / "message.eml").read_bytes().split(b"\r\n\r\n")[0]
    assert b"\r\nBcc:" not in head


def test_hundred_thousand_row_csv(database, tmp_path):
    lines = ["email,name"]
    for i in range(100_000):
        if i % 1000 == 0:
            lines.append(f"broken{i},=cmd|' /C calc'!A0")
        elif i % 997 == 0:
            lines.append(f"USER{i - 1}@Example.org,Dup")
        else:
            lines.append(f"user{i}@example.org,User {i}")
    p = tmp_path / "big.csv"
    p.write_text("\n".join(lines) + "\n")
    with session_scope() as s:
        report = import_csv(s, p)
    assert len(report.bad) == 100
    assert report.bad[0][0] == 2  # line numbers are the file's
    assert report.added + report.duplicates + len(report.bad) == 100_000
    assert report.duplicates > 0
    from sqlalchemy import func, select

    from worker.models import Subscriber

    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == report.added


def test_huge_feed_is_refused(database, tmp_path):
    big = tmp_path / "feed.xml"
    with open(big, "wb") as fh:
        fh.write(b"<rss><channel>")
        fh.truncate(25 * 1024 * 1024)
    report = poll_feed(str(big), get_settings())
    assert report.error and "larger than" in report.error
