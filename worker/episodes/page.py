"""The show's plain-text page layout -> Episode.

Title line; date line; intro paragraph(s); optionally an event block (a heading ending in
"Event", caption, title, time range, date, venue, description, Speakers line); a "Links &
Sources" heading and link lines; then the transcript. `read_body` classifies the lines after
the title and date, and is shared with the feed-item reader (show notes turned into lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from urllib.parse import urlsplit

from ..chapters import is_topic
from ..errors import EpisodeError
from ..text import URL_IN_TEXT, clean_line, find_url, one_line, safe_url
from .dates import TimeSpan, date_in, date_range_in, parse_date, parse_time_span
from .model import MAX_LINKS, Episode, Event, Link, Speaker, build_episode
from .zones import ZoneError

_LINKS_HEADING = re.compile(
    r"^(?:links?\s*(?:&|and|\+)\s*sources?|links?|sources?|show\s*notes|resources|references)\s*:?$", re.I
)
# 'Spring Panel Event', 'Upcoming events', 'Event details', 'Save the date'
_EVENT_HEADING = re.compile(
    r"^(?:.{0,80}\bevents?(?:\s+(?:details|info(?:rmation)?))?|(?:.{0,40}\b)?save\s+the\s+date)\s*[:!]?$", re.I
)
_SPEAKERS = re.compile(r"^(?:speakers?|panel(?:l?ists)?|with)\s*:\s*(.*)$", re.I)
# 'Where: The Old Library' — the label is not part of the venue
_VENUE_LABEL = re.compile(r"^(?:where|venue|location|place|address)\s*:\s*", re.I)
_LINK_SEP = re.compile(r"^(?P<title>.+?)\s*(?:\s[–—-]\s|\s?[–—]\s?|:\s)\s*(?P<url>(?:https?://|www\.)\S+)\s*$", re.I)
_MD_LINK = re.compile(r"^\[(?P<title>[^\]]+)\]\((?P<url>[^)\s]+)\)$")
_BULLET = re.compile(r"^(?:[-*•·▪‣◦]|\d{1,3}[.)])\s+")
_HIGHLIGHTS_HEADING = re.compile(
    r"^(?:highlights|in\s+this\s+episode|this\s+episode|topics(?:\s+covered)?|what\s+we\s+(?:cover|discuss)(?:ed)?"
    r"|chapters|timestamps|key\s+(?:points|takeaways)|takeaways)\s*:?$",
    re.I,
)
MAX_HEAD_PARAS = 6  # paragraphs from the top in which a highlights list may start
_TIMESTAMP = re.compile(r"^\(?(?:\d{1,2}:)?\d{1,2}:\d{2}\)?\s*[-–—:]?\s*")
# "Online – register at <URL>": once the URL is the signup link, the words pointing at it go too.
_CALL_TO_ACTION = re.compile(
    r"[\s,;:|–—-]*\b(?:register|sign\s*up|book(?:\s+(?:a\s+)?(?:place|seat|tickets?))?|tickets?|rsvp)"
    r"(?:\s+(?:at|here|now|via|on))?\s*:?\s*$",
    re.I,
)


@dataclass
class Line:
    """One non-blank line: `no` its 1-based line number in the source, `text` cleaned,
    `para` the index of the paragraph (run of non-blank lines) it belongs to."""

    no: int
    text: str
    para: int


@dataclass
class Body:
    """What `read_body` found after the title and date: paragraphs and the parts."""

    intro: tuple[str, ...] = ()
    event: Event | None = None
    links: tuple[Link, ...] = ()
    transcript: tuple[str, ...] = ()
    highlights: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)


def split_lines(text: str) -> list[Line]:
    """Text -> its non-blank lines, cleaned, numbered, grouped into paragraphs by blank lines."""
    out: list[Line] = []
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
        out.append(Line(no, line, para))
    return out


def paragraphs(lines: list[Line]) -> tuple[str, ...]:
    """Lines -> paragraphs: the lines of each paragraph joined by spaces."""
    paras: dict[int, list[str]] = {}
    for ln in lines:
        paras.setdefault(ln.para, []).append(ln.text)
    return tuple(" ".join(p) for p in paras.values())


def parse_page(text: str, *, source: str, tz: tzinfo) -> Episode:
    """Read the page layout (text with '\\n' line ends) into an Episode.

    `source` names the file in errors and warnings; event times are in `tz` (a naive time on the
    page is wall-clock time there). Raises EpisodeError naming the line when the title or date
    line is missing or the date is not one (or outside 1900–2200)."""
    lines = split_lines(text)
    if not lines:
        raise EpisodeError("the file has no text", source=source)
    title_line = lines[0]
    title = one_line(title_line.text, 300)
    if len(lines) < 2:
        raise EpisodeError(
            "expected a date line (e.g. '23 Nov 2023') after the title", source=source, line=title_line.no + 1
        )
    date_line = lines[1]
    ep_date = parse_date(date_line.text)
    if ep_date is None:
        raise EpisodeError(
            f"expected the episode date (e.g. '23 Nov 2023') after the title, found {one_line(date_line.text, 60)!r}",
            source=source,
            line=date_line.no,
        )
    check_year(ep_date, source=source, line=date_line.no)
    body = read_body(lines[2:], source=source, tz=tz)
    return build_episode(
        title=title,
        date=ep_date,
        intro=body.intro,
        event=body.event,
        links=body.links,
        transcript=body.transcript,
        source=source,
        warnings=tuple(body.warnings),
        highlights=body.highlights,
    )


def check_year(day: date, *, source: str, line: int | None = None, field: str | None = None) -> None:
    """Raise EpisodeError when `day` is outside 1900–2200 (a typo, not an episode date)."""
    if not (1900 <= day.year <= 2200):
        raise EpisodeError(f"the date {day.isoformat()} is out of range", source=source, line=line, field=field)


def read_body(rest: list[Line], *, source: str, tz: tzinfo) -> Body:
    """Classify the lines after the title and date: intro, event block, links, transcript.

    Never raises: an event heading without a date stays intro text (with a warning)."""
    out = Body()
    rest, out.highlights = take_highlights(rest)
    ev_at = next((i for i, ln in enumerate(rest) if _EVENT_HEADING.match(ln.text) and len(ln.text) <= 80), None)
    links_at = next((i for i, ln in enumerate(rest) if _LINKS_HEADING.match(ln.text)), None)
    if ev_at is not None and links_at is not None and links_at < ev_at:
        ev_at = None  # an "...event" line inside the transcript is not the event block
    if ev_at is None and links_at is None:
        # No headings at all: the first paragraph is the intro, the rest is transcript.
        first_para = rest[0].para if rest else None
        out.intro = paragraphs([ln for ln in rest if ln.para == first_para])
        out.transcript = paragraphs([ln for ln in rest if ln.para != first_para])
        return out
    first_heading = min(i for i in (ev_at, links_at) if i is not None)
    intro_lines = rest[:first_heading]
    after_event = first_heading
    if ev_at is not None:
        closed = links_at is not None and links_at > ev_at
        out.event, used = _parse_event(
            rest[ev_at : links_at if closed else len(rest)], closed, source, tz, out.warnings
        )
        after_event = ev_at + used
        if out.event is None:
            # Not an event block after all: its lines stay part of the intro.
            after_event = links_at if links_at is not None else ev_at + 1
            intro_lines = rest[:after_event]
    transcript_from = after_event
    if links_at is not None and links_at >= after_event:
        out.links, transcript_from = _read_links(rest, links_at + 1, out.warnings)
    elif links_at is not None:
        transcript_from = links_at + 1
    out.intro = paragraphs(intro_lines)
    out.transcript = paragraphs(rest[transcript_from:])
    return out


def take_highlights(rest: list[Line]) -> tuple[list[Line], tuple[str, ...]]:
    """A 'Highlights' (or 'In this episode', 'Topics', 'Chapters'…) heading followed by bulleted
    lines, near the top: before any Links or event heading and within the first few paragraphs
    (a list deep in the transcript stays there). Returns (the lines without that block, the
    bullet texts with bullets and timestamps removed); no such block: (rest, ())."""
    first_para = rest[0].para if rest else 0
    for i, ln in enumerate(rest):
        if _LINKS_HEADING.match(ln.text) or _EVENT_HEADING.match(ln.text) or ln.para > first_para + MAX_HEAD_PARAS:
            break
        if not _HIGHLIGHTS_HEADING.match(ln.text):
            continue
        j = i + 1
        while j < len(rest) and _BULLET.match(rest[j].text):
            j += 1
        items = [_TIMESTAMP.sub("", _BULLET.sub("", x.text)).strip() for x in rest[i + 1 : j]]
        if items:
            return rest[:i] + rest[j:], tuple(x for x in items if x and is_topic(x))
    return rest, ()


def _read_links(rest: list[Line], i: int, warnings: list[str]) -> tuple[tuple[Link, ...], int]:
    """The link lines from rest[i] on; returns them and the index of the first other line."""
    links: list[Link] = []
    while i < len(rest):
        ln = rest[i]
        link = link_from(ln.text)
        if link is None and i + 1 < len(rest) and len(ln.text) <= 160 and rest[i + 1].para == ln.para:
            # "Title" then the URL on the next line of the same paragraph.
            nxt = rest[i + 1].text.strip()
            url = find_url(nxt)
            if url and URL_IN_TEXT.fullmatch(nxt):
                link = Link(title=one_line(ln.text.rstrip(" :–—-")), url=url)
                i += 1
        if link is None:
            break
        if len(links) < MAX_LINKS:
            links.append(link)
        i += 1
    if len(links) == MAX_LINKS:
        warnings.append(f"only the first {MAX_LINKS} links are kept")
    return tuple(links), i


def link_from(text: str) -> Link | None:
    """One link line ('Title – URL', 'Title: URL', '[Title](URL)', a bare URL, bulleted or
    not) -> Link, else None."""
    text = _BULLET.sub("", text).strip()
    if m := _MD_LINK.match(text):
        url = safe_url(m["url"])
        return Link(title=one_line(m["title"]), url=url) if url else None
    bare = find_url(text)
    if bare and URL_IN_TEXT.fullmatch(text.strip()):
        return Link(title=urlsplit(bare).netloc + urlsplit(bare).path.rstrip("/"), url=bare)
    if m := _LINK_SEP.match(text):
        url = find_url(m["url"])
        if url:
            return Link(title=one_line(m["title"].rstrip(" :–—-")), url=url)
    return None


def parse_speakers(text: str) -> tuple[Speaker, ...]:
    """'Name, Role, Org; Name, Role' -> at most 30 speakers (the first comma splits name from role)."""
    speakers = []
    for chunk in re.split(r"\s*;\s*", clean_line(text)):
        chunk = chunk.strip(" .")
        if not chunk:
            continue
        name, _, role = chunk.partition(",")
        speakers.append(Speaker(name=one_line(name, 120), role=one_line(role.strip(), 240)))
    return tuple(speakers[:30])


def _has_time(text: str) -> bool:
    try:
        return parse_time_span(text) is not None
    except ZoneError:
        return True  # a time with a bad zone: the event's line, reported when it is read


def _when_lines(body: list[Line]) -> tuple[int, int] | None:
    """Indexes of the first and last of the consecutive date/time lines near the block's top."""
    when_idx = [
        i
        for i, ln in enumerate(body[:12])
        if parse_date(ln.text) or _has_time(ln.text) or date_in(ln.text) or date_range_in(ln.text)
    ]
    if not when_idx:
        return None
    first = last = when_idx[0]
    while last + 1 < len(body) and last + 1 in when_idx:
        last += 1
    return first, last


