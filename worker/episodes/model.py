"""The episode model every reader produces: `Episode`, its `Event`, `Speaker`s and `Link`s.

All values are immutable and already cleaned: one-line text fields, absolute http(s) URLs (or
''), aware datetimes. Build them with keyword arguments.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..text import clean_line, slugify


@dataclass(frozen=True)
class Speaker:
    """A speaker at an event: `name` (≤120 characters) and optional `role` (≤240)."""

    name: str
    role: str = ""


@dataclass(frozen=True)
class Link:
    """A link from the show notes: display `title` and a `url` that passed `safe_url`."""

    title: str
    url: str


@dataclass(frozen=True)
class Event:
    """An event the episode advertises.

    `starts` and `ends` are aware datetimes (`ends` None when not given; `all_day` when only
    dates were given, then `starts` is the first day's midnight and `ends` the last day's, or
    None for one day). `description` holds paragraphs;
    `banner_image` is https only; `banner_alt` is the header image's caption; `heading` the
    block's heading line in the page layout ('Product Panel Event')."""

    title: str
    starts: datetime
    ends: datetime | None = None
    all_day: bool = False
    venue: str = ""
    signup_url: str = ""
    speakers: tuple[Speaker, ...] = ()
    description: tuple[str, ...] = ()
    banner_image: str = ""
    banner_alt: str = ""
    heading: str = ""

    @property
    def finishes(self) -> datetime:
        """When the event ends: for an all-day event the midnight after its last day (`ends`,
        the last day's midnight, else `starts`), else `ends`, else two hours after `starts`
        (aware datetime)."""
        if self.all_day:
            return (self.ends or self.starts) + timedelta(days=1)  # wall-clock: the next midnight
        if self.ends:
            return self.ends
        return self.starts + timedelta(hours=2)


