"""Request counters shared by every web process: fixed windows in Redis.

`Throttle.hit(key, limit, window)` counts one request and says whether it is within `limit`
per `window` seconds. With Redis (NEWSLETTER_REDIS_URL, else the broker when it is Redis) every
process shares the counts; without it (the embedded defaults) each process counts alone. If Redis
stops answering, requests are let through and a warning is logged: the per-address email limit
(one confirmation an hour) lives in the database and holds regardless.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

log = logging.getLogger(__name__)


class Throttle:
    """Fixed-window counters. Keys are hashed (no address or IP is stored in Redis as such)."""

    def __init__(self, redis_url: str = "", prefix: str = "newsletter:throttle:"):
        self.prefix = prefix
        self._redis = None
        self._local: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)

    def _key(self, key: str, window: int) -> str:
        bucket = int(time.time() // window)
        return f"{self.prefix}{hashlib.sha256(key.encode()).hexdigest()[:32]}:{window}:{bucket}"

    def hit(self, key: str, limit: int, window: int = 3600) -> bool:
        """Count one request for `key`; True while at most `limit` were made in this window of
        `window` seconds. A limit of 0 or less means no limit."""
        if limit <= 0:
            return True
        name = self._key(key, window)
        if self._redis is not None:
            try:
                pipe = self._redis.pipeline()
                pipe.incr(name)
                pipe.expire(name, window + 60)
                count = int(pipe.execute()[0])
                return count <= limit
            except Exception as exc:  # noqa: BLE001 - Redis away: let it through (see module doc)
                log.warning("throttle: Redis unavailable, not limiting (%s)", exc)
                return True
        with self._lock:
            now = time.time()
            self._local = (
                {k: v for k, v in self._local.items() if v[0] > now} if len(self._local) > 10000 else self._local
            )
            expires, count = self._local.get(name, (now + window, 0))
            self._local[name] = (expires, count + 1)
            return count + 1 <= limit