def _parse_event(
    block: list[Line], closed: bool, source: str, tz: tzinfo, warnings: list[str]
) -> tuple[Event | None, int]:
    """The event block: heading, [caption], title, time range, date, venue, description, Speakers.

    `closed` says a Links heading ends the block (so all of it belongs to the event). Returns the
    event (or None when the block has no date) and how many lines it used."""
    heading, body = block[0], block[1:]
    when = _when_lines(body)
    if when is None:
        warnings.append(
            f"{source}: line {heading.no}: an event heading without a date or time; the block is read as intro text"
        )
        return None, 0
    first_when, last_when = when
    before = [ln.text for ln in body[:first_when]]
    day: date | None = None
    last_day: date | None = None
    span: TimeSpan | None = None
    for ln in body[first_when : last_when + 1]:
        if day is None and (days := date_range_in(ln.text)):
            day, last_day = days
        day = day or parse_date(ln.text) or date_in(ln.text)
        try:
            span = span or parse_time_span(ln.text)
        except ZoneError as exc:
            raise EpisodeError(str(exc), source=source, line=ln.no) from None
    if day is None:
        warnings.append(f"{source}: line {body[first_when].no}: the event has a time but no date; it is not advertised")
        return None, 0
    venue, speakers, description, used_to = _event_details(body, last_when, closed)
    signup = next((url for ln in body[first_when:used_to] if (url := find_url(ln.text))), "")
    if signup and venue:
        venue = _CALL_TO_ACTION.sub("", URL_IN_TEXT.sub("", venue).strip(" -–—|,:"))
        venue = venue.strip(" -–—|,:")
    starts, ends = event_times(day, span, tz, last_day=last_day)
    event = Event(
        title=one_line(before[-1] if before else heading.text, 300),
        starts=starts,
        ends=ends,
        all_day=span is None,
        venue=one_line(venue, 300),
        signup_url=signup,
        speakers=speakers,
        description=paragraphs(description),
        banner_alt=one_line(" ".join(before[:-1]), 300),
        heading=one_line(heading.text, 120),
    )
    return event, 1 + used_to


