"""Polling: new episodes from feeds (RSS/Atom, by URL or file) and from a drop folder.

Fetch the document, parse it, identify its items, record the seen ones and create campaigns;
reading an item into an Episode is `worker.episodes.read_feed_item`.

An item is new when none of its keys (`worker.feed_identity`) has a row in `seen_items`. Its
seen rows and the campaign are written in one transaction, keyed by a unique constraint, so two
pollers racing, or a poll repeated after a crash, publish an episode exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import time
import xml.sax
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from xml.parsers.expat import errors as expat_errors

import defusedxml.ElementTree as SafeET
import feedparser
import httpx
from defusedxml import DefusedXmlException
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .chapters import chapter_titles
from .db import session_scope
from .episodes import Episode, EpisodeError, entry_time, field_text, load_episode, read_feed_item
from .errors import FeedError
from .feed_identity import identify, is_weak
from .models import CampaignStatus, Feed, SeenItem, utcnow
from .publish import create_campaign, start
from .settings import Settings
from .text import one_line

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 20.0
EPISODE_SUFFIXES = {".txt", ".md", ".markdown"}
FUTURE_SKEW = timedelta(hours=1)  # clocks differ: an item dated this far ahead still counts as now
# Slips common in real feeds that leave the structure intact: an undeclared namespace prefix
# (`itunes:` without xmlns) and an HTML entity such as &nbsp;. Anything else is refused.
TOLERATED_XML_ERRORS = {expat_errors.XML_ERROR_UNBOUND_PREFIX, expat_errors.XML_ERROR_UNDEFINED_ENTITY}


@dataclass
class PollReport:
    """What one pass over one feed or folder did: slugs published (or drafted), how many items
    were already known, whether this pass primed the feed (first poll), and the error if any."""

    source: str
    new: list[str] = field(default_factory=list)  # slugs published (or drafted)
    seen: int = 0
    primed: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # items it could not tell apart, items skipped

    def as_dict(self) -> dict:
        """The report as JSON-ready dict (keys: source, new, seen, primed, error, notes)."""
        return {
            "source": self.source,
            "new": self.new,
            "seen": self.seen,
            "primed": self.primed,
            "error": self.error,
            "notes": self.notes,
        }


# -- fetching and parsing ---------------------------------------------------------------------


def fetch(url: str, etag: str | None = None, modified: str | None = None) -> tuple[bytes | None, dict]:
    """The feed's bytes (None for 304 Not Modified) and the caching headers to keep
    ({"etag": …, "modified": …} for HTTP, {} for files). `url` is http(s), file: or a path;
    at most 20 MB, 20 s timeout, 5 redirects. Raises FeedError (message starts with `url`)."""
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
                return b"".join(chunks), {
                    "etag": resp.headers.get("etag"),
                    "modified": resp.headers.get("last-modified"),
                }
    except httpx.HTTPError as exc:
        raise FeedError(f"{url}: {type(exc).__name__}: {exc}") from exc


def parse_feed(data: bytes, source: str) -> feedparser.FeedParserDict:
    """The feed document parsed by feedparser (HTML sanitised, relative URIs resolved).

    Entity tricks (XXE, billion laughs) are refused before feedparser sees the bytes. Raises
    FeedError naming `source` for those, for XML that is not well-formed (beyond an unbound
    prefix or an HTML entity) and for documents that are not feeds."""
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


# -- polling -----------------------------------------------------------------------------------


def _claim_item(session: Session, source: str, key: str) -> bool:
    """Insert the seen row; True only for the one poller whose insert took."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = session.execute(
        insert(SeenItem)
        .values(source=source, item_key=key, seen_at=utcnow())
        .on_conflict_do_nothing(index_elements=["source", "item_key"])
        .returning(SeenItem.id)
    )
    return result.first() is not None


def _feed_row(session: Session, url: str) -> Feed:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Feed).values(url=url, title="", primed=0, failures=0).on_conflict_do_nothing(index_elements=["url"])
    )
    return session.scalars(select(Feed).where(Feed.url == url)).one()


class _Taken(Exception):
    """Another poller recorded one of the item's keys first: this transaction rolls back."""


def _claim_keys(session: Session, source: str, keys: list[str]) -> None:
    """Record every key of a new item, or raise _Taken when any is already recorded (a
    concurrent poller): so one item is claimed once whichever of its keys the pollers saw.
    A link key another item recorded before (the show's page) is no claim, unless the item
    has nothing else."""
    strict = [k for k in keys if not is_weak(k)] or keys
    for key in keys:
        if not _claim_item(session, source, key) and key in strict:
            raise _Taken(key)


