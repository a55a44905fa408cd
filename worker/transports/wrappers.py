"""Transports around transports: a daily cap shared by every worker, and DKIM signing.

Each wraps another `Transport` and keeps its interface, so the sender, staff test emails and
confirmation emails get them alike from `get_transport`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..errors import NewsletterError, PermanentFailure, Throttled
from .base import Transport

log = logging.getLogger(__name__)


class Wrapper(Transport):
    """A transport that hands every call to `inner`, each message first through `prepare`
    (what a subclass changes or refuses)."""

    def __init__(self, inner: Transport):
        self.inner = inner

    def prepare(self, message: bytes) -> bytes:
        """The message as `inner` gets it; raising refuses it (nothing is sent)."""
        return message

    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool:
        return self.inner.send(envelope_from, recipient, self._prepared(message), confirm)

    def send_streaming(
        self,
        envelope_from: str,
        recipient: str,
        message: bytes,
        begin: Callable[[Exception | None], Callable[[], bool]],
    ) -> bool:
        try:
            prepared = self._prepared(message)
        except Exception:
            begin(self.inner.finish())  # the contract: `begin` comes before this message's error
            raise
        return self.inner.send_streaming(envelope_from, recipient, prepared, begin)

    def _prepared(self, message: bytes) -> bytes:
        """`prepare`, with anything but our own errors (Throttled, ConfigError) made this one
        delivery's PermanentFailure: a library refusing one message (dkimpy) fails it, as a
        message that cannot be built does, rather than every session of the batch, with its row
        left 'sending' for the sweeper to call uncertain though nothing of it left."""
        try:
            return self.prepare(message)
        except NewsletterError:
            raise
        except Exception as exc:
            log.exception("%s cannot prepare a message", type(self).__name__)
            raise PermanentFailure(f"cannot prepare the message: {type(exc).__name__}: {exc}", suppress=False) from exc

    def finish(self) -> Exception | None:
        return self.inner.finish()

    @property
    def provider_message_id(self) -> str | None:
        return self.inner.provider_message_id

    def check(self) -> bool:
        return self.inner.check()

    def close(self) -> None:
        self.inner.close()


class DailyCap(Wrapper):
    """At most `cap` messages per UTC day through this transport, counted in Redis over all
    workers (per process without Redis). Past the cap, `Throttled` until midnight UTC: the
    messages wait, nobody fails."""

    def __init__(self, inner: Transport, cap: int, name: str, redis_url: str = ""):
        super().__init__(inner)
        self.cap, self.name = cap, name
        self._redis = None
        self._local: dict[str, int] = {}
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)

    def _take(self, day: str) -> int:
        key = f"newsletter:daily:{self.name}:{day}"
        if self._redis is not None:
            try:
                pipe = self._redis.pipeline()
                pipe.incr(key)
                pipe.expire(key, 2 * 86400)
                return int(pipe.execute()[0])
            except Exception:  # noqa: BLE001 - Redis away: count in this process, keep sending
                log.warning("daily cap: Redis unreachable, counting in this process only")
        self._local[day] = self._local.get(day, 0) + 1
        return self._local[day]

    def prepare(self, message: bytes) -> bytes:
        now = datetime.now(UTC)
        if self._take(now.strftime("%Y%m%d")) > self.cap:
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            raise Throttled(
                f"{self.name}: the daily cap of {self.cap} messages is reached",
                retry_after=(midnight - now).total_seconds() + 1,
            )
        return message
