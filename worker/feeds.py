"""New episodes from feeds (RSS/Atom, by URL or file) and from a drop folder.

An item is new when its key (guid, else link, else a content hash) has no row in `seen_items`.
The seen row and the campaign are written in one transaction, keyed by a unique constraint, so
two pollers racing, or a poll repeated after a crash, publish an episode exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import xml.sax
from xml.parsers.expat import errors as expat_errors
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import defusedxml.ElementTree as SafeET
import feedparser
import httpx
import lxml.html
import nh3
from defusedxml import DefusedXmlException
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .db import session_scope
from .episodes import Episode, EpisodeError, Link, load_episode, one_line, parse_page, safe_url, slugify
from .ledger import create_campaign
from .models import CampaignStatus, Feed, SeenItem, utcnow
from .settings import Settings

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 20.0
ALLOWED_TAGS = {"p", "br", "a", "ul", "ol", "li", "strong", "b", "em", "i", "blockquote", "h1", "h2", "h3", "h4"}
BLOCKS = {"p", "br", "li", "ul", "ol", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr"}
EPISODE_SUFFIXES = {".txt", ".md", ".markdown"}
# Slips common in real feeds that leave the structure intact: an undeclared namespace prefix
# (`itunes:` without xmlns) and an HTML entity such as &nbsp;. Anything else is refused.
TOLERATED_XML_ERRORS = {expat_errors.XML_ERROR_UNBOUND_PREFIX, expat_errors.XML_ERROR_UNDEFINED_ENTITY}


class FeedError(Exception):
    """A feed that could not be fetched or read."""


@dataclass
class PollReport:
    source: str
    new: list[str] = field(default_factory=list)  # slugs published (or drafted)
    seen: int = 0
    primed: bool = False
    error: str | None = None

    def as_dict(self) -> dict:
        return {"source": self.source, "new": self.new, "seen": self.seen, "primed": self.primed, "error": self.error}


# -- fetching and parsing ---------------------------------------------------------------------

def fetch(url: str, etag: str | None = None, modified: str | None = None) -> tuple[bytes | None, dict]:
    """The feed's bytes (None for 304 Not Modified) and the caching headers to keep."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme == "file" else url)
        try:
            if path.stat().st_size > MAX_FEED_BYTES:
                raise FeedError(f"{path}: larger than {MAX_FEED_BYTES // (1024 * 1024)} MB")
            return path.read_bytes(), {}
        except OSError as exc:
            raise FeedError(f"{path}: {exc.strerror}") from exc
    if parts.scheme not in ("http", "https"):
        raise FeedError(f"{url}: only http, https and local files are polled")
    headers = {"User-Agent": "newsletter-worker (+feed poller)"}
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True, max_redirects=5) as client:
            with client.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 304:
                    return None, {}
                if resp.status_code >= 400:
                    raise FeedError(f"{url}: HTTP {resp.status_code}")
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_FEED_BYTES:
                        raise FeedError(f"{url}: larger than {MAX_FEED_BYTES // (1024 * 1024)} MB")
                    chunks.append(chunk)
                return b"".join(chunks), {"etag": resp.headers.get("etag"),
                                          "modified": resp.headers.get("last-modified")}
    except httpx.HTTPError as exc:
        raise FeedError(f"{url}: {type(exc).__name__}: {exc}") from exc


def parse_feed(data: bytes, source: str) -> feedparser.FeedParserDict:
    """Refuse entity tricks (XXE, billion laughs) before feedparser sees the bytes."""
    try:
        SafeET.fromstring(data)
    except DefusedXmlException as exc:
        raise FeedError(f"{source}: refused: the feed declares entities ({type(exc).__name__})") from exc
    except SafeET.ParseError:
        pass  # not well-formed: feedparser's lenient parser may still read it
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=True)
    problem = parsed.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXParseException) and problem.getMessage() not in TOLERATED_XML_ERRORS:
        # A truncated or broken document: what the lenient parser salvages may be half an item.
        raise FeedError(f"{source}: not well-formed XML ({problem})")
    if not parsed.entries:
        if parsed.get("bozo"):
            raise FeedError(f"{source}: not a readable feed ({parsed.get('bozo_exception')})")
        if not parsed.get("feed"):
            raise FeedError(f"{source}: not a feed")
    return parsed


