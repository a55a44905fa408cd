"""Text typed as HTML by a feed -> plain text: show notes into lines and paragraphs (for the
page layout's line classifier), and one-line fields (titles) into text.

Everything goes through nh3 first (scripts, styles, event handlers and unsafe URLs removed),
then lxml reads the text, so entities are decoded exactly once: the result is text, to be
escaped once by whoever puts it into HTML.
"""

from __future__ import annotations

import re
from typing import Any

import lxml.html
import nh3

from ..text import clean_line, safe_url
from .page import Line

ALLOWED_TAGS = {
    "p",
    "br",
    "a",
    "ul",
    "ol",
    "li",
    "strong",
    "b",
    "em",
    "i",
    "blockquote",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
}
BLOCKS = {"p", "li", "ul", "ol", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"}
HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
_BLOCK_TAG = re.compile(r"<\s*(?:{}|br)\b".format("|".join(sorted(BLOCKS))), re.I)
_TAG = re.compile(r"<(/?)([a-zA-Z0-9]+)[^>]*>")
VOID = {"br"}
# libxml2's HTML parser drops everything nested deeper than 256 elements; editors that leave
# tags unclosed get there. Wrappers past this depth are dropped (their content is kept).
MAX_DEPTH = 64


def _flatten(clean: str) -> str:
    """Well-formed (sanitised) HTML with the elements nested deeper than MAX_DEPTH removed:
    a block element there becomes a line break, an inline one goes; text and links stay."""
    if clean.count("<") < MAX_DEPTH:
        return clean
    out: list[str] = []
    stack: list[bool] = []  # per open element: was its start tag kept
    kept_depth = 0
    pos = 0
    for m in _TAG.finditer(clean):
        out.append(clean[pos : m.start()])
        pos = m.end()
        closing, tag = m[1] == "/", m[2].lower()
        if tag in VOID:
            out.append(m[0])
        elif not closing:
            keep = kept_depth < MAX_DEPTH or tag == "a"  # a link never holds another
            stack.append(keep)
            kept_depth += keep
            out.append(m[0] if keep else ("<br>" if tag in BLOCKS else ""))
        elif stack:
            keep = stack.pop()
            kept_depth -= keep
            out.append(m[0] if keep else ("<br>" if tag in BLOCKS else ""))
    out.append(clean[pos:])
    return "".join(out)


def _sanitised_root(html: str, *, with_links: bool) -> Any:
    """The sanitised fragment as an lxml element (None when nothing is left). With
    `with_links`, a link becomes 'text – URL' (its URL dropped when unsafe)."""
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"})
    if not clean.strip():
        return None
    root = lxml.html.fragment_fromstring(_flatten(clean), create_parent="div")
    for a in root.iter("a"):
        href = safe_url(a.get("href") or "") if with_links else ""
        label = a.text_content().strip()
        if href and label and label != href:
            a.text, a.tail = "", f"{label} – {href}" + (a.tail or "")
            for child in list(a):
                a.remove(child)
    return root


class _Lines:
    """Collects text into lines and paragraphs while the tree is walked."""

    def __init__(self, plain: bool):
        self.plain = plain  # no block tags: newlines in the text are the line breaks
        self.buf: list[str] = []
        self.out: list[tuple[str, int]] = []
        self.para = 0
        self.broke = False  # a line has just been ended by a break: another one ends the paragraph

    def text(self, s: str) -> None:
        """Add text to the current line (in plain text, its newlines break lines)."""
        if not self.plain:
            self.buf.append(s)
            return
        for i, piece in enumerate(re.split(r"\r\n|\r|\n", s)):
            if i:
                self.line_break(blank_ok=True)
            self.buf.append(piece)

    def line_break(self, *, blank_ok: bool = False) -> None:
        """End the line; an empty line (a blank line in plain text, `<br><br>`) ends the paragraph."""
        text = clean_line(re.sub(r"\s+", " ", "".join(self.buf)))
        self.buf.clear()
        if text:
            self.out.append((text, self.para))
            self.broke = True
        elif (blank_ok or self.broke) and self.out and self.out[-1][1] == self.para:
            self.para += 1

    def para_break(self) -> None:
        """End the line and the paragraph (a block element's start or end)."""
        self.line_break()
        self.broke = False
        if self.out and self.out[-1][1] == self.para:
            self.para += 1


def notes_to_lines(html: str) -> list[Line]:
    """Show notes (HTML, or plain text with line breaks) -> their non-blank lines, cleaned, with
    paragraph numbers: a block element (`<p>`, `<li>`, `<h2>`…) is a paragraph, `<br>` breaks a
    line inside it (`<br><br>` ends the paragraph); in notes without such tags a newline breaks
    a line and a blank line ends a paragraph. A list item's line starts with '• '. `Line.no`
    counts the lines (1-based)."""
    root = _sanitised_root(html, with_links=True)
    if root is None:
        return []
    plain = not _BLOCK_TAG.search(nh3.clean(html, tags=ALLOWED_TAGS, attributes={}))
    return [Line(no, text, para) for no, (text, para) in enumerate(_walk(root, plain), start=1)]


def _walk(root: Any, plain: bool) -> list[tuple[str, int]]:
    acc = _Lines(plain)

    def walk(el: Any) -> None:
        if el.tag == "br":
            acc.line_break()
        elif el.tag in BLOCKS:
            acc.para_break()
        if el.tag == "li":
            acc.text("• ")  # a list item stays recognisable as one (highlights, links)
        if el.text:
            acc.text(el.text)
        for child in el:
            walk(child)
        if el.tag in BLOCKS:
            acc.para_break()
        if el.tail:
            acc.text(el.tail)

    walk(root)
    acc.line_break()
    return acc.out


def html_to_lines(html: str) -> list[str]:
    """Show-notes HTML -> its plain-text lines (see `notes_to_lines`), links as 'text – URL'."""
    return [ln.text for ln in notes_to_lines(html)]


def html_to_text(html: str) -> str:
    """An HTML-typed one-line field (a title) -> plain text: tags dropped, entities decoded once,
    whitespace collapsed ('Don&#8217;t' -> 'Don’t', 'Q&amp;A' -> 'Q&A')."""
    root = _sanitised_root(html, with_links=False)
    return " ".join(text for text, _ in _walk(root, plain=False)) if root is not None else ""


def field_text(entry: dict, key: str) -> str:
    """The entry's field `key` ('title', 'summary', 'author'…) as one line of text: turned from
    HTML when feedparser marks it as HTML (`<key>_detail.type`), else cleaned as it is."""
    value = entry.get(key)
    if not value:
        return ""
    detail = entry.get(f"{key}_detail") or {}
    if str(detail.get("type", "")).lower() in HTML_TYPES:
        return html_to_text(str(value))
    return clean_line(str(value))
