"""The event an episode advertises, as the email's banner and as its calendar file.

Both come from the same `Event` datetimes, so they always agree: the banner writes the times in
the event's own zone (the zone name the model gives, e.g. "GMT", "BST", "MDT"), the `.ics`
writes the same instants in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar

from ..episodes import Episode, Event
from ..settings import Settings
from ..text import clean_line

MAX_SPEAKERS_SHOWN = 5
SPEAKER_LINE_CHARS = 72  # "Name, Role" on one line of the 600 px banner; the web page has the rest
DESCRIPTION_CHARS = 160  # one short line
FIELD_CHARS = 200  # title, venue
# The calendar file travels in every email: its text is bounded too (the web page has it all).
ICS_DESCRIPTION_CHARS = 300  # the first paragraph
ICS_SPEAKERS = 5


@dataclass(frozen=True)
class EventBanner:
    """What the banner shows. Every text field is bounded (see the constants above)."""

    title: str
    weekday_date: str  # "Wednesday 29 November 2023"
    time_range: str  # "5:30pm – 7:30pm GMT" ('' for an all-day event)
    venue: str
    speakers: tuple[str, ...]  # one line each, at most MAX_SPEAKERS_SHOWN
    more_speakers: int  # how many more are not shown ("and 3 more")
    description: str  # one short line ('' when none)
    button_url: str
    button_label: str
    calendar_url: str
    image_url: str
    image_alt: str
    heading: str


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, cut at a word with "…" when longer."""
    text = clean_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:–—-") + "…"


def speaker_line(name: str, role: str, limit: int = SPEAKER_LINE_CHARS) -> str:
    """ "Name, Role" in at most `limit` characters: a long role loses its last comma-separated
    parts first ("Head of X, Government Digital Service (GDS)" -> "Head of X"), then words."""
    parts = [p for p in clean_line(role).split(", ") if p]
    line = ", ".join([clean_line(name), *parts])
    while len(line) > limit and len(parts) > 1:
        parts.pop()
        line = ", ".join([clean_line(name), *parts])
    return shorten(line, limit)


def _fmt_time(dt: datetime) -> str:
    hour = dt.hour % 12 or 12
    return f"{hour}{dt.strftime(':%M') if dt.minute else ''}{'am' if dt.hour < 12 else 'pm'}"


def _day(dt: datetime) -> str:
    return f"{dt.strftime('%A')} {dt.day} {dt.strftime('%B %Y')}"


def days(event: Event) -> str:
    """ "Wednesday 10 April 2024"; for an all-day event over several days its first and last
    day: "Wednesday 10 – Friday 12 April 2024" (month and year written once when shared)."""
    first = event.starts
    if not (event.all_day and event.ends and event.ends.date() > first.date()):
        return _day(first)
    last = event.ends.astimezone(first.tzinfo)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.strftime('%A')} {first.day} – {_day(last)}"
    if first.year == last.year:
        return f"{first.strftime('%A')} {first.day} {first.strftime('%B')} – {_day(last)}"
    return f"{_day(first)} – {_day(last)}"


def time_range(event: Event) -> str:
    """ "5:30pm – 7:30pm GMT"; the end's own zone name when it differs (a range across a clock
    change), and its day when it ends on another day. '' for an all-day event."""
    if event.all_day:
        return ""
    starts, zone = event.starts, event.starts.strftime("%Z")
    if not event.ends:
        return f"{_fmt_time(starts)} {zone}".strip()
    ends = event.ends.astimezone(starts.tzinfo)  # the event's own zone for both ends
    end_zone = ends.strftime("%Z")
    end = _fmt_time(ends) if ends.date() == starts.date() else f"{_day(ends)}, {_fmt_time(ends)}"
    if end_zone != zone:
        return f"{_fmt_time(starts)} {zone} – {end} {end_zone}".strip()
    return f"{_fmt_time(starts)} – {end} {zone}".strip()


def banner(event: Event, web_url: str) -> EventBanner:
    """The compact banner: title, when, where, one line per speaker (at most five, then "and N
    more"), one short description line, a button and an "Add to calendar" link."""
    speakers = tuple(speaker_line(s.name, s.role) for s in event.speakers[:MAX_SPEAKERS_SHOWN])
    return EventBanner(
        title=shorten(event.title, FIELD_CHARS),
        weekday_date=days(event),
        time_range=time_range(event),
        venue=shorten(event.venue, FIELD_CHARS),
        speakers=speakers,
        more_speakers=max(0, len(event.speakers) - MAX_SPEAKERS_SHOWN),
        description=_first_sentence(event.description, DESCRIPTION_CHARS),
        button_url=event.signup_url or f"{web_url}#event",
        button_label="Sign up for the event" if event.signup_url else "Event details",
        calendar_url=f"{web_url}/event.ics",
        image_url=event.banner_image,
        image_alt=shorten(event.banner_alt or event.title, FIELD_CHARS),
        heading=shorten(event.heading or "Upcoming event", 60),
    )


def _first_sentence(paragraphs: tuple[str, ...], limit: int) -> str:
    text = clean_line(next((p for p in paragraphs if p.strip()), ""))
    end = min((i for i in (text.find(". "), text.find("! "), text.find("? ")) if i >= 0), default=-1)
    return shorten(text[: end + 1] if end >= 0 else text, limit)


def event_ics(event: Event, episode: Episode, settings: Settings, web_url: str) -> bytes:
    """An iCalendar (RFC 5545) file for the event, as UTF-8 bytes. Times are UTC (an all-day
    event: DATE values). Deterministic (DTSTAMP is the episode date), so the same episode always
    gives the same bytes."""
    cal = icalendar.Calendar()
    cal.add("prodid", f"-//{settings.list_name}//newsletter-worker//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    ev = icalendar.Event()
    ev.add("uid", f"{episode.slug}-event@{settings.sender_domain}")
    ev.add("dtstamp", datetime.combine(episode.date, datetime.min.time(), UTC))
    if event.all_day:
        ev.add("dtstart", event.starts.date())
        # DTEND of a DATE event is exclusive (RFC 5545 3.6.1): the day after the last day
        ev.add("dtend", (event.ends or event.starts).date() + timedelta(days=1))
    else:
        ev.add("dtstart", event.starts.astimezone(UTC))
        ev.add("dtend", event.finishes.astimezone(UTC))
    ev.add("summary", shorten(event.title, FIELD_CHARS))
    if event.venue:
        ev.add("location", shorten(event.venue, FIELD_CHARS))
    desc = [shorten(p, ICS_DESCRIPTION_CHARS) for p in event.description if p.strip()][:1]
    if event.speakers:
        names = "; ".join(speaker_line(s.name, s.role) for s in event.speakers[:ICS_SPEAKERS])
        more = len(event.speakers) - ICS_SPEAKERS
        desc.append(f"Speakers: {names}" + (f"; and {more} more" if more > 0 else ""))
    if not event.signup_url:
        desc.append(web_url)  # a long signup URL is in URL, once
    elif len(event.signup_url) <= 200:
        desc.append(event.signup_url)
    ev.add("description", "\n\n".join(desc))
    ev.add("url", event.signup_url or web_url)
    cal.add_component(ev)
    return cal.to_ical()
