"""A send rate shared by every worker process: GCRA on one Redis key.

Each `acquire()` asks Redis for the next free slot at `rate` messages per second and sleeps
until then. With no Redis (the embedded broker), the limit holds per process only.
"""

from __future__ import annotations

import threading
import time

# KEYS[1]: the key. ARGV: interval (µs), burst (µs). Returns µs to wait (0 = go now).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tonumber(ARGV[2])
if wait < 0 then wait = 0 end
local new_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
"""


class RateLimiter:
    def __init__(self, rate: float, redis_url: str = "", key: str = "newsletter:send-rate", burst: int = 1):
        self.rate = rate
        self.interval_us = int(1_000_000 / rate) if rate > 0 else 0
        self.burst_us = self.interval_us * max(0, burst - 1)
        self.key = key
        self._redis = None
        self._script = None
        self._lock = threading.Lock()
        self._next = 0.0
        if rate > 0 and redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
            self._script = self._redis.register_script(_GCRA)

    def acquire(self) -> float:
        """Block until this process may send one message; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        if self._script is not None:
            try:
                wait = int(self._script(keys=[self.key], args=[self.interval_us, self.burst_us])) / 1_000_000
            except Exception:  # noqa: BLE001 - Redis away: fall back to the local limit, keep sending
                wait = self._local()
        else:
            wait = self._local()
        if wait > 0:
            time.sleep(wait)
        return wait

    def _local(self) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.rate
            return slot - now