def _record_aliases(settings: Settings, source: str, aliases: list[str]) -> None:
    """Known items showed keys not yet recorded (a new guid scheme): record them too, in one
    transaction, so the next poll knows the items by those keys as well."""
    if aliases:
        with session_scope(settings) as session:
            for key in dict.fromkeys(aliases):
                _claim_item(session, source, key)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _poll_items(
    url: str,
    parsed: feedparser.FeedParserDict,
    settings: Settings,
    report: PollReport,
    *,
    primed: bool,
    newest: datetime | None,
    send_backlog: bool,
) -> list[int]:
    """Handle each item of the document: known ones are counted, new ones recorded and, unless
    they are back catalogue (first poll, or dated before the newest item already seen), published.
    Returns the campaign ids to start."""
    published: list[int] = []
    seen = _seen_keys(settings, url)
    aliases: list[str] = []
    ids = identify(list(parsed.entries), site_links=_channel_links(parsed.feed))
    for note in ids.notes:
        report.notes.append(note)
        log.warning("feed %s: %s", url, note)
    for entry, keys in zip(parsed.entries, ids.items, strict=True):
        when = entry_time(entry)
        newer = newest is not None and when is not None and when > newest
        if keys.known(seen, newer=newer):  # known items are not converted again on every poll
            report.seen += 1
            aliases += [k for k in keys.all if k not in seen]
            continue
        backlog = not primed or (newest is not None and when is not None and when < newest)
        try:
            episode = read_feed_item(
                entry,
                feed_url=url,
                tz=settings.tz,
                item_id=keys.primary,
                highlights=() if backlog and not send_backlog else chapter_titles(entry, feed_url=url),
            )
        except EpisodeError as exc:
            log.warning("feed %s: item %s skipped: %s", url, keys.primary, exc)
            report.notes.append(f"item skipped: {exc}")
            continue
        try:
            with session_scope(settings) as session:
                _claim_keys(session, url, keys.all)
                if backlog and not send_backlog:
                    report.seen += 1  # the back catalogue: remembered, never sent
                else:
                    _publish_item(session, url, keys.primary, episode, settings, report, published)
        except _Taken:
            report.seen += 1  # another poller got there first
        seen.update(keys.all)
    _record_aliases(settings, url, aliases)
    return published


def _channel_links(channel: dict) -> list[str]:
    """The channel's own page: RSS `<link>` and Atom `rel="alternate"` links."""
    links = [str(channel.get("link") or "")]
    links += [
        str(lk.get("href") or "") for lk in channel.get("links") or [] if lk.get("rel", "alternate") == "alternate"
    ]
    return [lk for lk in links if lk]


def poll_feed(url: str, settings: Settings, *, send_backlog: bool = False) -> PollReport:
    """One pass over one feed: fetch it (conditional GET), read its items, publish the new ones.

    How an item is identified: `worker.feed_identity`. The first poll only records the back
    catalogue, and an item dated before the newest item already seen for this feed is recorded,
    not mailed; `send_backlog` sends both. Never raises for a bad feed: the error is recorded on
    the feed row and returned in the report."""
    report = PollReport(url)
    with session_scope(settings) as session:
        feed = _feed_row(session, url)
        etag, modified, primed = feed.etag, feed.modified, bool(feed.primed)
        newest = _aware(feed.newest_item_at)
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
    if parsed is not None:
        published = _poll_items(url, parsed, settings, report, primed=primed, newest=newest, send_backlog=send_backlog)
        # an item dated in the future (a mistyped year) would hold back every later episode
        now = datetime.now(UTC) + FUTURE_SKEW
        times = [t for t in (entry_time(e) for e in parsed.entries) if t is not None and t <= now]
        newest = max([*times, *([newest] if newest else [])], default=None)
    with session_scope(settings) as session:
        feed = _feed_row(session, url)
        feed.primed = 1
        feed.last_polled_at = feed.last_ok_at = utcnow()
        feed.last_error, feed.failures = None, 0
        feed.newest_item_at = newest
        if parsed is not None:
            feed.title = one_line(field_text(parsed.feed, "title"), 300)
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


def _publish_item(
    session: Session,
    source: str,
    key: str,
    episode: Episode,
    settings: Settings,
    report: PollReport,
    published: list[int],
) -> None:
    """The new item's campaign (a draft when NEWSLETTER_AUTO_SEND is off), written in the
    transaction that recorded the item as seen."""
    result = create_campaign(session, episode, settings, draft=not settings.auto_send)
    session.execute(
        update(SeenItem).where(SeenItem.source == source, SeenItem.item_key == key).values(episode_id=result.episode.id)
    )
    if result.created:
        report.new.append(result.episode.slug)  # the recorded slug, suffixed if it collided
        if result.campaign.status == CampaignStatus.SENDING:
            published.append(result.campaign.id)


def _start(campaign_ids: list[int]) -> None:
    for cid in campaign_ids:
        start(cid)


def poll_all(settings: Settings) -> dict:
    """One pass over every feed in NEWSLETTER_FEEDS and the drop folder. Never raises: returns
    {"reports": [PollReport.as_dict(), ...], "seconds": wall time of the pass}."""
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


def feed_health(session: Session) -> list[dict]:
    """Every feed polled so far, in the order first seen: {"url", "last_error" (None when its
    last poll worked), "failures" (polls failed in a row), "last_ok_at" (ISO 8601 or None)}."""
    return [
        {
            "url": f.url,
            "last_error": f.last_error,
            "failures": f.failures,
            "last_ok_at": f.last_ok_at.isoformat() if f.last_ok_at else None,
        }
        for f in session.scalars(select(Feed).order_by(Feed.id))
    ]
