"""Shared fixtures. Every test gets its own var/ folder, secret key and settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.settings import PROJECT_DIR, get_settings, reset_settings

SHARED = PROJECT_DIR.parent / "shared"
SEED = SHARED / "seed" / "000_f4ee1b94f1b598f5.txt"
CANIEMAIL = SHARED / "caniemail" / "caniemail-features.json"
FEEDS = SHARED / "feeds" / "podcastparser"

# Values the tests pin; anything else comes from config/newsletter.toml.
TEST_ENV = {
    "NEWSLETTER_SECRET_KEY": "test-secret-key",
    "NEWSLETTER_BASE_URL": "https://news.example.org",
    "NEWSLETTER_FROM_ADDR": "The Roundup <newsletter@news.example.org>",
    "NEWSLETTER_LIST_ID": "roundup.news.example.org",
}


@pytest.fixture(autouse=True)
def settings_env(tmp_path, monkeypatch):
    """Isolated settings: a fresh var/ dir, SQLite DB and Maildir outbox under tmp_path."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_") and key != "NEWSLETTER_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    var = tmp_path / "var"
    var.mkdir()
    env = {
        **TEST_ENV,
        "NEWSLETTER_VAR_DIR": str(var),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{var}/newsletter.db",
        "NEWSLETTER_BROKER_URL": f"sqla+sqlite:///{var}/broker.db",
        "NEWSLETTER_MAIL_URL": f"maildir:{var}/outbox",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_settings()
    yield env
    reset_settings()


@pytest.fixture
def settings(settings_env):
    return get_settings()


@pytest.fixture
def seed_path() -> Path:
    assert SEED.exists(), f"the sample episode is missing: {SEED}"
    return SEED
