"""How long a worker may still act on its claim, reckoned on its own monotonic clock.

The sweeper takes a claim over once its heartbeat (the database's time when the heartbeat write
ran) is older than the claim lease. That write ran after the worker sent it, so the claim is
certainly the worker's until `sent + lease` in elapsed time, whatever the wall clocks say. A
worker that has not heard back from the database by then (a partition that TCP keepalives do
not see, a server that stopped answering) may have lost its rows to another worker: it must send
no content after that, however late the database's "yes" arrives (issue 16).
"""

from __future__ import annotations

import select
import time

from .errors import ClaimExpired


class Lease:
    """`seconds` long from each confirmed heartbeat; `margin` (default a quarter of it) is kept
    for the content to reach the mail server before the sweeper may act."""

    def __init__(self, seconds: float, margin: float | None = None):
        self.seconds = seconds
        self.margin = seconds / 4 if margin is None else margin
        self.until = float("-inf")

    def renew(self, sent_at: float) -> None:
        """A heartbeat sent at `sent_at` (time.monotonic()) was confirmed."""
        self.until = max(self.until, sent_at + self.seconds)

    def remaining(self) -> float:
        """Seconds this process may still start sending content; <= 0: none."""
        return self.until - self.margin - time.monotonic()

    def check(self, what: str) -> None:
        if self.remaining() <= 0:
            raise ClaimExpired(f"{what}: no longer covered by its claim (no word from the database within the lease)")


def await_reply(pgconn, lease: Lease, what: str) -> None:  # noqa: ANN001 - psycopg.pq.PGconn
    """Wait until libpq holds a whole reply to the statement in flight, or until the lease runs
    out (ClaimExpired). `pgconn` is psycopg's libpq connection; reads go through consume_input,
    so a later get_result() does not block."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return
        remaining = lease.remaining()
        if remaining <= 0:
            lease.check(what)
        select.select([pgconn.socket], [], [], min(remaining, 1.0))
