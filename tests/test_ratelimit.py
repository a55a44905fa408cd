from __future__ import annotations

import threading

from worker.ratelimit import RateLimiter


def test_shared_limit_spaces_sends_across_limiters(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    sec, usec = client.time()
    start_us = sec * 1_000_000 + usec
    # Two limiters stand for two worker processes sharing one Redis key.
    a = RateLimiter(50, redis_url, key="test:rate")
    b = RateLimiter(50, redis_url, key="test:rate")
    waits: list[float] = []
    lock = threading.Lock()

    def run(lim: RateLimiter) -> None:
        for _ in range(10):
            w = lim.acquire()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=run, args=(x,)) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Both limiters drew from one schedule: it advanced 20 slots of 20 ms past the start, and the
    # limiters waited for their slots instead of sending at once.
    tat_us = int(client.get("test:rate"))
    assert len(waits) == 20
    # 20 slots of 20 ms from the start; two independent limits would have used only 10 each.
    assert tat_us - start_us >= 20 * 20_000
    assert sum(1 for w in waits if w > 0) >= 18


def test_unlimited_never_waits():
    assert RateLimiter(0).acquire() == 0.0


def test_local_fallback_without_redis():
    lim = RateLimiter(100)
    waits = [lim.acquire() for _ in range(5)]
    assert waits[0] == 0.0 and waits[-1] > 0.0
