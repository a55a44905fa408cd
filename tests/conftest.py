"""Shared fixtures. Every test gets its own var/ folder, secret key and settings."""

from __future__ import annotations

import os
import shutil
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


# -- unit and integration tests -------------------------------------------------------------

# A test that uses any of these (directly or through another fixture), or runs on PostgreSQL,
# is an integration test; every other test is a unit test: one process, no servers, seconds.
# A test that starts an outside program itself says so with @pytest.mark.integration.
INTEGRATION_FIXTURES = frozenset({"redis_url", "postgres_url", "stack", "browser"})


def pytest_collection_modifyitems(config, items):  # noqa: ARG001 - pytest's hook signature
    for item in items:
        if item.get_closest_marker("integration") or item.get_closest_marker("unit"):
            continue
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database") == "postgres"
        if on_postgres or INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


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
def fast_retries(monkeypatch):
    """Retries, sweeps and leases in seconds, small batches: campaigns with failures finish fast."""
    monkeypatch.setenv("NEWSLETTER_RETRY_BASE_DELAY", "0.5")
    monkeypatch.setenv("NEWSLETTER_RETRY_MAX_DELAY", "1")
    monkeypatch.setenv("NEWSLETTER_SWEEP_INTERVAL", "1")
    monkeypatch.setenv("NEWSLETTER_CLAIM_LEASE", "4")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "25")
    # Several sessions per process, but few: a cold batch of many sessions on a loaded 2-core
    # machine can outlast a 4 s lease, and a lapsed lease stops the batch.
    monkeypatch.setenv("NEWSLETTER_SESSIONS_PER_WORKER", "4")
    monkeypatch.setenv("NEWSLETTER_SESSIONS_AUTO", "false")  # all 4, even on loopback
    reset_settings()


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


# -- the web app and a browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def live(database, monkeypatch, tmp_path):
    """The web app served by uvicorn on a free port; yields (base URL, Maildir outbox path).
    Staff credentials: `factories.BROWSER_STAFF_TOKEN`."""
    import threading

    import uvicorn

    from worker.web import create_app

    from .factories import BROWSER_STAFF_TOKEN
    from .smtp_server import free_port
    from .stack import wait_for

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("NEWSLETTER_BASE_URL", base)
    monkeypatch.setenv("NEWSLETTER_STAFF_TOKEN", BROWSER_STAFF_TOKEN)
    monkeypatch.setenv("NEWSLETTER_MAIL_URL", f"maildir:{tmp_path}/outbox")
    reset_settings()
    server = uvicorn.Server(
        uvicorn.Config(create_app(get_settings()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "the web server to start")
    yield base, tmp_path / "outbox"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    """Debian's headless Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def moto_ses(monkeypatch):
    """SES v2 through moto's server mode on loopback, emptied first; yields its URL."""
    from moto.server import ThreadedMotoServer

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import httpx

    httpx.post(f"{url}/moto-api/reset")  # moto's state is per process: start each test empty
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", url)
    yield url
    server.stop()
