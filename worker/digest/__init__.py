"""Episode -> Digest: what the email says, decided once per episode (and per send time).

Nothing here knows about HTML; `worker.render` turns a Digest into the email.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..episodes import Episode, Link
from ..settings import Settings
from ..text import clean_line, safe_url
from .event import EventBanner, banner, event_ics, shorten
from .highlights import HIGHLIGHT_MAX_CHARS, pick

# Bounds on every part of the email, so it stays under 60 KB whatever the episode holds (Gmail
# clips at ~102 KB); the web page shows everything. Characters, not bytes.
PREHEADER_MAX = 150
SUBJECT_MAX = 150
MAX_INTRO_PARAGRAPHS = 3
INTRO_PARAGRAPH_CHARS = 600
MAX_HIGHLIGHTS = 5
MAX_EMAIL_LINKS = 40
LINK_TITLE_CHARS = 120
LINKS_BUDGET = 12_000  # characters of link titles and URLs together; the rest: "N more links"
URL_MAX = 2000  # a longer URL is left to the web page
POSTAL_CHARS = 300
# The summary reads at most this much of a transcript: a bound on time, not on what the email
# says; the sample is 27 paragraphs, 13 KB.
MAX_PARAGRAPHS = 400
MAX_PARAGRAPH_CHARS = 5000


@dataclass(frozen=True)
class Digest:
    """What the email says, every field bounded (see the constants above).

    `intro` is paragraphs; `lead_in` is True when the intro's last paragraph ends with a colon
    that introduces the highlights (the template puts them right after it); `more_links` counts
    the links left to the web page; `ics` is the calendar file's bytes (None without an event);
    `sender_postal` is the postal line without a repeat of the list's name.
    """

    episode: Episode
    subject: str
    preheader: str
    intro: tuple[str, ...]
    lead_in: bool
    highlights: tuple[str, ...]
    links: tuple[Link, ...]
    more_links: int
    web_url: str
    email_url: str  # the web copy of this email ("View this email in your browser")
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
    links, more_links = email_links(episode.links)
    highlights = highlights_for(episode)
    intro, lead_in = intro_for(episode, bool(highlights))
    return Digest(
        episode=episode,
        subject=subject_for(episode),
        preheader=preheader_for(episode),
        intro=intro,
        lead_in=lead_in,
        highlights=highlights,
        links=links,
        more_links=more_links,
        web_url=web_url,
        email_url=f"{web_url}/email",
        listen_url=_url(episode.audio_url) or _url(episode.episode_url) or web_url,
        event=banner(event, web_url) if event else None,
        ics=event_ics(event, episode, settings, web_url) if event else None,
        list_name=settings.list_name,
        sender_postal=postal_line(settings.sender_postal, settings.list_name),
    )


def smaller(digest: Digest) -> Digest | None:
    """The same digest one step shorter, or None when nothing is left to shorten.

    `worker.render` calls it until the encoded email fits its byte budget: the bounds above are
    in characters, and text in a non-Latin script costs up to 9 bytes a character once
    quoted-printable. The order keeps what matters most longest: links go first (to the web
    page), then the intro, the speakers and description, the highlights, and last the subject.
    """
    d = digest
    if d.links:
        keep = len(d.links) // 2
        return replace(d, links=d.links[:keep], more_links=d.more_links + len(d.links) - keep)
    if sum(len(p) for p in d.intro) > 300:
        return replace(d, intro=(shorten(d.intro[0], 300),), lead_in=False)
    if d.event and (d.event.speakers or d.event.description or len(d.event.venue) > 100):
        ev = d.event
        return replace(
            d,
            event=replace(
                ev,
                speakers=(),
                more_speakers=ev.more_speakers + len(ev.speakers),
                description="",
                venue=shorten(ev.venue, 100),
            ),
        )
    if len(d.highlights) > 3:
        return replace(d, highlights=d.highlights[:3])
    if any(len(h) > 160 for h in d.highlights):
        return replace(d, highlights=tuple(shorten(h, 160) for h in d.highlights))
    if d.highlights:
        return replace(d, highlights=(), lead_in=False)
    if len(d.subject) > 80 or len(d.preheader) > 80 or (d.event and len(d.event.title) > 80):
        event = (
            replace(d.event, title=shorten(d.event.title, 80), image_alt=shorten(d.event.image_alt, 80))
            if d.event
            else None
        )
        return replace(d, subject=shorten(d.subject, 80), preheader=shorten(d.preheader, 80), event=event)
    return None


def _url(url: str) -> str:
    return url if url and len(url) <= URL_MAX and safe_url(url) else ""


def email_links(links: tuple[Link, ...]) -> tuple[tuple[Link, ...], int]:
    """(the links the email shows, how many more are on the web page): safe URLs only, at most
    MAX_EMAIL_LINKS and LINKS_BUDGET characters, titles shortened."""
    usable = [lk for lk in links if _url(lk.url)]
    shown: list[Link] = []
    used = 0
    for lk in usable[:MAX_EMAIL_LINKS]:
        title = shorten(lk.title or lk.url, LINK_TITLE_CHARS)
        used += len(title) + len(lk.url)
        if used > LINKS_BUDGET:
            break
        shown.append(Link(title=title, url=lk.url))
    return tuple(shown), len(usable) - len(shown)


def intro_for(episode: Episode, has_highlights: bool) -> tuple[tuple[str, ...], bool]:
    """(intro paragraphs, lead_in). An intro ending in a colon ("…to reflect on for November:")
    announces what follows: the highlights, which the template then puts right after it; with
    no highlights to follow, the colon becomes a full stop."""
    paras = [shorten(p, INTRO_PARAGRAPH_CHARS) for p in episode.intro if p.strip()][:MAX_INTRO_PARAGRAPHS]
    if not paras or not paras[-1].endswith(":"):
        return tuple(paras), False
    if has_highlights:
        return tuple(paras), True
    paras[-1] = paras[-1].rstrip(" :") + "."
    return tuple(paras), False


def postal_line(postal: str, list_name: str) -> str:
    """The sender's postal line, without the list's name when it opens the line (the footer
    already names the list once)."""
    line = clean_line(postal)
    name = clean_line(list_name)
    if name and line.lower().startswith(name.lower()):
        line = line[len(name) :].lstrip(" ·,-–—|:")
    return shorten(line, POSTAL_CHARS)


def subject_for(episode: Episode) -> str:
    """The episode's title on one line, at most SUBJECT_MAX characters."""
    return shorten(episode.title, SUBJECT_MAX)


def preheader_for(episode: Episode) -> str:
    """The hidden preheader: the summary, else the intro, else the transcript's first paragraph,
    at most PREHEADER_MAX characters."""
    text = clean_line(episode.summary or " ".join(episode.intro) or " ".join(episode.transcript[:1]))
    return truncate_words(text, PREHEADER_MAX)


def truncate_words(text: str, limit: int) -> str:
    """`text` without trailing punctuation, cut at a word with "…" when over `limit` characters."""
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
