"""Dates and times as the show writes them: '23 Nov 2023', 'Thursday 23rd November 2023',
'5.30pm – 7.30pm', '18:00-20:00'. Every parser returns None for text that is not one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time, tzinfo

from ..text import clean_line
from .zones import ZoneError, zone_after

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
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]{3,9})\.?,?\s+(\d{4})$",
    re.I,
)
_DATE_MDY = re.compile(
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?([a-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$", re.I
)
_DATE_ISO = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
# day first, as in the UK and most of Europe: 23/11/2023, 23.11.2023, 23-11-2023
_DATE_SLASH = re.compile(r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{4})$")
_DATE_IN = re.compile(
    r"\b(\d{1,2}(?:st|nd|rd|th)?\s+[A-Za-z]{3,9}\.?,?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}"
    r"|\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}([/.\-])\d{1,2}\2\d{4})\b"
)
# Several days: '10 – 12 April 2024', 'April 10-11, 2024', '30 April – 2 May 2024', and two
# whole dates joined by a dash or 'to'
_WD = r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_MON = r"([a-z]{3,9})\.?"
_RSEP = r"\s*(?:[–—‒−-]|\bto\b|\buntil\b|\btill?\b|\bthrough\b|\bthru\b)\s*"
_DAYS_MONTH = re.compile(rf"\b{_WD}{_DAY}{_RSEP}{_WD}{_DAY}\s+{_MON},?\s+(\d{{4}})\b", re.I)
_MONTH_DAYS = re.compile(rf"\b{_WD}{_MON}\s+{_DAY}{_RSEP}{_DAY},?\s+(\d{{4}})\b", re.I)
_DAY_MONTHS = re.compile(rf"\b{_WD}{_DAY}\s+{_MON}{_RSEP}{_WD}{_DAY}\s+{_MON},?\s+(\d{{4}})\b", re.I)
_RANGE_JOIN = re.compile(rf"^{_RSEP}{_WD}", re.I)
MAX_EVENT_DAYS = 31

_TIME = r"(\d{1,2})(?:[.:h](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?"
# between the two times of a range: dashes (hyphen, en and em dash, figure dash, minus sign) and words
_SEP = r"(?:[–—‒−-]|\bto\b|\buntil\b|\btill?\b|\bthrough\b|\bthru\b)"
# a zone written right after the start time ('6pm BST – 8pm BST', '18:00Z – 20:00Z')
_START_ZONE = r"(?:[A-Z]{1,5}|(?:UTC|GMT)\s*[+\-−]\s*\d{1,2}(?::?\d{2})?|[+\-−]\d{2}:?\d{2})"
_TIME_RANGE = re.compile(
    rf"(?<![\d.:/\-]){_TIME}\s*{_SEP}\s*{_TIME}(?![\d])"
    rf"|(?<![\d.:/\-]){_TIME}\s*({_START_ZONE})\s*{_SEP}\s*{_TIME}(?![\d])",
    re.I,
)
# Words for 12 o'clock, read as the clock reading they stand for, where they are a time: after
# '12', 'at' or 'from', or next to a range's dash ('The Midday Meetup' stays a title).
_CLOCK_WORD = re.compile(
    rf"\b12(?:[.:]00)?\s*(?P<a>noon|midday|midnight)\b"
    rf"|\b(?P<b>noon|midday|midnight)(?=\s*{_SEP}\s*\d)"
    rf"|(?:(?<=–)|(?<=—)|(?<=-)|(?<=\bto )|(?<=\buntil )|(?<=\btill )|(?<=\btil )|(?<=\bat )|(?<=\bfrom ))"
    rf"\s*(?P<c>noon|midday|midnight)\b",
    re.I,
)


def _clock_words(text: str) -> str:
    def clock(m: re.Match) -> str:
        word = (m["a"] or m["b"] or m["c"]).lower()
        return "12am" if word == "midnight" else "12pm"

    return _CLOCK_WORD.sub(clock, text)


_ONE_TIME = re.compile(rf"(?:^|\b(?:at|from)\s+){_TIME}(?![\d])", re.I)


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
            return date(int(m[4]), int(m[3]), int(m[1]))
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


def date_range_in(text: str) -> tuple[date, date] | None:
    """The first and last day of a range of days inside a line of at most 120 characters
    ('10 – 12 April 2024', 'April 10-11, 2024', '30 April – 2 May 2024', 'Wed 10 April 2024 –
    Fri 12 April 2024'); a range across the new year takes the start from the year before.
    None when the line holds no such range, or it runs backwards or over 31 days."""
    if len(text) > 120:
        return None
    text = clean_line(text)
    found: tuple[date | None, date | None] | None = None
    try:
        if m := _DAY_MONTHS.search(text):
            found = (_named_month(m[5], m[2], m[1]), _named_month(m[5], m[4], m[3]))
        elif m := _DAYS_MONTH.search(text):
            found = (_named_month(m[4], m[3], m[1]), _named_month(m[4], m[3], m[2]))
        elif m := _MONTH_DAYS.search(text):
            found = (_named_month(m[4], m[1], m[2]), _named_month(m[4], m[1], m[3]))
        else:
            found = _two_dates(text)
    except ValueError:
        return None
    first, last = found or (None, None)
    if first is None or last is None:
        return None
    if first > last and first.month > last.month:
        first = first.replace(year=first.year - 1)  # '30 December – 2 January 2025'
    if not first < last or (last - first).days > MAX_EVENT_DAYS:
        return None
    return first, last


def _two_dates(text: str) -> tuple[date | None, date | None] | None:
    for m in _DATE_IN.finditer(text):
        join = _RANGE_JOIN.match(text[m.end() :])
        if join and (second := _DATE_IN.match(text, m.end() + join.end())):
            return parse_date(m[1]), parse_date(second[1])
    return None


@dataclass(frozen=True)
class TimeSpan:
    """Times read from one line: `start`, `end` (None for a lone time) as naive wall-clock
    times, and `zone`, the zone written after them (None when none is written); `end_zone` the
    end's own when start and end name different zones ('11pm BST – 1am CEST'), else None."""

    start: time
    end: time | None = None
    zone: tzinfo | None = None
    end_zone: tzinfo | None = None


def _clock(hour: str, minute: str | None, ampm: str | None) -> tuple[int, int, str]:
    return int(hour), int(minute or 0), (ampm or "").lower().replace(".", "")


def _minutes(h: int, m: int, suffix: str) -> int | None:
    """Minutes after midnight for a clock reading (suffix 'am', 'pm' or '' for 24-hour)."""
    if suffix and not 1 <= h <= 12:
        return None
    if suffix == "pm" and h < 12:
        h += 12
    elif suffix == "am" and h == 12:
        h = 0
    return h * 60 + m if 0 <= h <= 23 and 0 <= m <= 59 else None


def _candidates(h: int, m: int, suffix: str) -> list[int]:
    """Readings of a time: one with am/pm or past 12, else the am and the pm one."""
    if suffix or h == 0 or h > 12:
        return [x for x in [_minutes(h, m, suffix)] if x is not None]
    return [x for x in (_minutes(h, m, "am"), _minutes(h, m, "pm")) if x is not None]


def _pair(start: tuple[int, int, str], end: tuple[int, int, str]) -> tuple[int, int] | None:
    """Start and end in minutes after midnight. A side written without am/pm takes the meridiem
    that puts the start before the end and nearest to it ('11.30 – 12.30pm' is 11:30–12:30,
    '6 to 8pm' is 18:00–20:00, '10 – 2am' runs 22:00–02:00); both without am/pm are 24-hour."""
    if not start[2] and not end[2]:
        s, e = _minutes(*start), _minutes(*end)
        return (s, e) if s is not None and e is not None else None
    pairs = [(s, e) for s in _candidates(*start) for e in _candidates(*end)]
    if not pairs:
        return None
    return min(pairs, key=lambda p: (p[1] - p[0]) % 1440 or 1440)


def _time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def parse_time_span(text: str) -> TimeSpan | None:
    """The time range ('5.30pm – 7.30pm', '18:00-20:00', '6 to 8pm', '9am – 10.30am MDT',
    '6pm BST – 8pm BST') or lone time ('at 6.30pm BST') on a line, with the zone written after
    it; None when the line holds no time. Raises ZoneError (a ValueError) when the zone written
    is unknown or ambiguous. 'noon'/'midday' read as 12pm and 'midnight' as 12am."""
    text = _clock_words(clean_line(text))
    for m in _TIME_RANGE.finditer(text):
        # groups 1-6: start and end without a zone between; 7-13: start, its zone, end
        g = m.groups()[:6] if m[1] else m.groups()[6:9] + m.groups()[10:13]
        written = None if m[1] else m[10]
        if not (g[1] or g[2] or g[4] or g[5]):
            continue  # '10 – 11': two bare numbers are not times (a range of days, a score)
        pair = _pair(_clock(g[0], g[1], g[2]), _clock(g[3], g[4], g[5]))
        if pair:
            end_zone = zone_after(text[m.end() :])
            start_zone = zone_after(written) if written else None
            if written and start_zone is None:
                continue  # capitals after the start that are not a zone ('6pm TBC')
            zone = start_zone or end_zone
            other = end_zone if end_zone is not None and start_zone is not None and end_zone != start_zone else None
            return TimeSpan(_time(pair[0]), _time(pair[1]), zone, other)
    one = _ONE_TIME.search(text)
    if one and (one[3] or one[2]):
        start = _minutes(*_clock(one[1], one[2], one[3]))
        if start is not None:
            return TimeSpan(_time(start), None, zone_after(text[one.end() :]))
    return None


def parse_time_range(text: str) -> tuple[time, time | None] | None:
    """(start, end) of `parse_time_span`, ignoring any zone; None when the line holds no time
    or names a zone that is not one."""
    try:
        span = parse_time_span(text)
    except ZoneError:
        return None
    return (span.start, span.end) if span else None
