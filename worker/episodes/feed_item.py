"""A feed item (RSS/Atom, as parsed by feedparser) -> Episode.

The show notes are sanitised with nh3, turned into lines (one per block element) and run
through the page layout's line classifier (`page.read_body`), so an event block and links in
them are recognised as in a page file.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, tzinfo
from typing import Any

import lxml.html
import nh3

from ..text import clean_line, one_line, safe_url, slugify
from .model import Episode, Link, build_episode
from .page import Line, check_year, read_body

ALLOWED_TAGS = {"p", "br", "a", "ul", "ol", "li", "strong", "b", "em", "i", "blockquote", "h1", "h2", "h3", "h4"}
BLOCKS = {"p", "br", "li", "ul", "ol", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr"}


def html_to_lines(html: str) -> list[str]:
    """Show-notes HTML -> sanitised plain-text lines, one per block element (`<p>`, `<br>`,
    `<li>`…), whitespace collapsed, empty lines dropped. Links become 'text – URL' (unsafe
    URLs are dropped, their text kept); scripts, styles and other markup are removed."""
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"})
    if not clean.strip():
        return []
    root = lxml.html.fragment_fromstring(clean, create_parent="div")
    for a in root.iter("a"):
        href = safe_url(a.get("href") or "")
        label = a.text_content().strip()
        if href and label and label != href:
            a.text, a.tail = "", f"{label} – {href}" + (a.tail or "")
            for child in list(a):
                a.remove(child)
    lines: list[str] = []
    buf: list[str] = []

    def walk(el: Any) -> None:
        if el.tag in BLOCKS and buf:
            lines.append("".join(buf))
            buf.clear()
        if el.text:
            buf.append(el.text)
        for child in el:
            walk(child)
        if el.tag in BLOCKS:
            lines.append("".join(buf))
            buf.clear()
        if el.tail:
            buf.append(el.tail)

    walk(root)
    if buf:
        lines.append("".join(buf))
    return [text for text in (clean_line(re.sub(r"\s+", " ", ln)) for ln in lines) if text]


def item_key(entry: dict) -> str:
    """The item's identity within its feed: 'guid:…', else 'link:…', else 'hash:' + the SHA-256
    of its title, dates and summary (at most 455 characters)."""
    if entry.get("id"):
        return "guid:" + str(entry["id"])[:450]
    if entry.get("link"):
        return "link:" + str(entry["link"])[:450]
    body = "|".join(str(entry.get(k, "")) for k in ("title", "published", "updated", "summary"))
    return "hash:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()


def _entry_date(entry: dict) -> date:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime(*value[:6], tzinfo=UTC).date()
            except (TypeError, ValueError):
                continue
    return datetime.now(UTC).date()


def _audio_url(entry: dict) -> str:
    """The first audio enclosure, else the first video one, else the first enclosure at all."""
    audio = ""
    for enc in entry.get("enclosures") or []:
        url = safe_url(str(enc.get("href") or enc.get("url") or ""))
        if url and (str(enc.get("type", "")).startswith(("audio/", "video/")) or not audio):
            audio = url
            if str(enc.get("type", "")).startswith("audio/"):
                break
    return audio


def _notes_html(entry: dict) -> str:
    """The longest `content` value, else the summary, else the subtitle."""
    notes_html = ""
    if entry.get("content"):
        notes_html = max((c.get("value", "") for c in entry["content"]), key=len)
    return notes_html or str(entry.get("summary") or entry.get("subtitle") or "")


def read_feed_item(entry: dict, *, feed_url: str, tz: tzinfo) -> Episode:
    """A feedparser entry from the feed at `feed_url` as an Episode.

    guid = feed URL + '|' + the item's key (≤500 characters); slug = date + title (+ a short
    hash when the item has no guid); event times in `tz`. Raises EpisodeError when the item's
    date is outside 1900–2200."""
    notes = html_to_lines(_notes_html(entry))
    title = one_line(str(entry.get("title") or ""), 300)
    if not title:
        title = one_line(notes[0], 80) if notes else "Untitled episode"
    day = _entry_date(entry)
    key = item_key(entry)
    source = f"{feed_url}#{key}"
    check_year(day, source=source)
    lines = [Line(no, text, no - 1) for no, text in enumerate(notes or [title], start=1)]
    body = read_body(lines, source=source, tz=tz)
    slug = f"{day.isoformat()}-{slugify(title)}"
    if key.startswith("hash:") or not entry.get("id"):
        slug = f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"
    guid = key.split(":", 1)[1] if key.startswith("guid:") else key
    links = body.links or tuple(
        Link(title=lk.get("title") or lk["href"], url=safe_url(lk["href"]))
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
        audio_url=_audio_url(entry),
        source=feed_url,
        warnings=tuple(body.warnings),
    )
