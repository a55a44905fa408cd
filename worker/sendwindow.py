"""The optional send window (NEWSLETTER_SEND_WINDOW, e.g. "08:00-20:00" in the list's zone):
outside it no batch is claimed and the sweeper re-enqueues nothing; inside it sending resumes
within one sweep interval. A window may wrap midnight ("22:00-06:00"); "" means always open."""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse(text: str) -> tuple[time, time] | None:
    """(start, end) local times, or None for "" (no window). Raises ValueError, naming the
    value, for anything else than HH:MM-HH:MM with two different valid times."""
    if not text.strip():
        return None
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(f"expected HH:MM-HH:MM such as 08:00-20:00, got {text!r}")
    h1, m1, h2, m2 = map(int, m.groups())
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        raise ValueError(f"not a time of day in {text!r}") from None
    if start == end:
        raise ValueError(f"the window {text!r} is empty; leave it unset to send at any time")
    return start, end


def is_open(text: str, zone: ZoneInfo, now: datetime) -> bool:
    """True when `now` (aware) falls inside the window `text`, read in `zone`; always True
    without a window. Start inclusive, end exclusive."""
    window = parse(text)
    if window is None:
        return True
    start, end = window
    local = now.astimezone(zone).time()
    return start <= local < end if start < end else (local >= start or local < end)