def html_to_text(html: str) -> str:
    """Show notes HTML -> sanitised -> plain text with one line per block, links as 'text – URL'."""
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"})
    if not clean.strip():
        return ""
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

    def walk(el) -> None:  # noqa: ANN001
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
    paragraphs = [re.sub(r"\s+", " ", ln).strip() for ln in lines]
    return "\n\n".join(p for p in paragraphs if p)


def item_key(entry: dict) -> str:
    """guid, else link, else a hash of what the item says."""
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
                return datetime(*value[:6], tzinfo=timezone.utc).date()
            except (TypeError, ValueError):
                continue
    return utcnow().date()


def entry_to_episode(entry: dict, feed_url: str, settings: Settings) -> Episode:
    """A feed item as an Episode: its show notes read like the page layout (event, links)."""
    title = one_line(str(entry.get("title") or ""), 300)
    notes_html = ""
    if entry.get("content"):
        notes_html = max((c.get("value", "") for c in entry["content"]), key=len)
    notes_html = notes_html or str(entry.get("summary") or entry.get("subtitle") or "")
    notes = html_to_text(notes_html)
    if not title:
        title = one_line(notes.split("\n")[0], 80) if notes else "Untitled episode"
    day = _entry_date(entry)
    key = item_key(entry)
    link = safe_url(str(entry.get("link") or ""))
    audio = ""
    for enc in entry.get("enclosures") or []:
        url = safe_url(str(enc.get("href") or enc.get("url") or ""))
        if url and (str(enc.get("type", "")).startswith(("audio/", "video/")) or not audio):
            audio = url
            if str(enc.get("type", "")).startswith("audio/"):
                break
    page = f"{title}\n\n{day.isoformat()}\n\n{notes or title}\n"
    base = parse_page(page, source=f"{feed_url}#{key}", tz=settings.tz)
    guid = key.split(":", 1)[1] if key.startswith("guid:") else key
    slug = f"{day.isoformat()}-{slugify(title)}"
    if key.startswith("hash:") or not entry.get("id"):
        slug = f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"
    links = base.links or tuple(Link(lk.get("title") or lk["href"], safe_url(lk["href"]))
                                for lk in entry.get("links", []) if lk.get("rel") == "related"
                                and safe_url(lk.get("href", "")))
    return Episode(title=base.title, date=day, slug=slug, guid=f"{feed_url}|{guid}"[:500], intro=base.intro,
                   transcript=base.transcript, links=links, event=base.event, number=base.number,
                   summary=base.summary, episode_url=link, audio_url=audio, source=feed_url,
                   warnings=base.warnings)


# -- polling -----------------------------------------------------------------------------------

