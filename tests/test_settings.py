"""Settings are checked at start: a value that cannot work is one line naming the variable, exit 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from worker.errors import SettingsError
from worker.settings import get_settings, reset_settings

from .factories import cli

BAD = [
    # (variable, value, words the one line must hold)
    ("NEWSLETTER_BASE_URL", "news.example.org", "absolute http(s) URL"),
    ("NEWSLETTER_BASE_URL", "ftp://news.example.org", "absolute http(s) URL"),
    ("NEWSLETTER_BASE_URL", "https://", "absolute http(s) URL"),
    ("NEWSLETTER_TIMEZONE", "Europe/Londn", "unknown time zone 'Europe/Londn'"),
    ("NEWSLETTER_TIMEZONE", "BST", "unknown time zone"),
    ("NEWSLETTER_BATCH_SIZE", "ten", "expected a whole number, got 'ten'"),
    ("NEWSLETTER_BATCH_SIZE", "0", "must be at least 1"),
    ("NEWSLETTER_SEND_RATE", "fast", "expected a number, got 'fast'"),
    ("NEWSLETTER_SEND_RATE", "-5", "must be at least 0"),
    ("NEWSLETTER_CLAIM_LEASE", "0", "must be more than 0"),
    ("NEWSLETTER_SESSIONS_PER_WORKER", "100000", "must be at most 512"),
    ("NEWSLETTER_SESSIONS_PER_WORKER", "0", "must be at least 1"),
    ("NEWSLETTER_RETRY_MAX_DELAY", "7200", "must be less than 1800"),
    ("NEWSLETTER_AUTO_SEND", "sometimes", "expected true or false"),
    ("NEWSLETTER_FROM_ADDR", "newsletter", "expected an email address"),
    ("NEWSLETTER_DATABASE_URL", "newsletter.db", "expected a URL"),
    ("NEWSLETTER_DATABASE_URL", "mysql://u@host/db", "mysql:// is not supported here"),
    ("NEWSLETTER_DATABASE_URL", "postgresql+psycopg2://u@host/db", "postgresql+psycopg2:// is not supported"),
    ("NEWSLETTER_BROKER_URL", "localhost:6379", "expected a broker URL"),
    ("NEWSLETTER_MAIL_URL", "carrier-pigeon://x", "expected a URL starting smtp:"),
    ("NEWSLETTER_MAIL_URL", "smtp://", "names no server"),
    ("NEWSLETTER_MAIL_URL", "maildir:", "names no folder"),
    ("NEWSLETTER_SEND_RATE", "inf", "expected a finite number"),
    ("NEWSLETTER_BATCH_SIZE", "100000", "must be at most 10000"),
    ("NEWSLETTER_TEMPLATES_DIR", "/nonexistent/templates", "no email/ folder"),
    ("NEWSLETTER_CONFIG_FILE", "/nonexistent/newsletter.toml", "no such file"),
]


@pytest.mark.parametrize(("variable", "value", "words"), BAD, ids=[f"{v}={x}" for v, x, _ in BAD])
def test_a_bad_setting_names_its_variable(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    reset_settings()
    with pytest.raises(SettingsError) as info:
        get_settings()
    line = str(info.value)
    assert line.startswith(f"{variable}: ") and words in line and "\n" not in line


def test_secrets_are_never_echoed(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql+psycopg://u:hunter2@:x")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "many")
    reset_settings()
    with pytest.raises(SettingsError) as info:
        get_settings()
    line = str(info.value)
    assert "hunter2" not in line and "\n" not in line
    # the first bad one leads the line and the other is named: both fixed in one go
    assert {"NEWSLETTER_DATABASE_URL", "NEWSLETTER_BATCH_SIZE"} <= set(re.findall(r"NEWSLETTER_\w+", line))
    assert "also bad: NEWSLETTER_" in line


def test_a_bad_value_in_the_config_file_names_the_file_and_key(tmp_path, monkeypatch):
    config = tmp_path / "newsletter.toml"
    config.write_text('base_url = "https://news.example.org"\nbatch_size = "lots"\n')
    monkeypatch.setenv("NEWSLETTER_CONFIG_FILE", str(config))
    monkeypatch.delenv("NEWSLETTER_BASE_URL")
    reset_settings()
    with pytest.raises(SettingsError, match=rf"^{config}: batch_size: expected a whole number"):
        get_settings()
    config.write_text('base_url = "https://news.example.org"\nbatch_size = "lots"\nsend_rate = "fast"\n')
    reset_settings()
    with pytest.raises(SettingsError, match=rf"^{config}: batch_size: .* \(also bad: send_rate\)$"):
        get_settings()
    config.write_text("base_url = \n")
    reset_settings()
    with pytest.raises(SettingsError, match=rf"^{config}: not valid TOML"):
        get_settings()


def test_good_values_are_normalised(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_BASE_URL", " https://news.example.org/ ")
    monkeypatch.setenv("NEWSLETTER_SEND_RATE", "2.5")
    reset_settings()
    s = get_settings()
    assert s.base_url == "https://news.example.org" and s.send_rate == 2.5


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_plain_postgres_url_gets_the_installed_driver(monkeypatch, scheme):
    # what hosting providers and libpq tools hand out; SQLAlchemy alone would not load it
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"{scheme}://u:pw@db.example:5433/news?sslmode=require")
    reset_settings()
    assert get_settings().database_url == "postgresql+psycopg://u:pw@db.example:5433/news?sslmode=require"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("NEWSLETTER_BASE_URL", "news.example.org", "NEWSLETTER_BASE_URL: expected an absolute http(s) URL"),
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "NEWSLETTER_TIMEZONE: unknown time zone"),
        ("NEWSLETTER_BATCH_SIZE", "1e3", "NEWSLETTER_BATCH_SIZE: expected a whole number"),
        # Nothing listens on port 1: the database cannot be reached. The password is not shown.
        (
            "NEWSLETTER_DATABASE_URL",
            "postgresql+psycopg://nl:s3cret@127.0.0.1:1/nl",
            "NEWSLETTER_DATABASE_URL: cannot connect to postgresql+psycopg://nl:***@127.0.0.1:1/nl",
        ),
    ],
)
def test_the_command_stops_with_one_line_and_exit_2(variable, value, words):
    commands = [["status"], ["subscribers", "count"]]
    if "DATABASE" not in variable:  # render needs no database
        commands.append(["render", "x.txt", "--out", "o"])
    for args in commands:
        proc = cli(*args, env={variable: value})
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip() == f"error: {words}" or (
            proc.stderr.startswith(f"error: {words}") and proc.stderr.count("\n") == 1
        ), proc.stderr
        assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr


def test_an_unreachable_sqlite_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = cli("status", env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{blocker}/sub/newsletter.db"})
    assert proc.returncode == 2 and proc.stderr.startswith("error: NEWSLETTER_DATABASE_URL: cannot connect")
    assert proc.stderr.count("\n") == 1


def test_the_celery_worker_stops_with_one_line_and_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "NEWSLETTER_SEND_RATE": "x"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: NEWSLETTER_SEND_RATE: expected a number, got 'x'"
