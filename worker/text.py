"""Text helpers shared by every stage: one-line fields, slugs and URL checks.

Nothing here knows about episodes, email or the database; every stage may import it.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

MAX_FIELD_CHARS = 500  # a title, venue or link text longer than this is cut, not rejected
MAX_URL_CHARS = 2000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
URL_IN_TEXT = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+[^\s<>\"').,;:!?\]]", re.I)


def clean_line(text: str) -> str:
    """`text` as one line: control and zero-width characters removed, CR/LF and runs of
    (non-breaking) spaces turned into single spaces, stripped. Never raises."""
    text = _CONTROL.sub("", text.replace("\r", " ").replace("\n", " "))
    return _SPACES.sub(" ", text).strip()


def one_line(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`clean_line(text)` cut to at most `limit` characters (an ellipsis marks the cut)."""
    text = clean_line(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def slugify(text: str) -> str:
    """A URL slug: ASCII letters and digits joined by '-', lower case, at most 80 characters;
    'episode' when nothing is left."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return text[:80].rstrip("-") or "episode"


def safe_url(url: str) -> str:
    """The URL if it is absolute http(s) with a host (or mailto: with an address), else ''.

    Drops javascript:, data:, relative and protocol-relative URLs, and anything with quotes,
    spaces, angle brackets or backslashes in it, or longer than 2,000 characters."""
    url = clean_line(url).strip("<>").strip()
    if not url or len(url) > MAX_URL_CHARS or any(c in url for c in " \"'<>\\`"):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url
    if parts.scheme.lower() == "mailto" and "@" in parts.path:
        return url
    return ""


def find_url(text: str) -> str:
    """The first http(s) or 'www.' URL inside `text`, checked by `safe_url` ('' when none)."""
    m = URL_IN_TEXT.search(text)
    if not m:
        return ""
    url = m.group(0)
    return safe_url(url if url.lower().startswith("http") else "https://" + url)