def _claim_item(session: Session, source: str, key: str) -> bool:
    """Insert the seen row; True only for the one poller whose insert took."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = session.execute(
        insert(SeenItem).values(source=source, item_key=key, seen_at=utcnow())
        .on_conflict_do_nothing(index_elements=["source", "item_key"]).returning(SeenItem.id))
    return result.first() is not None


def _feed_row(session: Session, url: str) -> Feed:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(Feed).values(url=url, title="", primed=0, failures=0)
                    .on_conflict_do_nothing(index_elements=["url"]))
    return session.scalars(select(Feed).where(Feed.url == url)).one()


def poll_feed(url: str, settings: Settings, *, send_backlog: bool = False) -> PollReport:
    """One pass over one feed. Never raises for a bad feed: the error is recorded and returned."""
    report = PollReport(url)
    with session_scope(settings) as session:
        feed = _feed_row(session, url)
        etag, modified, primed = feed.etag, feed.modified, bool(feed.primed)
    try:
        data, cache = fetch(url, etag, modified)
        parsed = parse_feed(data, url) if data is not None else None
    except FeedError as exc:
        report.error = str(exc)
        log.error("feed %s failed: %s", url, exc)
        with session_scope(settings) as session:
            feed = _feed_row(session, url)
            feed.last_polled_at, feed.last_error, feed.failures = utcnow(), report.error, feed.failures + 1
        return report
    published: list[int] = []
    seen = _seen_keys(settings, url)
    for entry in (parsed.entries if parsed else []):
        key = item_key(entry)
        if key in seen:  # known items are not converted again on every poll
            report.seen += 1
            continue
        try:
            episode = entry_to_episode(entry, url, settings)
        except EpisodeError as exc:
            log.warning("feed %s: item %s skipped: %s", url, key, exc)
            continue
        with session_scope(settings) as session:
            if not _claim_item(session, url, key):  # another poller got there first
                report.seen += 1
                continue
            if not primed and not send_backlog:
                report.seen += 1  # the back catalogue: remembered, never sent
                continue
            _publish_item(session, url, key, episode, settings, report, published)
    with session_scope(settings) as session:
        feed = _feed_row(session, url)
        feed.primed = 1
        feed.last_polled_at = feed.last_ok_at = utcnow()
        feed.last_error, feed.failures = None, 0
        if parsed is not None:
            feed.title = one_line(str(parsed.feed.get("title", "")), 300)
            feed.etag, feed.modified = cache.get("etag"), cache.get("modified")
    report.primed = not primed
    _start(published)
    if report.new:
        log.info("feed %s: new episodes %s", url, ", ".join(report.new))
    return report


def poll_folder(folder: Path, settings: Settings) -> PollReport:
    """Episode files dropped into a folder. Write them elsewhere and move them in, so a
    half-written file is never read; files starting with '.' or ending in '~' are ignored."""
    source = f"dir:{folder.resolve()}"
    report = PollReport(source)
    published: list[int] = []
    if not folder.is_dir():
        report.error = f"{folder}: not a folder"
        log.error("episodes folder %s is missing", folder)
        return report
    seen = _seen_keys(settings, source)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.endswith("~") or path.suffix.lower() not in EPISODE_SUFFIXES:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        key = f"{path.name}:{hashlib.sha256(data).hexdigest()[:32]}"
        if key in seen:
            report.seen += 1
            continue
        try:
            episode = load_episode(path, settings.tz, data=data)
        except EpisodeError as exc:
            error = str(exc)
            episode = None
        with session_scope(settings) as session:
            if not _claim_item(session, source, key):
                report.seen += 1
                continue
            if episode is None:
                log.error("episode file refused: %s", error)  # remembered, so logged once per version
                report.error = error
                continue
            _publish_item(session, source, key, episode, settings, report, published)
    _start(published)
    return report


def _seen_keys(settings: Settings, source: str) -> set[str]:
    with session_scope(settings) as session:
        return set(session.scalars(select(SeenItem.item_key).where(SeenItem.source == source)))


def _publish_item(session: Session, source: str, key: str, episode: Episode, settings: Settings,
                  report: PollReport, published: list[int]) -> None:
    """The new item's campaign (a draft when NEWSLETTER_AUTO_SEND is off), written in the
    transaction that recorded the item as seen."""
    result = create_campaign(session, episode, settings, draft=not settings.auto_send)
    session.execute(update(SeenItem).where(SeenItem.source == source, SeenItem.item_key == key)
                    .values(episode_id=result.episode.id))
    if result.created:
        report.new.append(result.episode.slug)  # the recorded slug, suffixed if it collided
        if result.campaign.status == CampaignStatus.SENDING:
            published.append(result.campaign.id)


def _start(campaign_ids: list[int]) -> None:
    if campaign_ids:
        from .publish import start

        for cid in campaign_ids:
            start(cid)


def poll_all(settings: Settings) -> dict:
    reports = []
    started = time.monotonic()
    for url in settings.feed_list:
        try:
            reports.append(poll_feed(url, settings).as_dict())
        except Exception as exc:  # noqa: BLE001 - one feed must never stop the others or beat
            log.exception("feed %s: unexpected error", url)
            reports.append(PollReport(url, error=f"unexpected: {exc}").as_dict())
    if settings.episodes_dir:
        reports.append(poll_folder(settings.path(settings.episodes_dir), settings).as_dict())
    return {"reports": reports, "seconds": round(time.monotonic() - started, 3)}
