"""The one clock for leases, heartbeats and due times: the database's.

Workers on several hosts disagree about the time; the database is the one place they all write
to, so every timestamp the ledger compares (a claim's heartbeat against the lease, a retry's due
time against "now", a delivery's `sent_at`) is taken there, inside the statement that uses it.
A worker whose clock runs minutes behind then neither looks dead while it sends nor sends a
retry early.

PostgreSQL: `clock_timestamp()` (the real time, not the transaction's start). SQLite: its own
`strftime('%Y-%m-%d %H:%M:%f', 'now')`, padded to the six-digit fraction SQLAlchemy writes, so
the text compares in order with the values already stored.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import DateTime, Engine, bindparam, func, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

# SQLite keeps DateTime columns as 'YYYY-MM-DD HH:MM:SS.ffffff' text (UTC here).
SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"
PG_NOW = "clock_timestamp()"


def _dialect(bind: Session | Engine | str) -> str:
    if isinstance(bind, str):
        return bind
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def db_now(bind: Session | Engine | str, offset: float = 0.0) -> ColumnElement:
    """The database's current time plus `offset` seconds, as a SQL expression of type DateTime.

    `bind` is a session, an engine or a dialect name ('postgresql', 'sqlite')."""
    if _dialect(bind) == "postgresql":
        now = literal_column(PG_NOW, DateTime(timezone=True))
        if not offset:
            return now
        return now + func.make_interval(0, 0, 0, 0, 0, 0, bindparam(None, float(offset)))
    if not offset:
        return literal_column(SQLITE_NOW, DateTime(timezone=True))
    modifier = f"{float(offset):+.6f} seconds"  # a formatted float: nothing to escape
    return literal_column(f"(strftime('%Y-%m-%d %H:%M:%f', 'now', '{modifier}') || '000')", DateTime(timezone=True))


def seconds_until(bind: Session, column: ColumnElement) -> ColumnElement:
    """SQL for `column - now` in seconds (a float), on the database's clock."""
    if _dialect(bind) == "postgresql":
        return func.extract("epoch", column - literal_column(PG_NOW))
    return (func.julianday(column) - func.julianday(text("'now'"))) * 86400.0


def read_now(session: Session):  # noqa: ANN201
    """The database's time now, as a timezone-aware datetime (for display and tests)."""
    from datetime import datetime

    value = session.scalar(select(db_now(session)))
    if isinstance(value, str):  # SQLite hands the text back through a literal column
        value = datetime.fromisoformat(value)
    if value is None:
        raise RuntimeError("the database returned no time")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
