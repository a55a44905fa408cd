"""Episode documents -> one `Episode` model.

Three inputs give the same model: the show's plain-text page layout, a Markdown file with YAML
front matter, and a feed item (see `worker.feeds`). Everything read here is data: nothing in an
episode is ever treated as template source or as a header.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import EpisodeError

MAX_EPISODE_BYTES = 20 * 1024 * 1024
MAX_FIELD_CHARS = 500  # a title, venue or link text longer than this is cut, not rejected
MAX_LINKS = 200


@dataclass(frozen=True)
class Speaker:
    name: str
    role: str = ""


@dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True)
class Event:
    title: str
    starts: datetime  # aware
    ends: datetime | None = None  # aware
    all_day: bool = False  # only a date was given
    venue: str = ""
    signup_url: str = ""
    speakers: tuple[Speaker, ...] = ()
    description: tuple[str, ...] = ()
    banner_image: str = ""
    banner_alt: str = ""
    heading: str = ""

    @property
    def finishes(self) -> datetime:
        if self.ends:
            return self.ends
        if self.all_day:
            return self.starts + timedelta(days=1)
        return self.starts + timedelta(hours=2)


@dataclass(frozen=True)
class Episode:
    title: str
    date: date
    slug: str
    guid: str
    intro: tuple[str, ...] = ()
    transcript: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    event: Event | None = None
    number: int | None = None
    summary: str = ""
    episode_url: str = ""
    audio_url: str = ""
    source: str = ""
    warnings: tuple[str, ...] = field(default=(), compare=False)

    # -- (de)serialisation for the database ------------------------------------------------

    def to_json(self) -> str:
        def default(o: Any) -> Any:
            if isinstance(o, (datetime, date)):
                return o.isoformat()
            raise TypeError(type(o))

        return json.dumps(dataclasses.asdict(self), default=default, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Episode:
        d = json.loads(text)
        ev = d.pop("event")
        event = None
        if ev:
            event = Event(
                **{
                    **ev,
                    "starts": datetime.fromisoformat(ev["starts"]),
                    "ends": datetime.fromisoformat(ev["ends"]) if ev["ends"] else None,
                    "speakers": tuple(Speaker(**s) for s in ev["speakers"]),
                    "description": tuple(ev["description"]),
                }
            )
        return cls(
            **{
                **d,
                "date": date.fromisoformat(d["date"]),
                "intro": tuple(d["intro"]),
                "transcript": tuple(d["transcript"]),
                "links": tuple(Link(**lk) for lk in d["links"]),
                "warnings": tuple(d.get("warnings", ())),
                "event": event,
            }
        )


# -- shared text helpers -------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def clean_line(text: str) -> str:
    """One line of text: no control characters, no CR/LF, single spaces."""
    text = _CONTROL.sub("", text.replace("\r", " ").replace("\n", " "))
    return _SPACES.sub(" ", text).strip()


def one_line(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    text = clean_line(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def slugify(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return text[:80].rstrip("-") or "episode"


def safe_url(url: str) -> str:
    """The URL if it is absolute http(s) (or mailto), else ''. Drops javascript:, data: and friends."""
    url = clean_line(url).strip("<>").strip()
    if not url or len(url) > 2000 or any(c in url for c in ' "\'<>\\`'):
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


_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_DATE_DMY = re.compile(
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3,9})\.?,?\s+(\d{4})$", re.I)
_DATE_MDY = re.compile(
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?([a-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$", re.I)
_DATE_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_SLASH = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def parse_date(text: str) -> date | None:
    """A calendar date in the forms the show writes ('23 Nov 2023', 'Thursday 23rd November 2023',
    'Nov 23, 2023', '2023-11-23', '23/11/2023' read day-first). None when it is not one."""
    text = clean_line(text).rstrip(".")
    try:
        if m := _DATE_ISO.match(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _DATE_DMY.match(text):
            month = _MONTHS.get(m[2][:3].lower())
            return date(int(m[3]), month, int(m[1])) if month and _month_word(m[2]) else None
        if m := _DATE_MDY.match(text):
            month = _MONTHS.get(m[1][:3].lower())
            return date(int(m[3]), month, int(m[2])) if month and _month_word(m[1]) else None
        if m := _DATE_SLASH.match(text):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None
    return None


def _month_word(word: str) -> bool:
    full = ["january", "february", "march", "april", "may", "june", "july", "august",
            "september", "october", "november", "december"]
    w = word.lower()
    return any(f.startswith(w) for f in full) or w == "sept"


_TIME = r"(\d{1,2})(?:[.:](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?"
_TIME_RANGE = re.compile(
    rf"(?<![\d.:]){_TIME}\s*(?:–|—|-|to|until)\s*{_TIME}(?:\s*\(?([A-Z]{{2,5}})\)?)?", re.I)
_ONE_TIME = re.compile(rf"(?:^|\b(?:at|from)\s+){_TIME}\b", re.I)


def _to_time(hour: str, minute: str | None, ampm: str | None, default_pm: bool | None) -> time | None:
    h, m = int(hour), int(minute or 0)
    suffix = (ampm or "").lower().replace(".", "")
    if suffix == "pm" or (not suffix and default_pm and h < 12):
        h = h + 12 if h < 12 else h
    elif suffix == "am" and h == 12:
        h = 0
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return time(h, m)


def parse_time_range(text: str) -> tuple[time, time | None] | None:
    """'5.30pm – 7.30pm', '18:00-20:00', '6 to 8pm' -> (start, end). A lone '6.30pm' -> (start, None)."""
    text = clean_line(text)
    m = _TIME_RANGE.search(text)
    if m and (m[3] or m[6] or m[2] or m[5]):
        end_pm = (m[6] or "").lower().startswith("p")
        start = _to_time(m[1], m[2], m[3], default_pm=end_pm if not m[3] else None)
        end = _to_time(m[4], m[5], m[6], default_pm=None)
        if start and end:
            return start, end
    m = _ONE_TIME.search(text)
    if m and (m[3] or m[2]):
        start = _to_time(m[1], m[2], m[3], default_pm=None)
        if start:
            return start, None
    return None


_URL_IN_TEXT = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+[^\s<>\"').,;:!?\]]", re.I)


def find_url(text: str) -> str:
    m = _URL_IN_TEXT.search(text)
    if not m:
        return ""
    url = m.group(0)
    return safe_url(url if url.lower().startswith("http") else "https://" + url)


def episode_number(title: str) -> int | None:
    m = re.search(r"\b(?:episode|ep\.?|#)\s*(\d{1,5})\b", title, re.I)
    return int(m[1]) if m else None


def summary_from(paragraphs: tuple[str, ...] | list[str]) -> str:
    return clean_line(" ".join(paragraphs))


# -- reading files -------------------------------------------------------------------------

def read_text(path: Path, data: bytes | None = None) -> str:
    """Bytes -> text, or an EpisodeError naming the file and what is wrong with it."""
    src = str(path)
    if data is None:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise EpisodeError(f"cannot read the file ({exc.strerror})", source=src) from exc
        if size > MAX_EPISODE_BYTES:
            raise EpisodeError(
                f"the file is {size // (1024 * 1024)} MB; an episode document may be at most "
                f"{MAX_EPISODE_BYTES // (1024 * 1024)} MB", source=src)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EpisodeError(f"cannot read the file ({exc.strerror})", source=src) from exc
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
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8", source=src, line=line) from exc


def load_episode(path: str | Path, tz: tzinfo, data: bytes | None = None) -> Episode:
    """Read an episode document, choosing the reader by its content (front matter or page)."""
    path = Path(path)
    text = read_text(path, data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip("\ufeff").startswith("---\n") or path.suffix.lower() in (".md", ".markdown"):
        return parse_markdown(text, source=str(path), tz=tz)
    return parse_page(text, source=str(path), tz=tz)


# -- the plain-text page layout ------------------------------------------------------------

_LINKS_HEADING = re.compile(
    r"^(?:links?\s*(?:&|and|\+)\s*sources?|links?|sources?|show\s*notes|resources|references)\s*:?$", re.I)
_EVENT_HEADING = re.compile(r"^.{0,80}\bevent\s*:?$", re.I)
_SPEAKERS = re.compile(r"^(?:speakers?|panel(?:l?ists)?|with)\s*:\s*(.*)$", re.I)
_LINK_SEP = re.compile(r"^(?P<title>.+?)\s*(?:\s[–—-]\s|\s?[–—]\s?|:\s)\s*(?P<url>(?:https?://|www\.)\S+)\s*$", re.I)
_MD_LINK = re.compile(r"^\[(?P<title>[^\]]+)\]\((?P<url>[^)\s]+)\)$")
_BULLET = re.compile(r"^(?:[-*•·▪‣◦]|\d{1,3}[.)])\s+")


@dataclass
class _Line:
    no: int  # 1-based line number in the file
    text: str
    para: int  # index of the paragraph (run of non-blank lines) it belongs to


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    para = 0
    blank = True
    for no, raw in enumerate(text.split("\n"), start=1):
        line = clean_line(raw)
        if not line:
            blank = True
            continue
        if blank and out:
            para += 1
        blank = False
        out.append(_Line(no, line, para))
    return out


def _paragraphs(lines: list[_Line]) -> tuple[str, ...]:
    paras: dict[int, list[str]] = {}
    for ln in lines:
        paras.setdefault(ln.para, []).append(ln.text)
    return tuple(" ".join(p) for p in paras.values())


def _link_from(text: str) -> Link | None:
    text = _BULLET.sub("", text).strip()
    if m := _MD_LINK.match(text):
        url = safe_url(m["url"])
        return Link(one_line(m["title"]), url) if url else None
    bare = find_url(text)
    if bare and _URL_IN_TEXT.fullmatch(text.strip()):
        return Link(urlsplit(bare).netloc + urlsplit(bare).path.rstrip("/"), bare)
    if m := _LINK_SEP.match(text):
        url = find_url(m["url"])
        if url:
            return Link(one_line(m["title"].rstrip(" :–—-")), url)
    return None


def _is_link_line(text: str) -> bool:
    return _link_from(text) is not None


def parse_speakers(text: str) -> tuple[Speaker, ...]:
    """'Name, Role, Org; Name, Role' -> speakers (first comma splits name from role)."""
    speakers = []
    for chunk in re.split(r"\s*;\s*", clean_line(text)):
        chunk = chunk.strip(" .")
        if not chunk:
            continue
        name, _, role = chunk.partition(",")
        speakers.append(Speaker(one_line(name, 120), one_line(role.strip(), 240)))
    return tuple(speakers[:30])


def parse_page(text: str, *, source: str, tz: tzinfo) -> Episode:
    lines = _lines(text)
    if not lines:
        raise EpisodeError("the file has no text", source=source)
    title_line = lines[0]
    title = one_line(title_line.text, 300)
    if len(lines) < 2:
        raise EpisodeError("expected a date line (e.g. '23 Nov 2023') after the title", source=source,
                           line=title_line.no + 1)
    date_line = lines[1]
    ep_date = parse_date(date_line.text)
    if ep_date is None:
        raise EpisodeError(
            f"expected the episode date (e.g. '23 Nov 2023') after the title, found "
            f"{one_line(date_line.text, 60)!r}", source=source, line=date_line.no)
    if not (1900 <= ep_date.year <= 2200):
        raise EpisodeError(f"the date {ep_date.isoformat()} is out of range", source=source, line=date_line.no)

    rest = lines[2:]
    warnings: list[str] = []
    ev_at = next((i for i, ln in enumerate(rest) if _EVENT_HEADING.match(ln.text) and len(ln.text) <= 80), None)
    links_at = next((i for i, ln in enumerate(rest) if _LINKS_HEADING.match(ln.text)), None)
    if ev_at is not None and links_at is not None and links_at < ev_at:
        ev_at = None  # an "...event" line inside the transcript is not the event block

    first_heading = min(i for i in (ev_at, links_at, len(rest)) if i is not None)
    if ev_at is None and links_at is None:
        # No headings at all: the first paragraph is the intro, the rest is transcript.
        first_para = rest[0].para if rest else None
        intro_lines = [ln for ln in rest if ln.para == first_para]
        body = [ln for ln in rest if ln.para != first_para]
        return _episode(title, ep_date, _paragraphs(intro_lines), None, (), _paragraphs(body),
                        source, warnings)
    intro_lines = rest[:first_heading]

    event = None
    after_event = first_heading
    if ev_at is not None:
        closed = links_at is not None and links_at > ev_at
        event, used = _parse_event(rest[ev_at:links_at if closed else len(rest)], closed, source, tz, warnings)
        after_event = ev_at + used
        if event is None:
            # Not an event block after all: its lines stay part of the intro.
            after_event = links_at if links_at is not None else ev_at + 1
            intro_lines = rest[:after_event]

    links: list[Link] = []
    transcript_from = after_event
    if links_at is not None and links_at >= after_event:
        i = links_at + 1
        while i < len(rest):
            ln = rest[i]
            link = _link_from(ln.text)
            if link is None and i + 1 < len(rest) and len(ln.text) <= 160 and rest[i + 1].para == ln.para:
                # "Title" then the URL on the next line of the same paragraph.
                nxt = rest[i + 1].text.strip()
                url = find_url(nxt)
                if url and _URL_IN_TEXT.fullmatch(nxt):
                    link = Link(one_line(ln.text.rstrip(" :–—-")), url)
                    i += 1
            if link is None:
                break
            if len(links) < MAX_LINKS:
                links.append(link)
            i += 1
        if len(links) == MAX_LINKS:
            warnings.append(f"only the first {MAX_LINKS} links are kept")
        transcript_from = i
    elif links_at is not None:
        transcript_from = links_at + 1

    transcript = _paragraphs(rest[transcript_from:])
    return _episode(title, ep_date, _paragraphs(intro_lines), event, tuple(links), transcript, source, warnings)


def _parse_event(block: list[_Line], closed: bool, source: str, tz: tzinfo,
                 warnings: list[str]) -> tuple[Event | None, int]:
    """The event block: heading, [caption], title, time range, date, venue, description, Speakers.

    `closed` says a Links heading ends the block (so all of it belongs to the event). Returns the
    event (or None when the block has no date) and how many lines it used."""
    heading = block[0]
    body = block[1:]
    when_idx = [i for i, ln in enumerate(body[:12])
                if parse_date(ln.text) or parse_time_range(ln.text) or _date_in(ln.text)]
    if not when_idx:
        warnings.append(f"{source}: line {heading.no}: an event heading without a date or time; "
                        "the block is read as intro text")
        return None, 0
    first_when = when_idx[0]
    # Consecutive date/time lines form the "when" of the event.
    last_when = first_when
    while last_when + 1 < len(body) and last_when + 1 in when_idx:
        last_when += 1
    before = [ln.text for ln in body[:first_when]]
    ev_title = before[-1] if before else heading.text
    caption = " ".join(before[:-1])

    day: date | None = None
    span: tuple[time, time | None] | None = None
    for ln in body[first_when:last_when + 1]:
        day = day or parse_date(ln.text) or _date_in(ln.text)
        span = span or parse_time_range(ln.text)
    if day is None:
        warnings.append(f"{source}: line {body[first_when].no}: the event has a time but no date; "
                        "it is not advertised")
        return None, 0

    i = last_when + 1
    venue = ""
    signup = ""
    if i < len(body) and body[i].para == body[last_when].para and not _SPEAKERS.match(body[i].text):
        venue = body[i].text
        i += 1
    speakers_at = next((j for j in range(i, len(body)) if _SPEAKERS.match(body[j].text)), None)
    speakers: tuple[Speaker, ...] = ()
    if speakers_at is not None:
        description = body[i:speakers_at]
        speakers = parse_speakers(_SPEAKERS.match(body[speakers_at].text)[1])
        used_to = speakers_at + 1
        # a speakers line may wrap onto more lines of the same paragraph
        while used_to < len(body) and body[used_to].para == body[speakers_at].para:
            speakers += parse_speakers(body[used_to].text)
            used_to += 1
        if closed:
            description += body[used_to:]
            used_to = len(body)
    elif closed or i >= len(body):
        description = body[i:]
        used_to = len(body)
    else:
        # Neither Speakers line nor Links heading: only the next paragraph is the description.
        description = [ln for ln in body[i:] if ln.para == body[i].para]
        used_to = i + len(description)

    for ln in [*body[first_when:last_when + 1], *body[last_when + 1:used_to]]:
        url = find_url(ln.text)
        if url and not signup:
            signup = url
    if signup and venue:
        venue = _CALL_TO_ACTION.sub("", _URL_IN_TEXT.sub("", venue).strip(" -–—|,:"))
        venue = one_line(venue.strip(" -–—|,:"), 300)
    elif venue:
        venue = one_line(venue, 300)

    start_t, end_t = (span if span else (None, None))
    if start_t is None:
        starts = datetime.combine(day, time(0, 0), tz)
        event = Event(one_line(ev_title, 300), starts, None, True, venue, signup, speakers,
                      _paragraphs(description), "", one_line(caption, 300), one_line(heading.text, 120))
    else:
        starts = datetime.combine(day, start_t, tz)
        ends = datetime.combine(day, end_t, tz) if end_t else None
        if ends and ends <= starts:
            ends += timedelta(days=1)  # runs past midnight
        event = Event(one_line(ev_title, 300), starts, ends, False, venue, signup, speakers,
                      _paragraphs(description), "", one_line(caption, 300), one_line(heading.text, 120))
    return event, 1 + used_to


# "Online – register at <URL>": once the URL is the signup link, the words pointing at it go too.
_CALL_TO_ACTION = re.compile(
    r"[\s,;:|–—-]*\b(?:register|sign\s*up|book(?:\s+(?:a\s+)?(?:place|seat|tickets?))?|tickets?|rsvp)"
    r"(?:\s+(?:at|here|now|via|on))?\s*:?\s*$", re.I)

_DATE_IN = re.compile(
    r"\b(\d{1,2}(?:st|nd|rd|th)?\s+[A-Za-z]{3,9}\.?,?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}|\d{4}-\d{2}-\d{2})\b")


def _date_in(text: str) -> date | None:
    """A date inside a longer line ('Wednesday 29 November 2023, 5.30pm')."""
    if len(text) > 120:
        return None
    for m in _DATE_IN.finditer(text):
        if d := parse_date(m.group(1)):
            return d
    return None


def _episode(title: str, ep_date: date, intro: tuple[str, ...], event: Event | None, links: tuple[Link, ...],
             transcript: tuple[str, ...], source: str, warnings: list[str], **extra: Any) -> Episode:
    slug = extra.pop("slug", None) or f"{ep_date.isoformat()}-{slugify(title)}"
    guid = extra.pop("guid", None) or slug
    return Episode(
        title=title, date=ep_date, slug=slug, guid=guid, intro=intro, transcript=transcript, links=links,
        event=event, number=extra.pop("number", None) or episode_number(title),
        summary=extra.pop("summary", None) or summary_from(intro), source=source,
        warnings=tuple(warnings), **extra)


# -- Markdown with YAML front matter --------------------------------------------------------

def _field(d: dict, key: str, kind: type | tuple[type, ...], source: str, path: str, required: bool = False) -> Any:
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise EpisodeError("is required", source=source, field=path)
        return None
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise EpisodeError(f"expected {names}, got {type(value).__name__} {str(value)[:40]!r}",
                           source=source, field=path)
    return value


def _as_datetime(value: Any, tz: tzinfo, source: str, path: str) -> tuple[datetime, bool]:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)), False
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), tz), True
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            d = parse_date(value)
            if d is None:
                raise EpisodeError(f"expected a date-time like 2023-11-29T17:30, got {value[:40]!r}",
                                   source=source, field=path) from None
            return datetime.combine(d, time(0, 0), tz), True
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)), False
    raise EpisodeError(f"expected a date-time like 2023-11-29T17:30, got {type(value).__name__}",
                       source=source, field=path)


def parse_markdown(text: str, *, source: str, tz: tzinfo) -> Episode:
    text = text.lstrip("\ufeff")
    if not text.startswith("---\n"):
        raise EpisodeError("a Markdown episode starts with a '---' front-matter block", source=source, line=1)
    end = re.search(r"^(?:---|\.\.\.)\s*$", text[4:], re.M)
    if not end:
        raise EpisodeError("the front matter is not closed by a '---' line", source=source, line=1)
    front = text[4:4 + end.start()]
    body = text[4 + end.end():]
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise EpisodeError(f"front matter is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                           source=source, line=(mark.line + 2) if mark else None) from None
    if not isinstance(meta, dict):
        raise EpisodeError("the front matter must be a mapping of fields", source=source, line=2)

    title = _field(meta, "title", (str, int, float), source, "title", required=True)
    title = one_line(str(title), 300)
    if not title:
        raise EpisodeError("is required", source=source, field="title")
    raw_date = meta.get("date")
    if raw_date is None:
        raise EpisodeError("is required", source=source, field="date")
    if isinstance(raw_date, datetime):
        ep_date = raw_date.date()
    elif isinstance(raw_date, date):
        ep_date = raw_date
    else:
        ep_date = parse_date(str(raw_date))
        if ep_date is None:
            raise EpisodeError(f"expected a date like 2023-11-23, got {str(raw_date)[:40]!r}",
                               source=source, field="date")
    if not (1900 <= ep_date.year <= 2200):
        raise EpisodeError(f"the date {ep_date.isoformat()} is out of range", source=source, field="date")

    number = meta.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
        raise EpisodeError(f"expected a whole number, got {str(number)[:20]!r}", source=source, field="number")
    summary = one_line(str(_field(meta, "summary", str, source, "summary") or ""), 1000)

    links = []
    raw_links = _field(meta, "links", list, source, "links") or []
    for i, item in enumerate(raw_links[:MAX_LINKS]):
        if not isinstance(item, dict):
            raise EpisodeError("expected a mapping with title and url", source=source, field=f"links[{i}]")
        url = safe_url(str(item.get("url") or ""))
        if url:
            links.append(Link(one_line(str(item.get("title") or url)), url))

    event = None
    raw_event = _field(meta, "event", dict, source, "event")
    if raw_event:
        starts, all_day = _as_datetime(raw_event.get("starts"), tz, source, "event.starts")
        ends = None
        if raw_event.get("ends") is not None:
            ends, _ = _as_datetime(raw_event["ends"], tz, source, "event.ends")
            if ends <= starts:
                raise EpisodeError("must be after event.starts", source=source, field="event.ends")
        ev_title = _field(raw_event, "title", (str, int), source, "event.title", required=True)
        speakers = []
        for i, sp in enumerate(_field(raw_event, "speakers", list, source, "event.speakers") or []):
            if isinstance(sp, str):
                speakers.extend(parse_speakers(sp))
            elif isinstance(sp, dict) and sp.get("name"):
                speakers.append(Speaker(one_line(str(sp["name"]), 120), one_line(str(sp.get("role") or ""), 240)))
            else:
                raise EpisodeError("expected a name (and role)", source=source, field=f"event.speakers[{i}]")
        desc = raw_event.get("description") or ""
        event = Event(
            title=one_line(str(ev_title), 300), starts=starts, ends=ends, all_day=all_day and ends is None,
            venue=one_line(str(raw_event.get("venue") or ""), 300),
            signup_url=safe_url(str(raw_event.get("signup_url") or "")),
            speakers=tuple(speakers[:30]),
            description=tuple(p for p in (clean_line(x) for x in str(desc).split("\n\n")) if p),
            banner_image=_https_image(str(raw_event.get("banner_image") or "")),
            banner_alt=one_line(str(raw_event.get("banner_alt") or ""), 300),
        )

    paragraphs = _markdown_paragraphs(body)
    intro = (summary,) if summary else paragraphs[:1]
    transcript = paragraphs if summary else paragraphs[1:]
    slug = meta.get("slug")
    if slug is not None:
        slug = slugify(str(slug))
    extra = {
        "slug": slug, "guid": one_line(str(meta["guid"]), 300) if meta.get("guid") else None,
        "number": number, "summary": summary or None,
        "episode_url": safe_url(str(meta.get("episode_url") or meta.get("url") or "")),
        "audio_url": safe_url(str(meta.get("audio_url") or meta.get("audio") or "")),
    }
    return _episode(title, ep_date, tuple(intro), event, tuple(links), tuple(transcript), source, [], **extra)


def _https_image(url: str) -> str:
    url = safe_url(url)
    return url if url.startswith("https://") else ""


_MD_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> text
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"(?<!\w)([*_])(.+?)\1(?!\w)"), r"\2"),
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"<[^>]+>"), ""),
]


def _markdown_paragraphs(body: str) -> tuple[str, ...]:
    """Markdown body -> plain paragraphs (the transcript is shown as text, never as HTML)."""
    out = []
    for block in re.split(r"\n\s*\n", body):
        lines = [re.sub(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)", "", ln) for ln in block.split("\n")]
        text = " ".join(lines)
        for pattern, repl in _MD_INLINE:
            text = pattern.sub(repl, text)
        text = clean_line(text)
        if text and not re.fullmatch(r"[-*_=\s]{3,}", text):
            out.append(text)
    return tuple(out)

