"""The `newsletter` command as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import email
import email.policy
import json

import icalendar

from worker.message import without_date

from .factories import cli as run


def test_render_writes_the_four_files(seed_path, tmp_path):
    out = tmp_path / "out"
    proc = run(
        "render",
        seed_path,
        "--out",
        out,
        "--to",
        "reader@example.org",
        "--name",
        "Reader",
        "--as-of",
        "2023-11-23",
        check=True,
    )
    for name in ("body.html", "body.txt", "message.eml", "event.ics"):
        assert (out / name).stat().st_size > 0
        assert name in proc.stdout
    msg = email.message_from_bytes((out / "message.eml").read_bytes(), policy=email.policy.default)
    assert msg["To"] == "Reader <reader@example.org>"
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == (out / "body.html").read_text()
    icalendar.Calendar.from_ical((out / "event.ics").read_bytes())
    assert "Hi Reader," in (out / "body.txt").read_text()


def test_render_is_repeatable(seed_path, tmp_path):
    run("render", seed_path, "--out", tmp_path / "a", check=True)
    run("render", seed_path, "--out", tmp_path / "b", check=True)
    a = (tmp_path / "a" / "message.eml").read_bytes()
    b = (tmp_path / "b" / "message.eml").read_bytes()
    assert without_date(a) == without_date(b)


def test_render_as_of_after_the_event(seed_path, tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "event.ics").write_text("stale")
    run("render", seed_path, "--out", out, "--as-of", "2023-12-01", check=True)
    assert not (out / "event.ics").exists()
    assert "A Whole Team Approach" not in (out / "body.html").read_text()


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    cases = {
        "empty.txt": b"",
        "binary.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
        "latin1.txt": "T\n\n1 Jan 2024\n\ncaf\xe9\n".encode("latin-1"),
        "nodate.txt": b"Title only\n\nno date here\n",
    }
    for name, data in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        out = tmp_path / f"out-{name}"
        proc = run("render", src, "--out", out)
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in proc.stderr, proc.stderr
        assert not out.exists()


def test_missing_file_and_bad_options_exit_2(seed_path, tmp_path):
    assert run("render", tmp_path / "nope.txt", "--out", tmp_path / "o").returncode == 2
    bad_to = run("render", seed_path, "--out", tmp_path / "o", "--to", "not-an-address")
    assert bad_to.returncode == 2 and "--to" in bad_to.stderr
    bad_as_of = run("render", seed_path, "--out", tmp_path / "o", "--as-of", "soon")
    assert bad_as_of.returncode == 2 and "--as-of" in bad_as_of.stderr
    assert run("render").returncode == 2


def test_demo_sends_the_sample_into_the_maildir_outbox(settings_env, tmp_path):
    """The README's main command, on embedded defaults: SQLite, SQLite broker, Maildir."""
    import mailbox

    proc = run("demo")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    outbox = tmp_path / "var" / "outbox"
    assert str(outbox / "new") in proc.stdout
    messages = list(mailbox.Maildir(str(outbox), create=False))
    assert sorted(m["To"] for m in messages) == sorted(
        [
            "Ada Lovelace <ada@example.com>",
            "Grace Hopper <grace@example.com>",
            "Alan Turing <alan@example.com>",
            "Katherine Johnson <katherine@example.com>",
            "Tim Berners-Lee <tim@example.com>",
        ]
    )
    assert all(m["Subject"] == "Public Sector Technology Roundup: Episode 3" for m in messages)
    # running it again sends nothing more
    again = run("demo")
    assert again.returncode == 0 and "already published" in again.stdout
    assert len(list(mailbox.Maildir(str(outbox), create=False))) == 5


def test_publish_twice_status_json_and_resend(settings_env, seed_path, tmp_path):
    subs = tmp_path / "s.csv"
    subs.write_text("email,name\na@example.org,A\nb@example.org,B\n")
    assert run("subscribers", "import", subs).returncode == 0
    first = run("publish", seed_path)
    assert first.returncode == 0 and "campaign 1" in first.stdout and "2 subscribers" in first.stdout
    second = run("publish", seed_path)
    assert second.returncode == 0 and "already published as campaign 1" in second.stdout
    st = json.loads(run("status", "1", "--json").stdout)
    assert st["campaign"] == 1 and st["episode"] == "2023-11-23-public-sector-technology-roundup-episode-3"
    assert st["total"] == 2 and st["queued"] == 2
    for key in ("sent", "queued", "claimed", "sending", "retry", "failed", "uncertain", "skipped"):
        assert key in st
    assert run("status", "99").returncode == 2
    assert run("resend", "1").returncode == 2  # says what to resend
    resend = run("resend", "1", "--uncertain")
    assert resend.returncode == 0 and "0 uncertain" in resend.stdout
    assert run("publish", tmp_path / "missing.txt").returncode == 2


def test_send_test_only_to_the_allowlist(settings_env, seed_path, tmp_path):
    import mailbox

    env = {"NEWSLETTER_STAFF_ALLOWLIST": "@staff.example.org"}
    refused = run("send-test", seed_path, "--to", "me@staff.example.org", "--to", "reader@example.org", env=env)
    assert refused.returncode == 2 and "reader@example.org is not in NEWSLETTER_STAFF_ALLOWLIST" in refused.stderr
    outbox = tmp_path / "var" / "outbox"
    assert not outbox.exists() or not list(mailbox.Maildir(str(outbox), create=False))  # no partial send
    ok = run("send-test", seed_path, "--to", "me@staff.example.org", env=env)
    assert ok.returncode == 0, ok.stderr
    [msg] = list(mailbox.Maildir(str(outbox), create=False))
    assert msg["Subject"] == "[TEST] Public Sector Technology Roundup: Episode 3"
    assert msg["To"] == "Sample Subscriber <me@staff.example.org>"
    assert run("send-test", seed_path, "--to", "me@staff.example.org").returncode == 2  # empty allowlist
