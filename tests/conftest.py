"""Shared fixtures. Every test gets its own var/ folder, secret key and settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.settings import get_settings, reset_settings

# Everything the tests read is committed under tests/fixtures/ (see its README): the suite needs
# nothing beside the clone.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED = FIXTURES / "episodes" / "sample-episode.txt"
CANIEMAIL = FIXTURES / "caniemail" / "caniemail-features.json"
FEEDS = FIXTURES / "feeds" / "podcastparser"

# Values the tests pin; anything else comes from worker/config/newsletter.toml.
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


# -- real services ---------------------------------------------------------------------------

REDIS_TEST_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
POSTGRES_TEST_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def redis_url(monkeypatch):
    """A Redis database of the tests' own, emptied first; also the broker and the rate limiter."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.ping()  # fails loudly when Redis is not running: ./dev test starts it
    client.flushdb()
    monkeypatch.setenv("NEWSLETTER_BROKER_URL", REDIS_TEST_URL)
    reset_settings()
    yield REDIS_TEST_URL
    client.flushdb()


@pytest.fixture
def postgres_url(monkeypatch):
    """A fresh schema in the PostgreSQL `test` database, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    from worker.db import dispose_engines

    schema = f"nl_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_TEST_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{POSTGRES_TEST_URL}?options=-csearch_path%3D{schema}"
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    reset_settings()
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, settings_env):
    """Runs the test once on SQLite and once on PostgreSQL, with the schema migrated."""
    from worker.db import dispose_engines, migrate

    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    dispose_engines()
    migrate(get_settings())
    yield request.param
    dispose_engines()


@pytest.fixture
def smtp_server(monkeypatch):
    from .smtp_server import SMTPServer

    with SMTPServer() as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        reset_settings()
        yield server


@pytest.fixture
def stack(tmp_path):
    from .stack import Stack

    logs = tmp_path / "logs"
    logs.mkdir()
    s = Stack(logs)
    yield s
    s.stop()
