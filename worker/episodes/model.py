"""The episode model every reader produces: `Episode`, its `Event`, `Speaker`s and `Link`s.

All values are immutable and already cleaned: one-line text fields, absolute http(s) URLs (or
''), aware datetimes. Build them with keyword arguments.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

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

    `starts` and `ends` are aware datetimes (`ends` None when not given; `all_day` when only a
    date was given, then `starts` is that day's midnight). `description` holds paragraphs;
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
        """When the event ends: `ends`, else the next midnight for an all-day event, else two
        hours after `starts` (aware datetime)."""
        if self.ends:
            return self.ends
        if self.all_day:
            return self.starts + timedelta(days=1)
        return self.starts + timedelta(hours=2)


@dataclass(frozen=True)
class Episode:
    """One episode, whatever format it was read from.

    `intro` and `transcript` are tuples of paragraphs (plain text); `slug` is URL-safe and
    unique per episode in practice (date + title); `guid` identifies the episode across
    publishes; `source` names the file or feed it came from; `warnings` are one-line notes for
    the editor (not compared)."""

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
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> str:
        """The episode as a JSON string (dates in ISO 8601), for the database."""

        def default(o: Any) -> Any:
            if isinstance(o, (datetime, date)):
                return o.isoformat()
            raise TypeError(type(o))

        return json.dumps(dataclasses.asdict(self), default=default, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Episode:
        """The inverse of `to_json`. Raises ValueError/KeyError on text it did not write."""
        d = json.loads(text)
        ev = d.pop("event")
        event = None
        if ev:
            event = Event(
                **{
                    **ev,
                    "starts": datetime.fromisoformat(ev["starts"]),
                    "ends": datetime.fromisoformat(ev["ends"]) if ev["ends"] else None,
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
                "event": event,
            }
        )


def episode_number(title: str) -> int | None:
    """The episode number written in a title ('Episode 3', 'Ep. 12', '#7'), else None."""
    m = re.search(r"\b(?:episode|ep\.?|#)\s*(\d{1,5})\b", title, re.I)
    return int(m[1]) if m else None


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
) -> Episode:
    """An Episode with the readers' shared defaults: slug = date + slugified title, guid = slug,
    number from the title, summary = the intro joined into one line."""
    slug = slug or f"{date.isoformat()}-{slugify(title)}"
    return Episode(
        title=title,
        date=date,
        slug=slug,
        guid=guid or slug,
        intro=intro,
        transcript=transcript,
        links=links,
        event=event,
        number=number or episode_number(title),
        summary=summary or clean_line(" ".join(intro)),
        episode_url=episode_url,
        audio_url=audio_url,
        source=source,
        warnings=warnings,
    )