@dataclass(frozen=True)
class Episode:
    """One episode, whatever format it was read from.

    `intro` and `transcript` are tuples of paragraphs (plain text); `slug` is URL-safe and
    unique per episode in practice (date + title); `guid` identifies the episode across
    publishes; `source` names the file or feed it came from; `highlights` are the editor's own
    highlights (front matter `highlights:`, a feed's chapter titles or bulleted list; empty when
    absent, then the digest picks its own); `warnings` are one-line notes for the editor (not
    compared).

    Sizes are bounded whatever the input (see `build_episode`), so every email built from an
    episode stays small: title ≤ 300 characters, summary ≤ 1,000, intro ≤ 5 paragraphs of
    ≤ 1,000, event description ≤ 5 paragraphs of ≤ 1,000, ≤ 30 speakers, ≤ 200 links (titles
    ≤ 200, URLs ≤ 2,000),
    highlights ≤ 5 of ≤ 300, transcript paragraphs ≤ 5,000 (longer ones are split; the
    transcript is on the web only)."""

    title: str
    date: date
    slug: str
    guid: str
    intro: tuple[str, ...] = ()
    transcript: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    event: Event | None = None
    number: int | None = None
    summary: str = ""
    episode_url: str = ""
    audio_url: str = ""
    source: str = ""
    highlights: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> str:
        """The episode as a JSON string, for the database: dates in ISO 8601, and the event's
        zone by name (`event.zone`: an IANA key such as 'Europe/London', or the name of a fixed
        offset such as 'MDT'), so a stored event keeps its zone's name, not only its offset."""

        def default(o: Any) -> Any:
            if isinstance(o, (datetime, date)):
                return o.isoformat()
            raise TypeError(type(o))

        d = dataclasses.asdict(self)
        if self.event is not None:
            d["event"]["zone"] = _zone_name(self.event.starts)
        return json.dumps(d, default=default, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Episode:
        """The inverse of `to_json` (also reads what earlier versions wrote, without `zone`).
        Raises ValueError/KeyError on text it did not write."""
        d = json.loads(text)
        ev = d.pop("event")
        event = None
        if ev:
            zone = ev.pop("zone", None)
            event = Event(
                **{
                    **ev,
                    "starts": _in_zone(datetime.fromisoformat(ev["starts"]), zone),
                    "ends": _in_zone(datetime.fromisoformat(ev["ends"]), zone) if ev["ends"] else None,
                    "speakers": tuple(Speaker(**s) for s in ev["speakers"]),
                    "description": tuple(ev["description"]),
                }
            )
        return cls(
            **{
                **d,
                "date": date.fromisoformat(d["date"]),
                "intro": tuple(d["intro"]),
                "transcript": tuple(d["transcript"]),
                "links": tuple(Link(**lk) for lk in d["links"]),
                "warnings": tuple(d.get("warnings", ())),
                "highlights": tuple(d.get("highlights", ())),
                "event": event,
            }
        )


def _zone_name(dt: datetime) -> str | None:
    """An IANA key for a ZoneInfo, the name of a fixed offset ('MDT', 'UTC+2'), else None."""
    if isinstance(dt.tzinfo, ZoneInfo):
        return dt.tzinfo.key
    if isinstance(dt.tzinfo, timezone):
        return dt.tzinfo.tzname(None)
    return None


def _in_zone(dt: datetime, zone: str | None) -> datetime:
    """A datetime read back from ISO 8601 (a bare offset) in the zone `to_json` named."""
    if not zone or dt.tzinfo is None:
        return dt
    if "/" in zone:
        try:
            return dt.astimezone(ZoneInfo(zone))
        except (ValueError, KeyError, OSError):
            return dt
    offset = dt.utcoffset()
    return dt.replace(tzinfo=timezone(offset, zone)) if offset is not None else dt


def episode_number(title: str) -> int | None:
    """The episode number written in a title ('Episode 3', 'Ep. 12', '#7'), else None."""
    m = re.search(r"\b(?:episode|ep\.?|#)\s*(\d{1,5})\b", title, re.I)
    return int(m[1]) if m else None


MAX_TITLE = 300
MAX_SUMMARY = 1000
MAX_INTRO_PARAGRAPHS = 5
MAX_PARAGRAPH = 1000
MAX_TRANSCRIPT_PARAGRAPH = 5000
MAX_HIGHLIGHTS = 5
MAX_HIGHLIGHT = 300
MAX_LINKS = 200
MAX_LINK_TITLE = 200


def cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when one is near, with '…'."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit * 0.8 else head).rstrip() + "…"


def split_long(paragraphs: tuple[str, ...], limit: int) -> tuple[str, ...]:
    """Paragraphs of at most `limit` characters: a longer one is split after a sentence (else a
    word) near the limit, so nothing is lost."""
    out: list[str] = []
    for p in paragraphs:
        while len(p) > limit:
            head = p[:limit]
            at = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
            at = at + 1 if at > limit // 2 else (head.rfind(" ") if head.rfind(" ") > limit // 2 else limit)
            out.append(p[:at].strip())
            p = p[at:].strip()
        if p:
            out.append(p)
    return tuple(out)


def _bounded_event(event: Event | None) -> Event | None:
    if event is None:
        return None
    description = tuple(cut(p, MAX_PARAGRAPH) for p in event.description[:MAX_INTRO_PARAGRAPHS])
    return dataclasses.replace(event, description=description, speakers=event.speakers[:30])


def build_episode(
    *,
    title: str,
    date: date,
    intro: tuple[str, ...],
    transcript: tuple[str, ...],
    source: str,
    event: Event | None = None,
    links: tuple[Link, ...] = (),
    warnings: tuple[str, ...] = (),
    slug: str | None = None,
    guid: str | None = None,
    number: int | None = None,
    summary: str | None = None,
    episode_url: str = "",
    audio_url: str = "",
    highlights: tuple[str, ...] = (),
) -> Episode:
    """An Episode with the readers' shared defaults and bounds: slug = date + slugified title,
    guid = slug, number from the title, summary = the intro joined into one line (≤ 1,000
    characters). An intro of more than 5 paragraphs keeps the first 5 and the rest opens the
    transcript; over-long paragraphs, highlights and event descriptions are cut (with a
    warning); links beyond 200 are dropped."""
    notes = list(warnings)
    if len(intro) > MAX_INTRO_PARAGRAPHS:
        notes.append(
            f"the intro has {len(intro)} paragraphs; the first {MAX_INTRO_PARAGRAPHS} are the "
            "email's intro, the rest open the transcript"
        )
        intro, transcript = intro[:MAX_INTRO_PARAGRAPHS], intro[MAX_INTRO_PARAGRAPHS:] + transcript
    if any(len(p) > MAX_PARAGRAPH for p in intro):
        notes.append(f"intro paragraphs are cut to {MAX_PARAGRAPH} characters")
    slug = slug or f"{date.isoformat()}-{slugify(title)}"
    return Episode(
        title=cut(title, MAX_TITLE),
        date=date,
        slug=slug,
        guid=guid or slug,
        intro=tuple(cut(p, MAX_PARAGRAPH) for p in intro),
        transcript=split_long(transcript, MAX_TRANSCRIPT_PARAGRAPH),
        links=tuple(Link(title=cut(lk.title, MAX_LINK_TITLE), url=lk.url) for lk in links[:MAX_LINKS]),
        event=_bounded_event(event),
        number=number if number is not None else episode_number(title),
        summary=cut(summary or clean_line(" ".join(intro)), MAX_SUMMARY),
        episode_url=episode_url,
        audio_url=audio_url,
        source=source,
        warnings=tuple(notes),
        highlights=tuple(cut(h, MAX_HIGHLIGHT) for h in highlights[:MAX_HIGHLIGHTS] if h),
    )
