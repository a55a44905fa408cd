"""The per-message ledger write of the batch loop, at driver level: one writer per database.

Before each message: mark the previous one sent (with its Message-ID) and this one sending, and
(once a second) move the claim's heartbeat. Every transition is conditional on the row's claim
token and current status, so a worker whose claim was swept cannot overwrite anyone. 'uncertain'
is accepted for "sent": a sweeper may have given up on a slow-but-alive worker.

This is the hot path of a campaign (through the ORM it cost ~2.7 ms a message), hence raw
statements rather than the ORM.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine

from ..clock import SQLITE_NOW
from ..errors import ClaimExpired
from ..lease import Lease, await_reply
from ..models import DeliveryStatus

D = DeliveryStatus
# The SQL's status literals, from the enum: 'sent', 'sending', 'uncertain', 'claimed'.
_S = {"sent": D.SENT.value, "sending": D.SENDING.value, "uncertain": D.UNCERTAIN.value, "claimed": D.CLAIMED.value}


class ProgressWriter(ABC):
    """Records a batch's progress one message at a time; `open(engine)` picks the database's writer.

    Use: `ours = writer.start(token, next_id, finished)` before a message (`finished` is the
    previous message's (id, Message-ID) or None), `ours()` before its content leaves (False: the
    row was taken over, send nothing), `writer.sent(token, id, mid)` for the batch's last message,
    then `close()`.
    """

    # The heartbeat only has to move well within the claim lease (minutes): once a second is
    # plenty, and saves a row update per message.
    BEAT_EVERY = 1.0

    def __init__(self, conn: Connection):
        self._conn = conn
        self._last_beat = 0.0

    @staticmethod
    def open(bind: Engine | Connection, lease: Lease | None = None) -> ProgressWriter:
        """A writer on its own autocommit connection from the pool of `bind`'s engine. `lease`
        (PostgreSQL): how long the batch's claim is surely ours (worker/lease.py); `ours()` raises
        ClaimExpired rather than wait for the database past it."""
        engine = bind if isinstance(bind, Engine) else bind.engine
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "postgresql":
            return PostgresProgress(conn, lease)
        return SqliteProgress(conn)

    def _beat_due(self) -> bool:
        if time.monotonic() - self._last_beat < self.BEAT_EVERY:
            return False
        self._last_beat = time.monotonic()
        return True

    @abstractmethod
    def start(self, token: str, delivery_id: int, finished: tuple[int, str] | None) -> Callable[[], bool]:
        """Record `finished` (id, Message-ID) as sent and claim `delivery_id` as sending. Returns
        a callable that waits for the write and says whether the row is ours to send."""

    @abstractmethod
    def sent(self, token: str, delivery_id: int, mid: str) -> None:
        """Record one delivery as sent with its Message-ID (the batch's last message)."""

    def write_group(self, writes: list[tuple[str, int | None, tuple[int, str] | None]]) -> set[int]:
        """Several sessions' writes at once: each (token, next id or None, finished (id,
        Message-ID) or None). Returns the next ids that are ours to send. This default writes
        them one by one; a database with round trips does better (`PostgresProgress`)."""
        ours: set[int] = set()
        for token, next_id, finished in writes:
            if next_id is None:
                if finished:
                    self.sent(token, *finished)
            elif self.start(token, next_id, finished)():
                ours.add(next_id)
        return ours

    def close(self) -> None:
        """Give the connection back to the pool."""
        self._conn.close()


class PostgresProgress(ProgressWriter):
    """One prepared statement (a CTE) per message, in autocommit.

    `start` only sends the statement and returns a callable that waits for its commit: the sender
    builds the message and has the mail server accept the envelope meanwhile, and calls it before
    any content leaves, so the row is durably 'sending' first and the commit (a WAL flush)
    overlaps the SMTP round trip instead of adding to it.
    """

    PG = """
        WITH done AS (
            UPDATE deliveries SET status = '{sent}', message_id = $4, sent_at = clock_timestamp(),
                   last_error = NULL, updated_at = clock_timestamp()
            WHERE id = $3 AND claim_token = $1 AND status IN ('{sending}', '{uncertain}')
        ){beat}
        UPDATE deliveries SET status = '{sending}', attempts = attempts + 1, updated_at = clock_timestamp()
        WHERE id = $2 AND claim_token = $1 AND status = '{claimed}'
        RETURNING id"""
    PG_BEAT = """, beat AS (
            UPDATE claims SET heartbeat_at = clock_timestamp() WHERE token = $1
        )"""
    PG_SENT = """
        UPDATE deliveries SET status = '{sent}', message_id = $3, sent_at = clock_timestamp(),
               last_error = NULL, updated_at = clock_timestamp()
        WHERE id = $2 AND claim_token = $1 AND status IN ('{sending}', '{uncertain}')"""
    # Many sessions' writes in one statement, so one commit (one WAL flush) for all of them:
    # $1-$3 the rows to mark sent (ids, claim tokens, Message-IDs), $4 the claims whose heartbeat
    # moves, $5-$6 the rows to mark sending (ids, claim tokens).
    PG_GROUP = """
        WITH done AS (
            UPDATE deliveries d SET status = '{sent}', message_id = v.mid, sent_at = clock_timestamp(),
                   last_error = NULL, updated_at = clock_timestamp()
            FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, token, mid)
            WHERE d.id = v.id AND d.claim_token = v.token AND d.status IN ('{sending}', '{uncertain}')
        ), beat AS (
            UPDATE claims SET heartbeat_at = clock_timestamp() WHERE token = ANY($4::text[])
        )
        UPDATE deliveries d SET status = '{sending}', attempts = d.attempts + 1, updated_at = clock_timestamp()
        FROM unnest($5::bigint[], $6::text[]) AS n(id, token)
        WHERE d.id = n.id AND d.claim_token = n.token AND d.status = '{claimed}'
        RETURNING d.id"""
    # Prepared once per database connection (the pool keeps connections across batches).
    STATEMENTS = {
        b"nl_progress_beat": PG.format(beat=PG_BEAT, **_S),
        b"nl_progress": PG.format(beat="", **_S),
        b"nl_progress_sent": PG_SENT.format(**_S),
        b"nl_progress_group": PG_GROUP.format(**_S),
    }

    def __init__(self, conn: Connection, lease: Lease | None = None):
        super().__init__(conn)
        self._lease = lease
        self._answer: list[bool] | None = None  # where the reply of the statement in flight goes
        self._pq: Any = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]  # psycopg's libpq
        self._prepare()

    def _prepare(self) -> None:
        """Prepare the statements this connection's backend does not hold. Asked of the server
        every time (one round trip a batch), not remembered: psycopg's rollback() sends
        DEALLOCATE ALL once it has prepared statements of its own, and a pooled connection
        passes through ORM sessions between batches. While the writer holds the connection,
        nobody else can deallocate them."""
        held = self._check(self._pq.exec_(b"SELECT name FROM pg_prepared_statements WHERE name LIKE 'nl\\_progress%'"))
        have = {held.get_value(i, 0) for i in range(held.ntuples)}
        for name, sql in self.STATEMENTS.items():
            if name not in have:
                self._check(self._pq.prepare(name, sql.encode()))

    def _check(self, result: Any) -> Any:
        from psycopg import errors, pq

        if result is None:
            raise errors.OperationalError(self._pq.get_error_message())
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise errors.error_from_result(result)
        return result

    def _committed(self, what: str) -> Any:
        """The result of the statement in flight, once its transaction has committed; raises
        the database's error otherwise (ClaimExpired past the lease, the connection given up).

        In autocommit the server sends a statement's rows and CommandComplete *before* it
        commits, at Sync, and says so with ReadyForQuery (PostgreSQL protocol, "Extended
        Query"). A backend that dies in between (pg_terminate_backend, a crash) or a commit
        that fails (a deferred constraint) rolls the statement back after libpq has handed
        over its rows. So every result up to the end is read, an error after the rows wins, and
        the connection must be idle at the end: rows a commit never kept are not a go-ahead."""
        from psycopg import errors, pq

        first: Any = None
        failed: Any = None
        while True:
            if self._lease is not None:
                try:
                    await_reply(self._pq, self._lease, what)  # the commit's wait counts too
                except ClaimExpired:
                    self._abandon()
                    raise
            result = self._pq.get_result()
            if result is None:
                break
            if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                failed = failed or result
            elif first is None:
                first = result
        if failed is not None:
            raise errors.error_from_result(failed)
        if first is None or self._pq.transaction_status != pq.TransactionStatus.IDLE:
            raise errors.OperationalError(
                f"no commit confirmed for {what}: {self._pq.get_error_message() or 'the connection was lost'}"
            )
        return first

    def start(self, token: str, delivery_id: int, finished: tuple[int, str] | None) -> Callable[[], bool]:
        self._settle()  # a previous start nobody waited for (an error path)
        prev, mid = finished if finished else (None, None)
        beat = self._beat_due()
        name = b"nl_progress_beat" if beat else b"nl_progress"
        sent_at = time.monotonic()
        self._pq.send_query_prepared(
            name,
            [
                token.encode(),
                str(delivery_id).encode(),
                None if prev is None else str(prev).encode(),
                None if mid is None else mid.encode(),
            ],
        )
        answer: list[bool] = []
        self._answer = answer

        def ours() -> bool:
            if self._answer is answer:
                self._settle(f"delivery {delivery_id}")
            if not answer:
                raise RuntimeError("the ledger write for this message failed")
            if answer[0] and self._lease is not None:
                if beat:  # the heartbeat ran with the row's move, after `sent_at`
                    self._lease.renew(sent_at)
                self._lease.check(f"delivery {delivery_id}")
            return answer[0]

        return ours

    def _settle(self, what: str = "the previous delivery") -> None:
        """Read the reply of the statement in flight, if any, up to its commit (`_committed`)."""
        answer, self._answer = self._answer, None
        if answer is None:
            return
        answer.append(self._committed(what).ntuples == 1)

    def sent(self, token: str, delivery_id: int, mid: str) -> None:
        self._settle()
        self._pq.send_query_prepared(b"nl_progress_sent", [token.encode(), str(delivery_id).encode(), mid.encode()])
        self._committed(f"delivery {delivery_id}")

    def write_group(self, writes: list[tuple[str, int | None, tuple[int, str] | None]]) -> set[int]:
        """One statement and one commit for every write; with a lease, raises ClaimExpired rather
        than wait for the database past it (the connection is then given up)."""
        self._settle()
        done = [(token, f) for token, _, f in writes if f]
        nexts = [(token, n) for token, n, _ in writes if n is not None]
        beat = self._beat_due()
        sent_at = time.monotonic()
        self._pq.send_query_prepared(
            b"nl_progress_group",
            [
                _pg_array(str(f[0]) for _, f in done),
                _pg_array(t for t, _ in done),
                _pg_array(f[1] for _, f in done),
                _pg_array(sorted({t for t, _, _ in writes}) if beat else []),
                _pg_array(str(n) for _, n in nexts),
                _pg_array(t for t, _ in nexts),
            ],
        )
        result = self._committed(f"{len(writes)} deliveries")
        ours = {int(result.get_value(i, 0)) for i in range(result.ntuples)}
        if ours and self._lease is not None:
            if beat:
                self._lease.renew(sent_at)
            self._lease.check(f"{len(writes)} deliveries")
        return ours

    def _abandon(self) -> None:
        """Give up on the connection: its reply may never come, and nobody waits for it."""
        self._answer = None
        self._conn.invalidate()

    def close(self) -> None:
        if self._conn.invalidated:
            super().close()
            return
        try:
            self._settle()
        finally:
            super().close()


