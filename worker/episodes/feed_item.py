"""A feed item (RSS/Atom, as parsed by feedparser) -> Episode.

The show notes are sanitised, turned into lines and paragraphs (`notes.notes_to_lines`) and run
through the page layout's line classifier (`page.read_body`), so an event block and links in
them are recognised as in a page file. Every field feedparser marks as HTML is turned into text
the same way (`notes.field_text`).
"""

from __future__ import annotations

import hashlib
import html
from datetime import UTC, date, datetime, tzinfo

from ..text import one_line, safe_url, slugify
from .model import Episode, Link, build_episode
from .notes import field_text, notes_to_lines
from .page import Line, check_year, read_body


def default_item_id(entry: dict) -> str:
    """The item's own identity: 'guid:…', else 'link:…', else 'hash:' + the SHA-256 of its
    title, dates and summary. The poller (`worker.feeds`) uses a sturdier identity and passes
    it to `read_feed_item` as `item_id`."""
    if entry.get("id"):
        return "guid:" + str(entry["id"])[:450]
    if entry.get("link"):
        return "link:" + str(entry["link"])[:450]
    body = "|".join(str(entry.get(k, "")) for k in ("title", "published", "updated", "summary"))
    return "hash:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()


def entry_time(entry: dict) -> datetime | None:
    """When the item was published (else updated, else created), an aware UTC datetime; None
    when the feed gives no usable date."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                year, month, day, hour, minute, second = (int(x) for x in value[:6])
                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
            except (TypeError, ValueError):
                continue
    return None


def entry_date(entry: dict, tz: tzinfo) -> date:
    """The item's calendar date in the list's zone `tz` (a Monday 20:00 in Los Angeles is a
    Monday, although it is Tuesday in UTC); today in `tz` when the feed gives no date."""
    when = entry_time(entry) or datetime.now(UTC)
    return when.astimezone(tz).date()


def enclosure_url(entry: dict) -> str:
    """The first audio enclosure, else the first video one, else the first enclosure at all
    ('' when none is a safe absolute URL)."""
    audio = ""
    for enc in entry.get("enclosures") or []:
        url = safe_url(str(enc.get("href") or enc.get("url") or ""))
        if url and (str(enc.get("type", "")).startswith(("audio/", "video/")) or not audio):
            audio = url
            if str(enc.get("type", "")).startswith("audio/"):
                break
    return audio


def _notes_html(entry: dict) -> str:
    """The show notes as HTML: the longest `content` value, else the summary, else the
    subtitle. A value the feed types as plain text is escaped first, so a '<b>' in it stays
    text and its line breaks are read as such."""
    candidates = [(str(c.get("value", "")), str(c.get("type", ""))) for c in entry.get("content") or []]
    value, kind = max(candidates, key=lambda c: len(c[0]), default=("", ""))
    if not value:
        for key in ("summary", "subtitle"):
            if entry.get(key):
                value, kind = str(entry[key]), str((entry.get(f"{key}_detail") or {}).get("type", ""))
                break
    return html.escape(value, quote=False) if kind.lower() == "text/plain" else value


def entry_title(entry: dict) -> str:
    """The item's title as text (≤ 300 characters), '' when it has none."""
    return one_line(field_text(entry, "title"), 300)


def read_feed_item(
    entry: dict, *, feed_url: str, tz: tzinfo, item_id: str | None = None, highlights: tuple[str, ...] = ()
) -> Episode:
    """A feedparser entry from the feed at `feed_url` as an Episode.

    `item_id` is the item's identity within the feed (default: `default_item_id`); guid = feed
    URL + '|' + it (≤ 500 characters). slug = date + title (+ a short hash when the item has no
    guid). The date and event times are in `tz`. `highlights` are the editor's (chapter
    titles); without them a bulleted 'Highlights' list in the notes is used. Raises EpisodeError
    when the item's date is outside 1900–2200."""
    lines = notes_to_lines(_notes_html(entry))
    title = entry_title(entry)
    if not title:
        title = one_line(lines[0].text, 80) if lines else "Untitled episode"
    day = entry_date(entry, tz)
    key = item_id or default_item_id(entry)
    source = f"{feed_url}#{key}"
    check_year(day, source=source)
    body = read_body(lines or [Line(1, title, 0)], source=source, tz=tz)
    slug = f"{day.isoformat()}-{slugify(title)}"
    if key.startswith("hash:") or not entry.get("id"):
        slug = f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"
    guid = key.split(":", 1)[1] if key.startswith("guid:") else key
    links = body.links or tuple(
        Link(title=one_line(str(lk.get("title") or lk["href"])), url=safe_url(lk["href"]))
        for lk in entry.get("links", [])
        if lk.get("rel") == "related" and safe_url(lk.get("href", ""))
    )
    return build_episode(
        title=title,
        date=day,
        slug=slug,
        guid=f"{feed_url}|{guid}"[:500],
        intro=body.intro,
        transcript=body.transcript,
        links=links,
        event=body.event,
        episode_url=safe_url(str(entry.get("link") or "")),
        audio_url=enclosure_url(entry),
        source=feed_url,
        warnings=tuple(body.warnings),
        highlights=highlights or body.highlights,
    )
