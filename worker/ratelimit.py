"""A send rate shared by every worker process: GCRA on one Redis key, plus a shared pause.

Each `acquire()` asks Redis for the next free slot at `rate` messages per second and sleeps
until then. When a server or provider throttles us, `throttle(seconds)` pauses every worker
sharing the key until then and, under a set rate, halves the rate for a minute (doubling again
each time, up to 1/16): so one 429 slows the whole campaign, not one process. With no Redis
(the embedded broker), the limit and the pause hold per process only.
"""

from __future__ import annotations

import threading
import time

# KEYS: rate key, pause key, slow key. ARGV: interval (µs), burst (µs).
# Returns µs to wait (0 = go now).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local pause = tonumber(redis.call('GET', KEYS[2]) or 0)
if tat < pause then tat = pause end
local slow = tonumber(redis.call('GET', KEYS[3]) or 1)
local wait = tat - now - tonumber(ARGV[2])
if wait < 0 then wait = 0 end
local new_tat = tat + tonumber(ARGV[1]) * slow
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
"""

# KEYS: pause key, slow key. ARGV: pause (µs), whether to slow down (1/0).
# Returns the pause's end (µs, Redis clock) and the slow factor.
_THROTTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]) or 0)
if old > until_us then until_us = old end
redis.call('SET', KEYS[1], until_us, 'PX', math.ceil((until_us - now) / 1000) + 1000)
local slow = tonumber(redis.call('GET', KEYS[2]) or 1)
if ARGV[2] == '1' then
  slow = math.min(slow * 2, 16)
  redis.call('SET', KEYS[2], slow, 'EX', 60)
end
return {until_us - now, slow}
"""

# Without a set rate, a process looks at the shared pause at most this often (seconds).
PAUSE_CHECK_EVERY = 0.2


class RateLimiter:
    """A send rate of `rate` messages per second (0: no limit, only the shared pause), shared
    through Redis at `redis_url` by every process using `key`, else per process; `burst`
    messages may go at once."""

    def __init__(self, rate: float, redis_url: str = "", key: str = "newsletter:send-rate", burst: int = 1):
        self.rate = rate
        self.interval_us = int(1_000_000 / rate) if rate > 0 else 0
        self.burst_us = self.interval_us * max(0, burst - 1)
        self.key = key
        self.keys = [key, f"{key}:pause", f"{key}:slow"]
        self._redis = None
        self._script = None
        self._throttle_script = None
        self._lock = threading.Lock()
        self._next = 0.0
        self._paused_until = 0.0  # monotonic
        self._pause_checked = 0.0
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
            self._script = self._redis.register_script(_GCRA)
            self._throttle_script = self._redis.register_script(_THROTTLE)

    def acquire(self) -> float:
        """Block until this process may send one message; returns the seconds waited."""
        if self.rate <= 0:
            wait = self.paused_for()
        elif self._script is not None:
            try:
                wait = int(self._script(keys=self.keys, args=[self.interval_us, self.burst_us])) / 1_000_000
            except Exception:  # noqa: BLE001 - Redis away: fall back to the local limit, keep sending
                wait = self._local()
        else:
            wait = self._local()
        if wait > 0:
            time.sleep(wait)
        return wait

    def throttle(self, seconds: float) -> float:
        """Pause every worker sharing this limiter for `seconds` (and slow a set rate down).
        Returns the pause actually in force, in seconds."""
        seconds = max(0.0, seconds)
        pause = seconds
        if self._throttle_script is not None:
            try:
                pause_us, _slow = self._throttle_script(
                    keys=self.keys[1:], args=[int(seconds * 1_000_000), 1 if self.rate > 0 else 0]
                )
                pause = int(pause_us) / 1_000_000
            except Exception:  # noqa: BLE001 - Redis away: pause this process only
                pass
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + pause)
            self._pause_checked = time.monotonic()
        return pause

    def paused_for(self) -> float:
        """Seconds left in the shared pause (0 when none); Redis is asked at most every 0.2 s."""
        now = time.monotonic()
        if self._redis is not None and now - self._pause_checked >= PAUSE_CHECK_EVERY:
            self._pause_checked = now
            try:
                pipe = self._redis.pipeline()
                pipe.time()
                pipe.get(self.keys[1])
                (sec, usec), until = pipe.execute()
                if until:
                    left = (int(until) - (sec * 1_000_000 + usec)) / 1_000_000
                    with self._lock:
                        self._paused_until = max(self._paused_until, now + left)
            except Exception:  # noqa: BLE001 - Redis away: the local pause still holds
                pass
        return max(0.0, self._paused_until - now)

    def _local(self) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next, self._paused_until)
            self._next = slot + 1.0 / self.rate
            return slot - now
