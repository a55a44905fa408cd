"""Time zones written next to an event's time: abbreviations ('MDT', 'BST', 'PT') and offsets
('UTC+2', 'GMT-5', '+02:00').

A specific abbreviation names a fixed offset (EST is UTC-5 in July too: the author wrote it); a
generic one ('PT', 'ET') names a region, whose offset follows daylight saving on the day. The
table follows the common English abbreviations (IANA tz database's `northamerica`, `europe`,
`australasia` comments); abbreviations used for several zones (IST, AST, SST, GST…) are refused
rather than guessed.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

# name -> hours east of UTC
FIXED: dict[str, float] = {
    "UTC": 0,
    "UT": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "BST": 1,
    "WEST": 1,
    "CET": 1,
    "CEST": 2,
    "EET": 2,
    "EEST": 3,
    "MSK": 3,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
    "AKST": -9,
    "AKDT": -8,
    "HST": -10,
    "NST": -3.5,
    "NDT": -2.5,
    "ADT": -3,
    "AEST": 10,
    "AEDT": 11,
    "ACST": 9.5,
    "ACDT": 10.5,
    "AWST": 8,
    "NZST": 12,
    "NZDT": 13,
    "JST": 9,
    "KST": 9,
    "HKT": 8,
    "SGT": 8,
    "SAST": 2,
    "WAT": 1,
    "CAT": 2,
    "EAT": 3,
    "PKT": 5,
    "ICT": 7,
    "WIB": 7,
}
# generic names: the region's zone, daylight saving applied on the event's day
REGIONS: dict[str, str] = {
    "PT": "America/Los_Angeles",
    "MT": "America/Denver",
    "CT": "America/Chicago",
    "ET": "America/New_York",
    "AET": "Australia/Sydney",
    "UK": "Europe/London",
}
# North American zone names written out: 'Eastern', 'Pacific Time' (the region, daylight
# saving on the day) or 'Eastern Standard Time' (the fixed offset, as written)
NAMED_REGIONS: dict[str, str] = {
    "eastern": "ET",
    "central": "CT",
    "mountain": "MT",
    "pacific": "PT",
    "alaska": "America/Anchorage",
    "hawaii": "Pacific/Honolulu",
    "atlantic": "America/Halifax",
}
AMBIGUOUS = {
    "IST": "India, Irish or Israel Standard Time",
    "AST": "Atlantic or Arabia Standard Time",
    "SST": "Samoa or Singapore Standard Time",
    "GST": "Gulf or South Georgia Standard Time",
    "BT": "Baghdad or Bhutan Time",
    "ECT": "Ecuador or Eastern Caribbean Time",
    "MET": "Middle European or Middle East Time",
}

_OFFSET = re.compile(r"^\(?\s*(?:(UTC|GMT|UT)\s*)?([+\-−])\s*(\d{1,2})(?::?(\d{2}))?\s*\)?(?![\d:])")
_ABBREV = re.compile(r"^\(?\s*([A-Z]{1,5})\s*\)?(?![A-Za-z/])")
# 'Europe/Paris', 'America/Argentina/Buenos_Aires', 'Etc/GMT+3'
_IANA = re.compile(r"^\(?\s*([A-Z][A-Za-z_\-]+(?:/[A-Za-z0-9_\-+]+)+)\s*\)?")
# 'Eastern', 'Pacific Time', 'Central Standard Time' (a bare region word only before the line's
# end or punctuation: 'Central Library' is a place)
_NAMED = re.compile(
    r"^\(?\s*(?P<region>eastern|central|mountain|pacific|alaska|hawaii|atlantic)"
    r"(?:\s+(?P<kind>standard|daylight))?(?P<time>\s+time)?\b(?P<more>\s*[A-Za-z0-9])?",
    re.I,
)
# '(New York time)', 'London time', 'Sydney time': a city of the tz database
_CITY_TIME = re.compile(r"^\(?\s*([A-Z][A-Za-z.'\-]*(?:\s+[A-Z][A-Za-z.'\-]*){0,2})\s+time\b", re.I)
# a word in capitals shaped like a zone abbreviation: 3-5 letters ending in T (EST, CEST, XYZT)
_ZONE_SHAPED = re.compile(r"^[A-Z]{1,3}[SD]?T$")


class ZoneError(ValueError):
    """A zone written next to a time that is unknown or ambiguous; str() says which."""


def zone_after(rest: str) -> tzinfo | None:
    """The zone written at the start of `rest` (the text right after a time or time range),
    else None. 'UTC+2' -> fixed +02:00 named 'UTC+2'; 'MDT' -> fixed -06:00 named 'MDT'; 'PT',
    'Pacific' or 'Pacific Time' -> America/Los_Angeles; 'Europe/Paris' -> that zone; 'New York
    time' -> America/New_York (a city of the tz database). Raises ZoneError for an ambiguous
    abbreviation (IST…), a capitalised word shaped like one that is not known ('XST') or an
    unknown 'Area/City' name."""
    rest = rest.lstrip(" ,")
    if m := _OFFSET.match(rest):
        if not m[1] and not m[4]:
            return None  # '+2' alone is not a zone; '+02:00' or 'UTC+2' is
        sign = -1 if m[2] in "-−" else 1
        hours, minutes = int(m[3]), int(m[4] or 0)
        if hours > 14 or minutes >= 60:
            raise ZoneError(f"the offset {m.group(0).strip('() ')!r} is not a time zone")
        name = m.group(0).strip("() ").replace("−", "-").replace(" ", "")
        return timezone(sign * timedelta(hours=hours, minutes=minutes), name)
    if m := _IANA.match(rest):
        return zone_named(m[1])
    if zone := _named_region(rest):
        return zone
    if m := _CITY_TIME.match(rest):
        if city := _cities().get(m[1].casefold()):
            return ZoneInfo(city)
    m = _ABBREV.match(rest)
    if not m:
        return None
    return zone_named(m[1], strict=False)


def _named_region(rest: str) -> tzinfo | None:
    m = _NAMED.match(rest)
    if not m or (m["more"] and not m["time"]):
        return None  # 'Central Library', 'Pacific Room': a place, not a zone
    region = m["region"].lower()
    if m["kind"] and region in ("eastern", "central", "mountain", "pacific"):
        return zone_named(region[0].upper() + ("S" if m["kind"].lower() == "standard" else "D") + "T")
    return zone_named(NAMED_REGIONS[region])


@cache
def _cities() -> dict[str, str]:
    """City name (casefolded, '_' as space) -> IANA key, from the tz database's zone names."""
    out: dict[str, str] = {}
    for key in sorted(available_timezones()):
        if "/" in key and not key.startswith(("Etc/", "SystemV/", "US/")):
            out.setdefault(key.rsplit("/", 1)[1].replace("_", " ").casefold(), key)
    return out


def zone_named(name: str, *, strict: bool = True) -> tzinfo | None:
    """The zone for an abbreviation ('MDT', 'PT') or an IANA name ('America/Denver').

    Unknown names raise ZoneError when `strict`, else only when they are shaped like an
    abbreviation (otherwise None: 'TBC' after a time is not a zone)."""
    key = name.strip().upper()
    if key in FIXED:
        return timezone(timedelta(hours=FIXED[key]), key) if key != "Z" else UTC
    if key in REGIONS:
        return ZoneInfo(REGIONS[key])
    if key in AMBIGUOUS:
        raise ZoneError(
            f"the time zone {key!r} is ambiguous ({AMBIGUOUS[key]}); write an offset "
            "such as UTC+5:30 or a zone such as Asia/Kolkata"
        )
    if "/" in name:
        try:
            return ZoneInfo(name.strip())
        except (ValueError, KeyError, OSError):
            raise ZoneError(f"unknown time zone {name.strip()!r}; write a zone such as Europe/Paris") from None
    if strict or (len(key) >= 3 and _ZONE_SHAPED.match(key)):
        raise ZoneError(
            f"unknown time zone {name.strip()!r}; write an offset such as UTC+2 "
            "or an abbreviation such as BST, CET or EST"
        )
    return None
