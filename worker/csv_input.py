"""Tables as people's tools save them: CSV or tab-separated text from Excel, Numbers, Google
Sheets, LibreOffice and mail tools.

- Encoding: a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32); UTF-16 without one is
  recognised by its zero bytes. Otherwise each line is UTF-8 when it decodes as UTF-8, else
  Windows-1252 (what Excel's "CSV (Comma delimited)" writes) with a warning naming the lines.
- Separator: comma, semicolon (Excel where the decimal mark is a comma), tab ("Unicode Text") or
  a vertical bar, whichever makes a header the caller recognises; Excel's `sep=;` first line too.
- Quotes follow RFC 4180; a quoted field may span at most `MAX_RECORD_LINES` lines and never
  swallows a line holding an "@" (an address in a list of people). A line whose
  quotes do not pair up is read as plain fields with a warning, so one stray quote in a name
  never swallows the rows after it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InputError

DELIMITERS = (",", ";", "\t", "|")
MAX_RECORD_LINES = 20
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NEWLINE = re.compile(r"\r\n|\r|\n")
# Five byte values have no Windows-1252 character; read them as Latin-1 (C1 control
# characters), which the caller's cleaning removes, instead of failing the line.
_LATIN1 = "newsletter-latin1"


def _latin1(e: UnicodeError) -> tuple[str, int]:
    if not isinstance(e, UnicodeDecodeError):
        raise e
    return e.object[e.start : e.end].decode("latin-1"), e.end


codecs.register_error(_LATIN1, _latin1)
SAVE_AS = (
    'in Excel use File > Save As > "CSV UTF-8 (Comma delimited)" (or "Unicode Text"); '
    "in Numbers, Google Sheets or LibreOffice export as CSV with UTF-8"
)


@dataclass
class Table:
    """A decoded table. `rows`: (line number of the row's first line in the file, cells), the
    header first; `encoding`: how it was read ("utf-8", "utf-16", "utf-32", "windows-1252",
    or "utf-8+windows-1252" for a file that mixes both); `warnings`: one-line notes for the user."""

    rows: list[tuple[int, list[str]]]
    delimiter: str
    encoding: str
    warnings: list[str] = field(default_factory=list)


def read_table(data: bytes, source: str, accept_header: Callable[[list[str]], bool]) -> Table:
    """Decode and split `data` (a whole file). `accept_header(cells)` says whether a first row,
    split one way, is a header (or a first row) the caller can use; the separator that makes it
    so wins, else the one most frequent in the first line.

    Raises InputError (naming `source`) for a file that is not text at all or is empty."""
    lines, encoding, warnings = decode_lines(data, source)
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        raise InputError("the file is empty", source=source)
    delimiter = None
    m = re.fullmatch(r'"?sep=(.)"?\s*', lines[start])
    if m:  # Excel's own hint on the first line
        delimiter, start = m.group(1), start + 1
    if delimiter is None:
        delimiter = _pick_delimiter(lines[start], accept_header)
    rows: list[tuple[int, list[str]]] = []
    loose: list[int] = []
    i = start
    while i < len(lines):
        cells, used, clean = _record(lines, i, delimiter)
        if not clean:
            loose.append(i + 1)
        if any(c.strip() for c in cells):
            rows.append((i + 1, cells))
        i += used
    if loose:
        warnings.append(f"{source}: {_lines(loose)}: quotes do not pair up; read as plain fields")
    return Table(rows=rows, delimiter=delimiter, encoding=encoding, warnings=warnings)


def decode_lines(data: bytes, source: str) -> tuple[list[str], str, list[str]]:
    """The file's lines (line endings kept), the encoding used and warnings. See the module doc."""
    if data[:4] == b"PK\x03\x04":
        raise InputError(f"this is a spreadsheet workbook, not CSV: {SAVE_AS}", source=source)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            if encoding == "utf-8":
                return _utf8_or_1252(data[len(bom) :], source)
            return _split(_decode(data, encoding, source)), encoding, []
    sample = data[:4096]
    if b"\x00" in sample:
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if odd > len(sample) // 4 and even == 0:
            return _split(_decode(data, "utf-16-le", source)), "utf-16", []
        if even > len(sample) // 4 and odd == 0:
            return _split(_decode(data, "utf-16-be", source)), "utf-16", []
        raise InputError(f"this is a binary file, not CSV: {SAVE_AS}", source=source)
    return _utf8_or_1252(data, source)


def _utf8_or_1252(data: bytes, source: str) -> tuple[list[str], str, list[str]]:
    try:
        return _split(data.decode("utf-8")), "utf-8", []
    except UnicodeDecodeError:
        pass
    lines, fallback, utf8 = [], [], 0
    for n, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode("utf-8"))
            utf8 += any(b > 0x7F for b in raw)
        except UnicodeDecodeError:
            lines.append(raw.decode("cp1252", errors=_LATIN1))
            fallback.append(n)
    encoding = "utf-8+windows-1252" if utf8 else "windows-1252"
    verb = "are" if len(fallback) > 1 else "is"
    warning = (
        f'{source}: {_lines(fallback)} {verb} not UTF-8; read as Windows-1252 (Excel\'s "CSV (Comma delimited)"). '
        f"If a name looks wrong, {SAVE_AS}"
    )
    return lines, encoding, [warning]


def _decode(data: bytes, encoding: str, source: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid {encoding.upper()} at byte {exc.start}: {SAVE_AS}", source=source) from None


def _split(text: str) -> list[str]:
    """Lines with their endings, on CR, LF or CRLF only (not on the other Unicode breaks)."""
    text = text.removeprefix("\ufeff")
    out, pos = [], 0
    for m in _NEWLINE.finditer(text):
        out.append(text[pos : m.end()])
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def _pick_delimiter(first: str, accept_header: Callable[[list[str]], bool]) -> str:
    by_count = sorted(DELIMITERS, key=lambda d: -first.count(d))
    for d in by_count:
        if first.count(d) and accept_header(_record([first], 0, d)[0]):
            return d
    if accept_header(_record([first], 0, ",")[0]):  # one column
        return ","
    return by_count[0] if first.count(by_count[0]) else ","


def _record(lines: list[str], i: int, delimiter: str) -> tuple[list[str], int, bool]:
    """The record starting at line i: (cells, lines used, whether its quotes paired up)."""
    line = lines[i]
    if '"' not in line:
        return line.rstrip("\r\n").split(delimiter), 1, True
    chunk = ""
    for used in range(1, min(MAX_RECORD_LINES, len(lines) - i) + 1):
        chunk += lines[i + used - 1]
        try:
            rows = list(csv.reader(io.StringIO(chunk, newline=""), delimiter=delimiter, strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                continue  # a quoted field goes on to the next line
            break
        if len(rows) == 1 and not any("@" in lines[i + k] for k in range(1, used)):
            return rows[0], used, True
        break  # a line break inside quotes never swallows a line holding an address
    cells = [c.strip().strip('"').replace('""', '"') for c in line.rstrip("\r\n").split(delimiter)]
    return cells, 1, False


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    more = f" and {len(numbers) - 5} more" if len(numbers) > 5 else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"
