"""Episode -> Digest: what the email says, decided once per episode (and per send time).

Nothing here knows about HTML; `worker.render` turns a Digest into the email.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar

from .episodes import Episode, Event, Link
from .settings import Settings
from .text import clean_line, safe_url

PREHEADER_MAX = 150
MAX_HIGHLIGHTS = 5
MIN_HIGHLIGHTS = 3
MAX_EMAIL_LINKS = 40  # the rest are on the web version; keeps every email far below Gmail's clip
HIGHLIGHT_MAX_CHARS = 320


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
        highlights=highlights(episode.transcript),
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


# -- highlights: a deterministic extractive summary (Luhn-style word salience) -------------

_STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are aren't as at be because been before
being below between both but by can could did do does doing down during each even few for from
further had has have having he her here hers herself him himself his how i i'm i'd i'll i've if in
into is it it's its itself just let's like many may me might more most much must my myself new no
nor not now of off on once one only or other ought our ours ourselves out over own per quite rather
really said same say says she should so some such than that that's the their theirs them themselves
then there there's these they they're this those though through thus to too two under until up upon
us very via was we we're we've we'll well were what when where which while who whom why will with
within without would yet you your yours yourself also still across around another every get got
going know lot lots make made next part put see seen take think time way ways week weeks month
months year years today episode podcast welcome hello thanks thank wrap
""".split()
)
_SENTENCE = re.compile(r"(?<=[.!?…])[\"”’)\]]*\s+(?=[\"“‘(\[]?[A-Z0-9£$€])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]+")


def _sentences(paragraphs: tuple[str, ...]) -> list[tuple[int, int, str]]:
    out = []
    for pi, para in enumerate(paragraphs):
        for si, s in enumerate(_SENTENCE.split(para)):
            s = s.strip()
            if s:
                out.append((pi, si, s))
    return out


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'").strip("'-") for w in _WORD.findall(text)]


def highlights(transcript: tuple[str, ...], k: int = MAX_HIGHLIGHTS) -> tuple[str, ...]:
    """Pick up to `k` salient sentences, shown in transcript order.

    Score = mean salience of the sentence's content words, where salience is the word's frequency
    in the whole transcript; opening pleasantries and sign-offs score low because their words are
    stop words. Ties break on position, so the same transcript always gives the same highlights.
    """
    sents = _sentences(transcript)
    # On a long transcript the first and last paragraphs are the welcome and the sign-off.
    edges = {0, len(transcript) - 1} if len(transcript) >= 6 else set()
    candidates = [
        (i, s) for i, (p, _, s) in enumerate(sents) if p not in edges and 8 <= len(_words(s)) <= 70 and len(s) <= 600
    ]
    # Whole sentences that fit are better than cut ones; cut only when too few fit.
    fitting = [c for c in candidates if len(c[1]) <= HIGHLIGHT_MAX_CHARS]
    if len(fitting) >= min(k, MIN_HIGHLIGHTS):
        candidates = fitting
    if not candidates:
        return ()
    freq = Counter(w for _, s in candidates for w in _words(s) if w not in _STOPWORDS and len(w) > 2)
    if not freq:
        return ()
    top = freq.most_common(1)[0][1]

    def score(item: tuple[int, str]) -> float:
        words = [w for w in _words(item[1]) if w not in _STOPWORDS and len(w) > 2]
        if len(words) < 4:
            return 0.0
        sal = sum(freq[w] / top for w in words) / math.sqrt(len(words))
        return sal

    ranked = sorted(candidates, key=lambda it: (-score(it), it[0]))
    chosen: list[tuple[int, str]] = []
    used_paragraphs: set[int] = set()
    # First pass: at most one sentence a paragraph, so the highlights cover the episode.
    for idx, s in ranked:
        if len(chosen) >= k:
            break
        para = sents[idx][0]
        if para in used_paragraphs or score((idx, s)) <= 0:
            continue
        chosen.append((idx, s))
        used_paragraphs.add(para)
    for idx, s in ranked:
        if len(chosen) >= min(k, MIN_HIGHLIGHTS):
            break
        if (idx, s) not in chosen and score((idx, s)) > 0:
            chosen.append((idx, s))
    chosen.sort()
    return tuple(truncate_words(s, HIGHLIGHT_MAX_CHARS) for _, s in chosen)


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
