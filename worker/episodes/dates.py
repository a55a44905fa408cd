"""Dates and times as the show writes them: '23 Nov 2023', 'Thursday 23rd November 2023',
'5.30pm – 7.30pm', '18:00-20:00'. Every parser returns None for text that is not one."""

from __future__ import annotations

import re
from datetime import date, time

from ..text import clean_line

_MONTHS = {
    m: i
    for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)
}
_MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_DATE_DMY = re.compile(
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3,9})\.?,?\s+(\d{4})$", re.I
)
_DATE_MDY = re.compile(
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?([a-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$", re.I
)
_DATE_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_SLASH = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_DATE_IN = re.compile(
    r"\b(\d{1,2}(?:st|nd|rd|th)?\s+[A-Za-z]{3,9}\.?,?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}"
    r"|\d{4}-\d{2}-\d{2})\b"
)

_TIME = r"(\d{1,2})(?:[.:](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?"
_TIME_RANGE = re.compile(rf"(?<![\d.:]){_TIME}\s*(?:–|—|-|to|until)\s*{_TIME}(?:\s*\(?([A-Z]{{2,5}})\)?)?", re.I)
_ONE_TIME = re.compile(rf"(?:^|\b(?:at|from)\s+){_TIME}\b", re.I)


def parse_date(text: str) -> date | None:
    """A calendar date in the forms the show writes ('23 Nov 2023', 'Thursday 23rd November
    2023', 'Nov 23, 2023', '2023-11-23', '23/11/2023' read day-first); None when the whole text
    is not one (or names an impossible day such as 31 Feb)."""
    text = clean_line(text).rstrip(".")
    try:
        if m := _DATE_ISO.match(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _DATE_DMY.match(text):
            return _named_month(m[3], m[2], m[1])
        if m := _DATE_MDY.match(text):
            return _named_month(m[3], m[1], m[2])
        if m := _DATE_SLASH.match(text):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None
    return None


def _named_month(year: str, month_word: str, day: str) -> date | None:
    month = _MONTHS.get(month_word[:3].lower())
    if not month or not _month_word(month_word):
        return None
    return date(int(year), month, int(day))


def _month_word(word: str) -> bool:
    w = word.lower()
    return any(f.startswith(w) for f in _MONTH_NAMES) or w == "sept"


def date_in(text: str) -> date | None:
    """A date inside a line of at most 120 characters ('Wednesday 29 November 2023, 5.30pm')."""
    if len(text) > 120:
        return None
    for m in _DATE_IN.finditer(text):
        if d := parse_date(m.group(1)):
            return d
    return None


def _to_time(hour: str, minute: str | None, ampm: str | None, default_pm: bool | None) -> time | None:
    h, m = int(hour), int(minute or 0)
    suffix = (ampm or "").lower().replace(".", "")
    if suffix == "pm" or (not suffix and default_pm and h < 12):
        h = h + 12 if h < 12 else h
    elif suffix == "am" and h == 12:
        h = 0
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return time(h, m)


def parse_time_range(text: str) -> tuple[time, time | None] | None:
    """'5.30pm – 7.30pm', '18:00-20:00', '6 to 8pm' -> (start, end) as naive times; a lone
    'at 6.30pm' -> (start, None); None when the line holds no time."""
    text = clean_line(text)
    m = _TIME_RANGE.search(text)
    if m and (m[3] or m[6] or m[2] or m[5]):
        end_pm = (m[6] or "").lower().startswith("p")
        start = _to_time(m[1], m[2], m[3], default_pm=end_pm if not m[3] else None)
        end = _to_time(m[4], m[5], m[6], default_pm=None)
        if start and end:
            return start, end
    m = _ONE_TIME.search(text)
    if m and (m[3] or m[2]):
        start = _to_time(m[1], m[2], m[3], default_pm=None)
        if start:
            return start, None
    return None
