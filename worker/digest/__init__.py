"""Episode -> Digest: what the email says, decided once per episode (and per send time).

Nothing here knows about HTML; `worker.render` turns a Digest into the email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar

from ..episodes import Episode, Event, Link
from ..settings import Settings
from ..text import clean_line, safe_url
from .highlights import HIGHLIGHT_MAX_CHARS, pick

PREHEADER_MAX = 150
MAX_HIGHLIGHTS = 5
# The summary reads at most this much of a transcript (the web page shows all of it): a bound
# on time, not on what the email can say; the sample is 27 paragraphs, 13 KB.
MAX_PARAGRAPHS = 400
MAX_PARAGRAPH_CHARS = 5000
MAX_EMAIL_LINKS = 40  # the rest are on the web version; keeps every email far below Gmail's clip


@dataclass(frozen=True)
class EventBanner:
    title: str
    weekday_date: str  # "Wednesday 29 November 2023"
    time_range: str  # "5:30pm – 7:30pm GMT" ('' for an all-day event)
    venue: str
    speakers: tuple[tuple[str, str], ...]
    description: tuple[str, ...]
    button_url: str
    button_label: str
    calendar_url: str
    image_url: str
    image_alt: str
    heading: str


@dataclass(frozen=True)
class Digest:
    episode: Episode
    subject: str
    preheader: str
    intro: tuple[str, ...]
    highlights: tuple[str, ...]
    links: tuple[Link, ...]
    more_links: int
    web_url: str
    listen_url: str
    event: EventBanner | None
    ics: bytes | None
    list_name: str
    sender_postal: str


def send_time(settings: Settings, as_of: datetime | None = None) -> datetime:
    """The instant an email is judged "as of": the one rule for render, send-test, publish and
    the preview.

    `as_of` is the send time when the caller knows it (a scheduled send, `--as-of`, a campaign's
    recorded `as_of`); None means now, which is the send time of a test or a publish. A naive
    value is read in `settings.tz`. Returns an aware datetime.
    """
    if as_of is None:
        return datetime.now(UTC)
    return as_of if as_of.tzinfo else as_of.replace(tzinfo=settings.tz)


def build_digest(episode: Episode, settings: Settings, as_of: datetime | None = None) -> Digest:
    """What the email for `episode` says when sent at `as_of` (see `send_time`; None = now).

    An event that has finished by the send time is not advertised: no banner, no `.ics`.
    Deterministic for a given (episode, settings, as_of).
    """
    as_of = send_time(settings, as_of)
    web_url = f"{settings.base_url}/episodes/{episode.slug}"
    event = episode.event if episode.event and episode.event.finishes > as_of else None
    links = tuple(lk for lk in episode.links if safe_url(lk.url))
    return Digest(
        episode=episode,
        subject=subject_for(episode),
        preheader=preheader_for(episode),
        intro=tuple(p for p in episode.intro if p)[:3],
        highlights=highlights_for(episode),
        links=links[:MAX_EMAIL_LINKS],
        more_links=max(0, len(links) - MAX_EMAIL_LINKS),
        web_url=web_url,
        listen_url=episode.audio_url or episode.episode_url or web_url,
        event=_banner(event, episode, settings, web_url) if event else None,
        ics=event_ics(event, episode, settings, web_url) if event else None,
        list_name=settings.list_name,
        sender_postal=settings.sender_postal,
    )


def subject_for(episode: Episode) -> str:
    return clean_line(episode.title)[:150]


def preheader_for(episode: Episode) -> str:
    text = clean_line(episode.summary or " ".join(episode.intro) or " ".join(episode.transcript[:1]))
    return truncate_words(text, PREHEADER_MAX)


def truncate_words(text: str, limit: int) -> str:
    text = text.rstrip(" :;,")
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:–—-") + "…"


# -- highlights ---------------------------------------------------------------------------


def highlights_for(episode: Episode, k: int = MAX_HIGHLIGHTS) -> tuple[str, ...]:
    """The editor's highlights when the episode has them (front matter `highlights:`, feed
    chapters, a bulleted list in the show notes), else an extractive summary of the transcript
    (`worker.digest.highlights.pick`): at most MAX_HIGHLIGHTS lines of at most
    HIGHLIGHT_MAX_CHARS characters each (`k`: how many at most)."""
    edited = tuple(h for h in (clean_line(str(x)) for x in getattr(episode, "highlights", ()) or ()) if h)
    if edited:
        return tuple(truncate_words(h, HIGHLIGHT_MAX_CHARS) for h in edited[:k])
    avoid: set[str] = set()
    if episode.event:
        avoid.add(clean_line(episode.event.title).lower())
        avoid.update(clean_line(sp.name).lower() for sp in episode.event.speakers if len(sp.name) > 3)
    transcript = tuple(p[:MAX_PARAGRAPH_CHARS] for p in episode.transcript[:MAX_PARAGRAPHS])
    return pick(
        transcript,
        title=episode.title,
        intro=" ".join([episode.summary, *episode.intro]),
        avoid=frozenset(a for a in avoid if a),
        k=k,
    )


# -- the event banner and its calendar file -------------------------------------------------


def _fmt_time(dt: datetime) -> str:
    hour = dt.hour % 12 or 12
    return f"{hour}{dt.strftime(':%M') if dt.minute else ''}{'am' if dt.hour < 12 else 'pm'}"


def _banner(event: Event, episode: Episode, settings: Settings, web_url: str) -> EventBanner:
    starts = event.starts.astimezone(settings.tz) if event.starts.tzinfo else event.starts
    weekday_date = f"{starts.strftime('%A')} {starts.day} {starts.strftime('%B %Y')}"
    if event.all_day:
        time_range = ""
    elif event.ends:
        ends = event.ends.astimezone(settings.tz)
        time_range = f"{_fmt_time(starts)} – {_fmt_time(ends)} {starts.strftime('%Z')}"
    else:
        time_range = f"{_fmt_time(starts)} {starts.strftime('%Z')}"
    button_url = event.signup_url or f"{web_url}#event"
    return EventBanner(
        title=event.title,
        weekday_date=weekday_date,
        time_range=time_range.strip(),
        venue=event.venue,
        speakers=tuple((s.name, s.role) for s in event.speakers),
        description=event.description[:2],
        button_url=button_url,
        button_label="Sign up for the event" if event.signup_url else "Event details",
        calendar_url=f"{web_url}/event.ics",
        image_url=event.banner_image,
        image_alt=event.banner_alt or event.title,
        heading=event.heading or "Upcoming event",
    )


def event_ics(event: Event, episode: Episode, settings: Settings, web_url: str) -> bytes:
    """An iCalendar file for the event. Deterministic (DTSTAMP is the episode date), so the same
    episode always gives the same bytes."""
    cal = icalendar.Calendar()
    cal.add("prodid", f"-//{settings.list_name}//newsletter-worker//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    ev = icalendar.Event()
    ev.add("uid", f"{episode.slug}-event@{settings.sender_domain}")
    ev.add("dtstamp", datetime.combine(episode.date, datetime.min.time(), UTC))
    if event.all_day:
        ev.add("dtstart", event.starts.date())
        ev.add("dtend", (event.ends or event.starts + timedelta(days=1)).date())
    else:
        ev.add("dtstart", event.starts.astimezone(UTC))
        ev.add("dtend", event.finishes.astimezone(UTC))
    ev.add("summary", event.title)
    if event.venue:
        ev.add("location", event.venue)
    desc = list(event.description)
    if event.speakers:
        desc.append("Speakers: " + "; ".join(f"{s.name}, {s.role}".strip(", ") for s in event.speakers))
    desc.append(event.signup_url or web_url)
    ev.add("description", "\n\n".join(desc))
    ev.add("url", event.signup_url or web_url)
    cal.add_component(ev)
    return cal.to_ical()