class SqliteProgress(ProgressWriter):
    """Up to three statements per message on the DB-API cursor (in-process, no round trips)."""

    # Times are the database's (worker/clock.py): one clock for every host.
    SENT = """
        UPDATE deliveries SET status = '{sent}', message_id = :mid, sent_at = {now}, last_error = NULL,
               updated_at = {now}
        WHERE id = :prev AND claim_token = :token AND status IN ('{sending}', '{uncertain}')""".format(
        now=SQLITE_NOW, **_S
    )
    NEXT = """
        UPDATE deliveries SET status = '{sending}', attempts = attempts + 1, updated_at = {now}
        WHERE id = :next AND claim_token = :token AND status = '{claimed}'""".format(now=SQLITE_NOW, **_S)
    BEAT = f"UPDATE claims SET heartbeat_at = {SQLITE_NOW} WHERE token = :token"

    def __init__(self, conn: Connection):
        super().__init__(conn)
        self._cur: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def start(self, token: str, delivery_id: int, finished: tuple[int, str] | None) -> Callable[[], bool]:
        prev, mid = finished if finished else (None, None)
        params = {"token": token, "next": delivery_id, "prev": prev, "mid": mid}
        if prev is not None:
            self._cur.execute(self.SENT, params)
        self._cur.execute(self.NEXT, params)
        ours = self._cur.rowcount == 1
        if self._beat_due():
            self._cur.execute(self.BEAT, params)
        return lambda: ours

    def sent(self, token: str, delivery_id: int, mid: str) -> None:
        self._cur.execute(self.SENT, {"token": token, "prev": delivery_id, "mid": mid})

    def close(self) -> None:
        try:
            self._cur.close()
        finally:
            super().close()


