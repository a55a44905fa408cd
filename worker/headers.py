"""Header fields as bytes on the wire: text in RFC 2047 encoded-words, addresses in the form
servers accept, lines folded.

- Non-ASCII text (Subject, display names in From/To, the List-Id phrase) becomes encoded-words
  of at most 75 characters each (RFC 2047 section 2), each holding whole characters, on lines of
  at most 76 characters (section 2 again), joined by folding white space, which decoders drop
  between adjacent encoded-words (section 6.2).
- ASCII text is left as it is and folded at spaces when a line would pass 78 characters
  (RFC 5322 section 2.1.1).
- An address goes out with its domain in ASCII (IDNA 2008 with UTS 46 mapping, RFC 5890); a
  local part that is not ASCII stays UTF-8 and needs a server that offers SMTPUTF8 (RFC 6531,
  RFC 6532).

Values never carry CR or LF of their own: `text.clean_line` runs first, so nothing in a value can
start a header field of its own.
"""

from __future__ import annotations

import base64
from functools import lru_cache

import idna

from .errors import InputError
from .text import clean_line

MAX_WORD = 75  # RFC 2047: an encoded-word is at most 75 characters
MAX_EW_LINE = 76  # RFC 2047: a line holding encoded-words is at most 76 characters
MAX_LINE = 78  # RFC 5322: lines SHOULD be at most 78 characters
_PREFIX = {"b": "=?utf-8?b?", "q": "=?utf-8?q?"}
# RFC 2047 section 5 (3): the characters a "Q" word may carry as they are, in any header.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_SPECIALS = set('()<>[]:;@\\,."')


@lru_cache(maxsize=2048)
def _q_char(ch: str) -> str:
    out = []
    for byte in ch.encode("utf-8"):
        if byte == 0x20:
            out.append("_")
        elif byte in _Q_SAFE:
            out.append(chr(byte))
        else:
            out.append(f"={byte:02X}")
    return "".join(out)


def _words(text: str, kind: str, first: int) -> list[str]:
    """`text` as encoded-words of kind "b" or "q"; the first at most `first` characters long,
    the others at most MAX_WORD. A word never splits a character."""
    frame = len(_PREFIX[kind]) + 2
    chunks: list[list[str]] = []
    chunk: list[str] = []
    size, budget = 0, first  # size: encoded characters ("q") or UTF-8 bytes ("b") of the chunk
    for ch in text:
        piece = _q_char(ch) if kind == "q" else ch.encode("utf-8")
        grown = size + len(piece)
        encoded = grown if kind == "q" else 4 * -(-grown // 3)
        if chunk and encoded + frame > budget:
            chunks.append(chunk)
            chunk, size, budget = [], 0, MAX_WORD
            grown = len(piece)
        chunk.append(ch)
        size = grown
    if chunk:
        chunks.append(chunk)
    if kind == "b":
        return [f"=?utf-8?b?{base64.b64encode(''.join(c).encode('utf-8')).decode('ascii')}?=" for c in chunks]
    return ["=?utf-8?q?" + "".join(map(_q_char, c)) + "?=" for c in chunks]


def encoded_words(text: str, first: int = MAX_WORD) -> list[str]:
    """`text` (one line) as RFC 2047 encoded-words, UTF-8, the shorter of "Q" and "B"; the first
    word at most `first` characters (what is left of its line), every other at most 75."""
    first = max(min(first, MAX_WORD), 16)
    q, b = _words(text, "q", first), _words(text, "b", first)
    return q if sum(map(len, q)) <= sum(map(len, b)) else b


def _fold(name: str, pieces: list[str], limit: int) -> str:
    """`Name: piece piece …` with a fold (CRLF SP) before any piece that would pass `limit`."""
    line = f"{name}:"
    out = []
    for piece in pieces:
        if len(line) + 1 + len(piece) > limit and line != f"{name}:":
            out.append(line)
            line = ""
        line += " " + piece
    out.append(line)
    return "\r\n".join(out)


def text_field(name: str, value: str) -> str:
    """A whole unstructured header field (`Subject: …`), folded, without the final CRLF."""
    value = clean_line(value)
    if value.isascii() and "=?" not in value:  # text that looks like an encoded-word is encoded
        return _fold(name, value.split(" "), MAX_LINE)
    return _fold(name, encoded_words(value, MAX_EW_LINE - len(name) - 2), MAX_EW_LINE)


def phrase(display: str, first: int = MAX_WORD) -> list[str]:
    """A display name as the pieces of a phrase: encoded-words when it is not ASCII, one quoted
    string when it holds specials (RFC 5322 section 3.2.3), else its atoms."""
    display = clean_line(display)
    if not display:
        return []
    if not display.isascii():
        return encoded_words(display, first)
    if any(c in _SPECIALS for c in display) or display.startswith("=?"):
        return ['"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return display.split(" ")


def address_field(name: str, display: str, email: str) -> str:
    """`To: Display <addr>` folded (without the final CRLF); the address in its wire form."""
    addr = f"<{wire_address(email)}>"
    pieces = phrase(display[:120], MAX_EW_LINE - len(name) - 2)
    limit = MAX_EW_LINE if pieces and pieces[0].startswith("=?") else MAX_LINE
    return _fold(name, [*pieces, addr] if pieces else [addr], limit)


def list_id_field(list_name: str, list_id: str) -> str:
    """`List-Id: phrase <list-id>` (RFC 2919) folded, the phrase as in `phrase`."""
    pieces = phrase(list_name[:120], MAX_EW_LINE - len("List-Id") - 2)
    limit = MAX_EW_LINE if pieces and pieces[0].startswith("=?") else MAX_LINE
    return _fold("List-Id", [*pieces, f"<{clean_line(list_id)}>"], limit)


def plain_address(email: str) -> str:
    """`email` if it is one plain address (no spaces, brackets, separators, exactly one @);
    InputError otherwise."""
    email = email.strip()
    if not email or any(c in email for c in '\r\n<>,;"() \t\x00') or email.count("@") != 1:
        raise InputError(f"not a single email address: {email[:80]!r}")
    return email


def wire_address(email: str) -> str:
    """The address as it goes into headers and RCPT TO: its domain in ASCII (IDNA); a non-ASCII
    local part is kept (it needs SMTPUTF8). Raises InputError for a domain IDNA cannot encode."""
    email = plain_address(email)
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """A domain in its ASCII form (`smørrebrød.example` -> `xn--smrrebrd-q5a.example`)."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InputError(f"the domain {domain[:80]!r} has no ASCII (IDNA) form: {exc}") from None


def needs_smtputf8(address: str) -> bool:
    """Whether an address in wire form still has non-ASCII characters (in its local part)."""
    return not address.isascii()
