"""How many sending sessions every worker together may hold open to one destination.

Mail servers and providers limit concurrent connections per client (Postfix's own
`smtpd_client_connection_count_limit` defaults to 50; Gmail and Outlook answer 421 past theirs),
and a worker process does not know how many others, on how many hosts, send to the same place.
So the cap is counted in Redis, on Redis's clock: a sorted set per destination whose members are
the sessions (`holder:n`), scored with the time their hold ends. A process renews its hold at
every batch; a process that dies stops renewing and its sessions fall out after `ttl`. With no
Redis (the embedded defaults) the cap holds per process only.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# KEYS: the destination's set. ARGV: holder, sessions wanted, cap, ttl (ms).
# Returns the sessions granted to this holder (0..wanted); its members are exactly holder:0..n-1.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local prefix = ARGV[1] .. ':'
local mine = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then mine = mine + 1 end
end
local others = redis.call('ZCARD', KEYS[1]) - mine
local grant = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - others))
for i = 0, math.max(mine, grant) - 1 do
  if i < grant then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), prefix .. i)
  else
    redis.call('ZREM', KEYS[1], prefix .. i)
  end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return grant
"""


def destination_of(mail_url: str) -> str:
    """The place a mail URL sends to, without credentials: `smtp://relay.example:587`,
    `ses://eu-west-1`, `maildir:var/outbox`."""
    parts = urlsplit(mail_url)
    if not parts.netloc:
        return mail_url
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


class DestinationSlots:
    """At most `cap` sessions to `destination` over every process sharing the Redis at
    `redis_url`; `ttl` (seconds) is how long a hold lasts without renewal."""

    def __init__(self, destination: str, cap: int, holder: str, redis_url: str = "", ttl: float = 120.0):
        self.cap, self.holder, self.ttl = cap, holder, ttl
        self.key = f"newsletter:sessions:{destination}"
        self._script = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
            self._script = self._redis.register_script(_HOLD)

    def hold(self, wanted: int) -> int:
        """Take or renew up to `wanted` sessions; returns how many this process may use now
        (0 when others hold the whole cap). Redis away: `min(wanted, cap)`, this process's own
        share unknown."""
        if self._script is None:
            return min(wanted, self.cap)
        try:
            return int(self._script(keys=[self.key], args=[self.holder, wanted, self.cap, int(self.ttl * 1000)]))
        except Exception:  # noqa: BLE001 - Redis away: keep sending within the per-process cap
            log.warning("session cap: Redis unreachable, counting this process only")
            return min(wanted, self.cap)

    def release(self) -> None:
        """Give back every session this process holds (at close)."""
        if self._script is not None:
            try:
                self._script(keys=[self.key], args=[self.holder, 0, self.cap, int(self.ttl * 1000)])
            except Exception:  # noqa: BLE001 - they expire by themselves
                pass