def datetime_at(day: date, at: time, tz: tzinfo) -> datetime:
    """`day` at wall-clock time `at` in `tz`, an aware datetime. A time that does not exist
    on that day (skipped by a daylight-saving change) moves forward by the gap, as clocks do."""
    utc = datetime.combine(day, at, tz).astimezone(UTC)
    return utc.astimezone(tz)


def event_times(
    day: date, span: TimeSpan | None, tz: tzinfo, *, last_day: date | None = None
) -> tuple[datetime, datetime | None]:
    """(starts, ends) for an event on `day` (to `last_day`, for an event over several days): in
    the zone written on its line, else `tz`. No times -> an all-day event: (midnight of `day`,
    midnight of `last_day` or None). An end at or before the start is on the next day (past
    midnight); each end carries its own UTC offset (a range across a daylight-saving change,
    or a zone of its own: '11pm BST – 1am CEST')."""
    if span is None:
        return datetime_at(day, time(0, 0), tz), (datetime_at(last_day, time(0, 0), tz) if last_day else None)
    zone = span.zone or tz
    starts = datetime_at(day, span.start, zone)
    if span.end is None:
        return starts, None
    end_zone = span.end_zone or zone
    end_day = last_day or day
    ends = datetime_at(end_day, span.end, end_zone)
    if ends.astimezone(UTC) <= starts.astimezone(UTC):
        ends = datetime_at(end_day + timedelta(days=1), span.end, end_zone)  # runs past midnight
    return starts, ends


