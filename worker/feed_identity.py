"""Which feed item is which: the identity keys of the items of one feed document.

Feeds change under a poller: a site moves to https or to a new host and every `<guid>` changes
with it, show notes are edited, items are reordered, dropped from the window and re-added, and
some feeds have no guid and give every item the home page as its link. So an item is known by
several keys, strongest first:

- `id:`   its guid, and for a guid that is a URL only its path and query (scheme and host
          dropped, so http→https and a new host keep the identity);
- `link:` its link, the same way;
- `enc:`  its enclosure's host and path (no scheme, no query: tracking parameters change);
- `td:`   its title and publication date (in UTC), case and spacing folded.

An item is known when any of its keys was recorded for the feed; handling an item records all
of its keys (and the key older versions recorded, `legacy_key`). A key that several items of
one document share (every link the home page) tells nothing and is not used for them; the poll
reports it. Only when all keys are shared are those items treated as one. A guid or link that is
the site itself or the channel's own link (the show's page) names no item either.

A link is the weakest key: a feed that carries only its newest item may link every item to the
show's page, which no single document reveals as shared. So a link (and an older version's
'link:' key) identifies an item only when the item is not newer than the newest item already
seen: a re-keyed old item is still known by it, a new week's item is not taken for last week's.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .episodes import default_item_id, enclosure_url, entry_time, entry_title
from .text import clean_line

KINDS = ("id", "link", "enc", "td")
KIND_NAMES = {"id": "guid", "link": "link", "enc": "enclosure URL", "td": "title and date"}
MAX_KEY_CHARS = 450


@dataclass
class ItemKeys:
    """The keys of one item, strongest first (never empty; `primary` is the first), plus the
    key earlier versions of the poller recorded for it ('' when other items share it)."""

    keys: list[str]
    legacy: str

    @property
    def primary(self) -> str:
        """The strongest usable key that is not a link (a link only when nothing else is left):
        the episode's identity."""
        return next((k for k in self.keys if not is_weak(k)), self.keys[0])

    def known(self, seen: set[str], *, newer: bool) -> bool:
        """Whether any key is in `seen`; links do not count for an item `newer` than the
        newest item already seen (they may be the show's page)."""
        return any(k in seen for k in self.all if not (newer and is_weak(k)))

    @property
    def all(self) -> list[str]:
        """Every key to look up and record for the item (no duplicates)."""
        return list(dict.fromkeys([*self.keys, *([self.legacy] if self.legacy else [])]))


@dataclass
class Identities:
    """The keys of every item of one document, in document order, and what the poll should
    say about items it could not tell apart (one line per key kind)."""

    items: list[ItemKeys] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_weak(key: str) -> bool:
    """A link key ('link:…', this version's or an older one's): it may name the show's page."""
    return key.startswith("link:")


def _short(value: str) -> str:
    """A key value bounded in length: long values keep a prefix and a hash of the whole."""
    if len(value) <= MAX_KEY_CHARS:
        return value
    return value[: MAX_KEY_CHARS - 17] + "#" + hashlib.sha256(value.encode()).hexdigest()[:16]


def url_identity(value: str) -> str:
    """A URL without scheme and host (path + query, trailing slash dropped; '/' for the site
    itself), or the value itself, stripped, when it is not a URL ('urn:uuid:…', 'ep-12')."""
    value = clean_line(value)
    parts = urlsplit(value)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        path = parts.path.rstrip("/") or "/"
        return path + ("?" + parts.query if parts.query else "")
    return value


def _enclosure_identity(entry: dict) -> str:
    url = enclosure_url(entry)
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.netloc.lower().removeprefix("www.")
    return host + parts.path


def _title_date(entry: dict) -> str:
    title = re.sub(r"[\W_]+", " ", entry_title(entry).casefold()).strip()
    when = entry_time(entry)
    if not title and not when:
        return ""
    return f"{title}|{when.date().isoformat() if when else ''}"


def candidate_keys(entry: dict) -> dict[str, str]:
    """kind -> key for each kind the entry has ('' values left out)."""
    values = {
        "id": url_identity(str(entry.get("id") or "")),
        "link": url_identity(str(entry.get("link") or "")),
        "enc": _enclosure_identity(entry),
        "td": _title_date(entry),
    }
    return {kind: f"{kind}:{_short(v)}" for kind, v in values.items() if v}


def legacy_key(entry: dict) -> str:
    """The key versions before this one recorded ('guid:' + raw guid, else 'link:', else a hash)."""
    return default_item_id(entry)


def identify(entries: list[dict], site_links: list[str] | tuple[str, ...] = ()) -> Identities:
    """The keys of each entry of one document. A key shared by several entries is dropped
    for them, and a note says how many items could not be told apart by that kind of key.
    `site_links` are the channel's own links (RSS `<link>`, Atom alternate): a guid or link
    equal to one of them names no item."""
    site = {f"{kind}:{url_identity(link)}" for link in site_links if link for kind in ("id", "link")}
    found = [candidate_keys(e) for e in entries]
    counts = Counter(key for keys in found for key in keys.values())
    out = Identities()
    for kind in KINDS:
        shared = sum(1 for keys in found if kind in keys and counts[keys[kind]] > 1)
        if shared:
            out.notes.append(
                f"{shared} items share the same {KIND_NAMES[kind]}; they are told apart by "
                + (", then ".join(KIND_NAMES[k] for k in KINDS[KINDS.index(kind) + 1 :]) or "nothing else")
            )
    legacy = [_legacy_unless_site(e, site) for e in entries]
    legacy_counts = Counter(legacy)
    for entry, keys, old in zip(entries, found, legacy, strict=True):
        usable = [
            keys[k]
            for k in KINDS
            if k in keys and counts[keys[k]] == 1 and not _site_only(keys[k]) and keys[k] not in site
        ]
        if not usable:  # nothing tells it apart: the strongest shared key makes it one item with the others
            usable = [keys[k] for k in KINDS if k in keys][:1] or [old or _fallback(entry)]
        # the key older versions recorded counts only where it told items apart
        out.items.append(ItemKeys(keys=usable, legacy=old if old and legacy_counts[old] == 1 else ""))
    return out


def _legacy_unless_site(entry: dict, site: set[str]) -> str:
    """The older version's key, '' when its guid or link is the channel's own link."""
    old = legacy_key(entry)
    kind, _, value = old.partition(":")
    if kind in ("guid", "link") and f"{'id' if kind == 'guid' else 'link'}:{url_identity(value)}" in site:
        return ""
    return old


def _fallback(entry: dict) -> str:
    """The last resort when even the older key names the site: a hash of the item's text."""
    body = "|".join(str(entry.get(k, "")) for k in ("title", "published", "updated", "summary"))
    return "hash:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()


def _site_only(key: str) -> bool:
    """'id:/' or 'link:/': the site's home page, which names no item even when only one has it."""
    return key.endswith(":/")
