"""Engine, sessions and migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from .settings import Settings, get_settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def get_engine(settings: Settings | None = None) -> Engine:
    """The engine for the configured database URL, made once per URL and shared (thread-safe)."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _make_engine(url, settings.claim_lease, settings.sessions_per_worker)
            _engines[url] = engine
    return engine


def _make_engine(url: str, lease: float = 120.0, sessions: int = 1) -> Engine:
    if url.startswith("sqlite"):
        # WAL lets readers run beside the one writer; busy_timeout makes writers queue up
        # instead of failing with "database is locked".
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # noqa: ANN001
            # Take the write lock at BEGIN, so two claimers serialise instead of deadlocking
            # on a read-to-write upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # Let SQLAlchemy's BEGIN be ours (pysqlite's implicit transactions are off).
        @event.listens_for(engine, "connect", insert=True)
        def _autocommit(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None

        return engine
    # pool_pre_ping: a connection the server dropped (restart, pg_terminate_backend) is replaced
    # before use instead of failing the next statement.
    # Each sending session (worker/sending.py) may hold a connection for its failure records
    # while the batch, its ledger writer and the status check hold theirs.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5 + sessions,
        connect_args=pg_connect_args(url, lease),
    )


def pg_connect_args(url: str, lease: float) -> dict:
    """libpq options that bound how long either end of a connection believes in the other when
    the network between them goes silent (a partition sends no reset): `lease` is the claim
    lease in seconds, after which the sweeper takes a silent worker's claims.

    Client side (libpq, https://www.postgresql.org/docs/current/libpq-connect.html): TCP
    keepalives find a dead peer within ~5/8 of the lease while waiting for a reply, and
    `tcp_user_timeout` drops a connection whose sent data stays unacknowledged for half of it,
    so a worker cut off from the database fails its statement instead of waiting for the
    kernel's ~15 minutes. Server side (per-session settings passed in `options`): the same
    keepalives, so the server ends the session of a vanished client and releases its locks;
    `idle_in_transaction_session_timeout` ends a transaction left open by one; and
    `statement_timeout` bounds any one statement (publishing a million rows takes ~10 s)."""
    from sqlalchemy.engine import make_url

    idle, interval = max(1, int(lease / 4)), max(1, int(lease / 8))
    user_timeout_ms = max(1000, int(lease * 500))
    server = {
        "tcp_keepalives_idle": idle,
        "tcp_keepalives_interval": interval,
        "tcp_keepalives_count": 3,
        "tcp_user_timeout": user_timeout_ms,
        "idle_in_transaction_session_timeout": f"{int(max(lease, 30))}s",
        "statement_timeout": f"{int(max(2 * lease, 120))}s",
    }
    given = make_url(url).query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    # Ours first: PostgreSQL takes the last of a setting given twice, so the URL's own `options`
    # (a statement_timeout of the operator's choosing) win over these defaults.
    options = " ".join([*(f"-c {key}={value}" for key, value in server.items()), given]).strip()
    return {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": user_timeout_ms,
        "options": options,
    }


def dispose_engines() -> None:
    """Drop pooled connections (after fork, and between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    """A sessionmaker on `get_engine(settings)`; its sessions do not expire objects on commit."""
    return sessionmaker(get_engine(settings), expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine) -> bool:  # noqa: ANN001
    """Whether a Session or Engine is bound to PostgreSQL (else SQLite)."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def migrate(settings: Settings | None = None) -> None:
    """Bring the schema to the newest Alembic revision (safe to call every start)."""
    from alembic import command
    from alembic.config import Config

    settings = settings or get_settings()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    with get_engine(settings).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched. (SQLAlchemy types `Session.execute` as returning a
    `Result`; for those statements it is a `CursorResult`, which has the count.)"""
    return cast("CursorResult[Any]", result).rowcount