def _pg_array(items: Iterable[str]) -> bytes:
    """A PostgreSQL array literal of quoted elements (text format), e.g. {"1","2"}."""
    return ("{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "}").encode()


class GroupProgress:
    """Several sending sessions' ledger writes, grouped: one writer thread, one connection, one
    statement and one commit for every write that is waiting when the previous one ends.

    Each session calls `start`/`sent` exactly as on a `ProgressWriter`; the returned callable
    blocks until the group holding its write has committed. So a row is still durably 'sending'
    before its session sends content, while N sessions cost one fsync per group instead of N
    (group commit done here, on one connection, rather than hoped for across N)."""

    def __init__(self, writer: ProgressWriter):
        self._writer = writer
        self._cond = threading.Condition()
        self._pending: list[_Write] = []
        self._closed = False
        self._failed: BaseException | None = None  # the first failed write's error, for every later one
        self.groups = 0  # statements written (for the benchmark's writes-per-message figure)
        self._thread = threading.Thread(target=self._loop, name="ledger-progress", daemon=True)
        self._thread.start()

    def start(self, token: str, delivery_id: int, finished: tuple[int, str] | None) -> Callable[[], bool]:
        """As `ProgressWriter.start`; the callable raises RuntimeError when the group's write failed."""
        write = self._submit(_Write(token, delivery_id, finished))
        return write.wait

    def sent(self, token: str, delivery_id: int, mid: str) -> None:
        """As `ProgressWriter.sent`, waiting for the group's commit."""
        self._submit(_Write(token, None, (delivery_id, mid))).wait()

    def _submit(self, write: _Write) -> _Write:
        with self._cond:
            if self._closed:
                raise RuntimeError("the progress writer is closed")
            if self._failed is not None:
                # The connection is gone or the lease has run out: nothing more is written.
                write.resolve(False, self._failed)
                return write
            self._pending.append(write)
            self._cond.notify()
        return write

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                group, self._pending = self._pending, []
            try:
                ours = self._writer.write_group([(w.token, w.next_id, w.finished) for w in group])
            except BaseException as exc:  # every waiter learns it; the session treats it as a crash
                with self._cond:
                    self._failed = exc
                    group += self._pending
                    self._pending = []
                for w in group:
                    w.resolve(False, exc)
                continue
            self.groups += 1
            for w in group:
                w.resolve(w.next_id in ours if w.next_id is not None else True)

    def close(self) -> None:
        """Write what is pending and stop the writer thread (the caller closes the writer)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()


class _Write:
    """One session's request: mark `finished` sent and/or `next_id` sending."""

    __slots__ = ("token", "next_id", "finished", "_done", "_ours", "_error")

    def __init__(self, token: str, next_id: int | None, finished: tuple[int, str] | None):
        self.token, self.next_id, self.finished = token, next_id, finished
        self._done = threading.Event()
        self._ours = False
        self._error: BaseException | None = None

    def resolve(self, ours: bool, error: BaseException | None = None) -> None:
        self._ours, self._error = ours, error
        self._done.set()

    def wait(self) -> bool:
        self._done.wait()
        if self._error is not None:
            raise self._error  # ClaimExpired, or the database's error: the session stops
        return self._ours
