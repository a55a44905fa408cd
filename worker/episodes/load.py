"""Episode files: bytes -> text (with one-line errors for unreadable files) -> the reader
their content calls for."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path

from ..errors import EpisodeError
from .markdown import parse_markdown
from .model import Episode
from .page import parse_page

MAX_EPISODE_BYTES = 20 * 1024 * 1024


def read_text(path: Path, data: bytes | None = None) -> str:
    """The file's text (UTF-8, with or without BOM, or UTF-16 with a BOM). `data`, when given,
    is used instead of reading `path`. Raises EpisodeError naming the file (and the line of a
    bad byte) when it cannot be read, is over 20 MB, empty, binary or not UTF-8."""
    src = str(path)
    if data is None:
        data = _read_bytes(path)
    if not data.strip():
        raise EpisodeError("the file is empty", source=src)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise EpisodeError("not valid UTF-16 text", source=src) from exc
    if b"\x00" in data[:8192]:
        raise EpisodeError("this is a binary file, not a text episode", source=src)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EpisodeError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8",
            source=src,
            line=line,
        ) from exc


def _read_bytes(path: Path) -> bytes:
    src = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EpisodeError(f"cannot read the file ({exc.strerror})", source=src) from exc
    if size > MAX_EPISODE_BYTES:
        raise EpisodeError(
            f"the file is {size // (1024 * 1024)} MB; an episode document may be at most "
            f"{MAX_EPISODE_BYTES // (1024 * 1024)} MB",
            source=src,
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EpisodeError(f"cannot read the file ({exc.strerror})", source=src) from exc


def load_episode(path: str | Path, tz: tzinfo, data: bytes | None = None) -> Episode:
    """Read an episode document into an Episode, choosing the reader by its content: front
    matter ('---' first, or a .md/.markdown name) -> Markdown, else the page layout. Naive
    times are wall-clock times in `tz`. Raises EpisodeError (one line naming the file and the
    line or field)."""
    path = Path(path)
    text = read_text(path, data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip("\ufeff").startswith("---\n") or path.suffix.lower() in (".md", ".markdown"):
        return parse_markdown(text, source=str(path), tz=tz)
    return parse_page(text, source=str(path), tz=tz)
