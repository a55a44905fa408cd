"""What a new user types first and gets wrong: one line naming the option or setting, exit 2,
never a traceback (found by trying the README's commands on a fresh clone)."""

from __future__ import annotations

import socket

from .factories import cli


def one_line_error(proc, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_render_out_that_is_a_file_or_under_one(seed_path, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    line = one_line_error(cli("render", seed_path, "--out", a_file))
    assert line.startswith(f"error: --out {a_file}") and "not a folder" in line
    line = one_line_error(cli("render", seed_path, "--out", a_file / "sub"))
    assert line.startswith(f"error: --out {a_file / 'sub'}: cannot write there")
    assert a_file.read_text() == "mine"


def test_a_setting_that_cannot_work_is_an_input_error(seed_path, tmp_path):
    line = one_line_error(cli("bounces", "poll"))
    assert "NEWSLETTER_BOUNCE_MAILBOX" in line
    env = {"NEWSLETTER_STAFF_ALLOWLIST": "staff@example.com", "NEWSLETTER_MAIL_URL": "bogus://x"}
    line = one_line_error(cli("send-test", seed_path, "--to", "staff@example.com", env=env))
    assert "NEWSLETTER_MAIL_URL" in line
    env = {
        "NEWSLETTER_DKIM_SELECTOR": "s1",
        "NEWSLETTER_DKIM_DOMAIN": "example.com",
        "NEWSLETTER_DKIM_KEY_FILE": str(tmp_path / "missing.pem"),
    }
    assert "NEWSLETTER_DKIM_KEY_FILE" in one_line_error(cli("dns-records", env=env))


def test_poll_with_nothing_to_poll_says_what_to_set():
    line = one_line_error(cli("poll", env={"NEWSLETTER_FEEDS": "", "NEWSLETTER_EPISODES_DIR": ""}))
    assert "NEWSLETTER_FEEDS" in line and "NEWSLETTER_EPISODES_DIR" in line


def test_poll_of_a_missing_feed_file_says_so_once(tmp_path):
    missing = tmp_path / "feed.xml"
    line = one_line_error(cli("poll", missing))
    assert line.count(str(missing)) == 1 and "no such file" in line


def test_web_on_a_port_in_use_or_out_of_range():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(cli("web", "--port", port, timeout=60))
    assert line.startswith(f"error: --port {port}: cannot listen on 127.0.0.1:{port}")
    proc = cli("web", "--port", "99999")
    assert proc.returncode == 2 and "--port" in proc.stderr and "Traceback" not in proc.stderr


def test_status_lines_are_not_wrapped_when_piped(seed_path, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text("email,name\nada@example.com,Ada\n")
    cli("subscribers", "import", people, check=True)
    cli("publish", seed_path, check=True)  # no worker: it stays queued
    first = cli("status", check=True).stdout.splitlines()[0]
    assert len(first) > 80 and first.startswith("campaign 1 (") and "1 recipients" in first, first


def test_a_malformed_command_line_is_one_line_naming_the_argument():
    # Typer's own error box is several lines; the entry point makes it one, with where to look
    for args, words, command in [
        (("status", "abc"), "Invalid value for 'campaign'", "newsletter status"),
        (("status", "--nope"), "No such option: --nope", "newsletter status"),
        (("resend", "--uncertain"), "Missing argument 'campaign'", "newsletter resend"),
        (("campaigns", "pause", "0"), "0 is not a campaign id", "newsletter campaigns pause"),
        (("bogus",), "No such command 'bogus'", "newsletter"),
    ]:
        line = one_line_error(cli(*args))
        assert line.startswith("error: ") and words in line and line.endswith(f"(see `{command} --help`)"), line


def test_a_campaign_id_past_the_database_integer_is_refused_before_the_database():
    # INTEGER ids: PostgreSQL would fail the statement (a traceback), SQLite overflow in Python
    for args in (("status", "2147483648"), ("resend", "9223372036854775808", "--uncertain"), ("send", "2147483648")):
        line = one_line_error(cli(*args))
        assert "is not a campaign id (1 to 2147483647)" in line, line
