"""An item's chapter titles, the editor's highlights for the email: the Podcasting 2.0
`podcast:chapters` JSON file (fetched over http(s)) or Podlove Simple Chapters
(`psc:chapters`, in the feed itself).

Formats: podcastindex.org "JSON Chapters Format" (podcast-namespace docs/jsonChapters.md):
`{"version": "1.2.0", "chapters": [{"startTime": 0, "title": "…", "toc": true}, …]}`;
Podlove Simple Chapters 1.2 (podlove.org/simple-chapters): `<psc:chapter start="…" title="…"/>`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from urllib.parse import urlsplit

import httpx

from .text import clean_line, safe_url

log = logging.getLogger(__name__)

MAX_CHAPTERS_BYTES = 1024 * 1024
FETCH_TIMEOUT = 10.0
# chapter titles that say where in the audio, not what it is about
_NOT_HIGHLIGHTS = {
    "intro",
    "introduction",
    "outro",
    "ad",
    "ads",
    "advert",
    "sponsor",
    "sponsors",
    "credits",
    "end",
    "start",
    "opening",
    "closing",
    "break",
    "sponsor break",
    "ad break",
    "wrap-up",
    "wrap up",
    "welcome",
    "housekeeping",
}


def is_topic(title: str) -> bool:
    """Whether a chapter title says what a part is about, not where it is ('Intro', 'Ads',
    'Sponsor break', 'Outro' are places in the audio)."""
    return clean_line(title).casefold().strip(" .!") not in _NOT_HIGHLIGHTS


def _titles(titles: list[str]) -> tuple[str, ...]:
    out = []
    for title in titles:
        text = clean_line(title)
        if text and is_topic(text) and text not in out:
            out.append(text)
    return tuple(out)


def json_chapter_titles(data: bytes) -> tuple[str, ...]:
    """The titles of a JSON chapters file, in order, without chapters marked `"toc": false`
    and without titles such as 'Intro' or 'Ads'. () when the document is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return ()
    chapters = doc.get("chapters") if isinstance(doc, dict) else None
    if not isinstance(chapters, list):
        return ()
    return _titles(
        [str(c.get("title") or "") for c in chapters if isinstance(c, dict) and c.get("toc", True) is not False]
    )


def psc_chapter_titles(entry: dict) -> tuple[str, ...]:
    """The titles of an entry's Podlove Simple Chapters (feedparser's `psc_chapters`)."""
    chapters = (entry.get("psc_chapters") or {}).get("chapters") or []
    return _titles([str(c.get("title") or "") for c in chapters if isinstance(c, dict)])


class _Refused(Exception):
    """A hop of the chapters request led to a private address."""


def _public_or_same_host(url: str, feed_url: str) -> bool:
    """The feed names the chapters URL, so it must not reach into our own network: the host is
    the feed's own, or every address it resolves to is a public one."""
    host = (urlsplit(url).hostname or "").lower()
    if host and host == (urlsplit(feed_url).hostname or "").lower():
        return True
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return bool(addresses) and all(a.is_global and not a.is_multicast for a in addresses)


def fetch_json_chapters(url: str, *, feed_url: str = "") -> tuple[str, ...]:
    """Fetch a `podcast:chapters` file and return its titles: http or https only, on the feed's
    own host or a public address, at most 1 MB, 10 s, 3 redirects. () on any failure (logged):
    missing chapters never stop an episode."""
    url = safe_url(url)
    if not url or urlsplit(url).scheme not in ("http", "https"):
        return ()

    def check(request: httpx.Request) -> None:  # every hop, redirects included
        if not _public_or_same_host(str(request.url), feed_url):
            raise _Refused(str(request.url))

    try:
        with httpx.Client(
            timeout=FETCH_TIMEOUT, follow_redirects=True, max_redirects=3, event_hooks={"request": [check]}
        ) as client:
            with client.stream("GET", url, headers={"User-Agent": "newsletter-worker (+chapters)"}) as resp:
                if resp.status_code >= 400:
                    log.warning("chapters %s: HTTP %s", url, resp.status_code)
                    return ()
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_CHAPTERS_BYTES:
                        log.warning("chapters %s: larger than %d bytes", url, MAX_CHAPTERS_BYTES)
                        return ()
                    chunks.append(chunk)
    except (httpx.HTTPError, _Refused) as exc:
        log.warning("chapters %s: %s", url, exc)
        return ()
    return json_chapter_titles(b"".join(chunks))


def chapter_titles(entry: dict, *, feed_url: str = "") -> tuple[str, ...]:
    """The chapter titles of an entry of the feed at `feed_url`: its `podcast:chapters` JSON
    file when it has one that can be read, else its Podlove Simple Chapters, else ()."""
    link = entry.get("podcast_chapters") or {}
    if isinstance(link, dict) and link.get("url"):
        if titles := fetch_json_chapters(str(link["url"]), feed_url=feed_url):
            return titles
    return psc_chapter_titles(entry)