def _venue_shaped(body: list[Line], i: int) -> bool:
    """In notes written one line per paragraph (a feed's `<p>` per line) the venue is a
    paragraph of its own: one short line that is not a sentence ('The Old Library, Leeds')."""
    ln = body[i]
    alone = not any(x.para == ln.para for x in body[:i] + body[i + 1 :])
    return alone and len(ln.text) <= 150 and not ln.text.rstrip().endswith((".", "!", "?", ":"))


def _event_details(body: list[Line], last_when: int, closed: bool) -> tuple[str, tuple[Speaker, ...], list[Line], int]:
    """After the date/time lines: venue line, description lines and the Speakers line.
    Returns (venue, speakers, description lines, index after the last line used)."""
    i = last_when + 1
    venue = ""
    if (
        i < len(body)
        and not _SPEAKERS.match(body[i].text)
        and (body[i].para == body[last_when].para or _venue_shaped(body, i))
    ):
        venue = _VENUE_LABEL.sub("", body[i].text)
        i += 1
    speakers_at = next((j for j in range(i, len(body)) if _SPEAKERS.match(body[j].text)), None)
    speakers: tuple[Speaker, ...] = ()
    if speakers_at is not None:
        description = body[i:speakers_at]
        speakers = parse_speakers(_SPEAKERS.match(body[speakers_at].text)[1])  # type: ignore[index]
        used_to = speakers_at + 1
        if not speakers:  # 'Speakers:' over a bulleted list, one speaker a line
            while used_to < len(body) and _BULLET.match(body[used_to].text):
                speakers += parse_speakers(_BULLET.sub("", body[used_to].text).replace(";", ","))
                used_to += 1
        # a speakers line may wrap onto more lines of the same paragraph
        while used_to < len(body) and body[used_to].para == body[speakers_at].para:
            speakers += parse_speakers(body[used_to].text)
            used_to += 1
        if closed:
            description += body[used_to:]
            used_to = len(body)
    elif closed or i >= len(body):
        description, used_to = body[i:], len(body)
    else:
        # Neither Speakers line nor Links heading: only the next paragraph is the description.
        description = [ln for ln in body[i:] if ln.para == body[i].para]
        used_to = i + len(description)
    return venue, speakers, description, used_to
