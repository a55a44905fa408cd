"""Markdown with YAML front matter -> Episode. The front matter holds the fields (README,
"Episode formats"); the body is the transcript, shown as plain paragraphs."""

from __future__ import annotations

import re
from datetime import date, datetime, time, tzinfo
from typing import Any

import yaml

from ..errors import EpisodeError
from ..text import clean_line, one_line, safe_url, slugify
from .dates import parse_date
from .model import Episode, Event, Link, Speaker, build_episode
from .page import MAX_LINKS, check_year, datetime_at, parse_speakers
from .zones import ZoneError, zone_after, zone_named

_MD_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> text
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"(?<!\w)([*_])(.+?)\1(?!\w)"), r"\2"),
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"<[^>]+>"), ""),
]


class _TextLoader(yaml.SafeLoader):
    """YAML where every plain scalar stays the text the author wrote ('No', '010', '3.10'),
    except null. YAML 1.1's implicit booleans, sexagesimal and octal numbers and timestamps
    would turn a title `No` into False and `number: 010` into 8 (YAML 1.2 §10.3 drops them);
    each field is converted here, by its own rule, with an error naming it."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_WHOLE_NUMBER = re.compile(r"^[0-9]{1,9}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_markdown(text: str, *, source: str, tz: tzinfo) -> Episode:
    """Read a Markdown episode (text with '\\n' line ends) into an Episode.

    A naive date-time in the front matter is wall-clock time in `tz`. Raises EpisodeError naming
    the field (or the line, for YAML syntax) when a required field is missing or has the wrong
    type."""
    meta, body = _front_matter(text, source)
    title = _field(meta, "title", (str, int, float), source, "title", required=True)
    title = one_line(str(title), 300)
    if not title:
        raise EpisodeError("is required", source=source, field="title")
    ep_date = _episode_date(meta.get("date"), source)
    number = _number(meta.get("number"), source)
    summary = one_line(str(_field(meta, "summary", str, source, "summary") or ""), 1000)
    raw_event = _field(meta, "event", dict, source, "event")
    event = _event(raw_event, tz, source) if raw_event else None
    paras = markdown_paragraphs(body)
    slug = _text(meta, "slug", source, "slug")
    guid = _text(meta, "guid", source, "guid")
    return build_episode(
        title=title,
        date=ep_date,
        intro=(summary,) if summary else paras[:1],
        transcript=paras if summary else paras[1:],
        event=event,
        links=_links(meta, source),
        source=source,
        slug=slugify(slug) if slug.strip() else None,
        guid=one_line(guid, 300) or None,
        number=number,
        summary=summary or None,
        episode_url=safe_url(_text(meta, "episode_url", source, "episode_url", alias="url")),
        audio_url=safe_url(_text(meta, "audio_url", source, "audio_url", alias="audio")),
        highlights=_highlights(meta, source),
    )


def _front_matter(text: str, source: str) -> tuple[dict, str]:
    """(the front matter as a mapping, the body text)."""
    text = text.lstrip("\ufeff")
    if not text.startswith("---\n"):
        raise EpisodeError("a Markdown episode starts with a '---' front-matter block", source=source, line=1)
    end = re.search(r"^(?:---|\.\.\.)\s*$", text[4:], re.M)
    if not end:
        raise EpisodeError("the front matter is not closed by a '---' line", source=source, line=1)
    front = text[4 : 4 + end.start()]
    try:
        meta = yaml.load(front, Loader=_TextLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise EpisodeError(
            f"front matter is not valid YAML ({getattr(exc, 'problem', None) or exc})",
            source=source,
            line=(mark.line + 2) if mark else None,
        ) from None
    if not isinstance(meta, dict):
        raise EpisodeError("the front matter must be a mapping of fields", source=source, line=2)
    return meta, text[4 + end.end() :]


def _field(d: dict, key: str, kind: type | tuple[type, ...], source: str, path: str, required: bool = False) -> Any:
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise EpisodeError("is required", source=source, field=path)
        return None
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise EpisodeError(
            f"expected {names}, got {type(value).__name__} {str(value)[:40]!r}", source=source, field=path
        )
    return value


def _text(d: dict, key: str, source: str, path: str, *, alias: str | None = None) -> str:
    """The text of a scalar field as written ('' when absent or null); a list, a mapping or a
    binary value is an error naming the field (never its Python repr)."""
    value = d.get(key)
    if value is None and alias:
        value, path = d.get(alias), path.rsplit(key, 1)[0] + alias
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, date)):
        raise EpisodeError(f"expected a line of text, got {_shape(value)}", source=source, field=path)
    return str(value)


def _shape(value: Any) -> str:
    names = {list: "a list", dict: "a mapping", bytes: "binary data"}
    return next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)


def _number(raw: Any, source: str) -> int | None:
    """`number` as written in decimal ('010' is 10), or None when absent."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _WHOLE_NUMBER.match(raw.strip()):
        raise EpisodeError(f"expected a whole number, got {str(raw)[:20]!r}", source=source, field="number")
    return int(raw.strip(), 10)


def _episode_date(raw: Any, source: str) -> date:
    if raw is None:
        raise EpisodeError("is required", source=source, field="date")
    if isinstance(raw, datetime):
        ep_date = raw.date()
    elif isinstance(raw, date):
        ep_date = raw
    else:
        parsed = parse_date(str(raw))
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(str(raw).strip()).date()
            except ValueError:
                parsed = None
        if parsed is None:
            raise EpisodeError(f"expected a date like 2023-11-23, got {str(raw)[:40]!r}", source=source, field="date")
        ep_date = parsed
    check_year(ep_date, source=source, field="date")
    return ep_date


def _highlights(meta: dict, source: str) -> tuple[str, ...]:
    """`highlights:` a list of strings, the editor's own highlights for the email."""
    out = []
    for i, item in enumerate(_field(meta, "highlights", list, source, "highlights") or []):
        if not isinstance(item, str):
            raise EpisodeError("expected a line of text", source=source, field=f"highlights[{i}]")
        if text := clean_line(item):
            out.append(text)
    return tuple(out)


def _links(meta: dict, source: str) -> tuple[Link, ...]:
    links = []
    raw_links = _field(meta, "links", list, source, "links") or []
    for i, item in enumerate(raw_links[:MAX_LINKS]):
        if not isinstance(item, dict):
            raise EpisodeError("expected a mapping with title and url", source=source, field=f"links[{i}]")
        url = safe_url(_text(item, "url", source, f"links[{i}].url"))
        if url:
            links.append(Link(title=one_line(_text(item, "title", source, f"links[{i}].title") or url), url=url))
    return tuple(links)


def _as_datetime(value: Any, tz: tzinfo, source: str, path: str) -> tuple[datetime, bool]:
    """(aware datetime, True when only a date was given)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else datetime_at(value.date(), value.time(), tz)), False
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), tz), True
    if isinstance(value, str):
        if _ISO_DATE.match(value.strip()):
            return datetime.combine(date.fromisoformat(value.strip()), time(0, 0), tz), True
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            d = parse_date(value)
            if d is None:
                raise EpisodeError(
                    f"expected a date-time like 2023-11-29T17:30, got {value[:40]!r}", source=source, field=path
                ) from None
            return datetime.combine(d, time(0, 0), tz), True
        return (parsed if parsed.tzinfo else datetime_at(parsed.date(), parsed.time(), tz)), False
    raise EpisodeError(
        f"expected a date-time like 2023-11-29T17:30, got {type(value).__name__}", source=source, field=path
    )


def _event_zone(raw: dict, tz: tzinfo, source: str) -> tzinfo:
    """`event.timezone` ('America/Denver', 'MDT', 'UTC+2'), else the list's zone `tz`."""
    name = _text(raw, "timezone", source, "event.timezone")
    if not name.strip():
        return tz
    try:
        zone = (
            zone_named(str(name))
            if not str(name).lstrip().startswith(("+", "-", "UTC+", "UTC-", "GMT+", "GMT-"))
            else zone_after(str(name))
        )
    except ZoneError as exc:
        raise EpisodeError(str(exc), source=source, field="event.timezone") from None
    if zone is None:
        raise EpisodeError(f"unknown time zone {str(name)[:40]!r}", source=source, field="event.timezone")
    return zone


def _event(raw: dict, tz: tzinfo, source: str) -> Event:
    tz = _event_zone(raw, tz, source)
    starts, all_day = _as_datetime(raw.get("starts"), tz, source, "event.starts")
    ends, ends_all_day = None, True
    if raw.get("ends") is not None:
        ends, ends_all_day = _as_datetime(raw["ends"], tz, source, "event.ends")
        if ends < starts or (ends == starts and not all_day):
            raise EpisodeError("must be after event.starts", source=source, field="event.ends")
    ev_title = _field(raw, "title", (str, int), source, "event.title", required=True)
    speakers: list[Speaker] = []
    for i, sp in enumerate(_field(raw, "speakers", list, source, "event.speakers") or []):
        if isinstance(sp, str):
            speakers.extend(parse_speakers(sp))
        elif isinstance(sp, dict) and sp.get("name"):
            path = f"event.speakers[{i}]"
            speakers.append(
                Speaker(
                    name=one_line(_text(sp, "name", source, f"{path}.name"), 120),
                    role=one_line(_text(sp, "role", source, f"{path}.role"), 240),
                )
            )
        else:
            raise EpisodeError("expected a name (and role)", source=source, field=f"event.speakers[{i}]")
    return Event(
        title=one_line(str(ev_title), 300),
        starts=starts,
        ends=ends,
        all_day=all_day and ends_all_day,
        venue=one_line(_text(raw, "venue", source, "event.venue"), 300),
        signup_url=safe_url(_text(raw, "signup_url", source, "event.signup_url")),
        speakers=tuple(speakers[:30]),
        description=_description(raw, source),
        banner_image=_https_image(_text(raw, "banner_image", source, "event.banner_image")),
        banner_alt=one_line(_text(raw, "banner_alt", source, "event.banner_alt"), 300),
        heading=one_line(_text(raw, "heading", source, "event.heading"), 120),
    )


def _description(raw: dict, source: str) -> tuple[str, ...]:
    """`event.description`: text (paragraphs split at blank lines) or a list of paragraphs."""
    value = raw.get("description")
    if isinstance(value, list):
        items = [_text({"p": v}, "p", source, f"event.description[{i}]") for i, v in enumerate(value)]
    else:
        items = _text(raw, "description", source, "event.description").split("\n\n")
    return tuple(p for p in (clean_line(x) for x in items) if p)


def _https_image(url: str) -> str:
    url = safe_url(url)
    return url if url.startswith("https://") else ""


def markdown_paragraphs(body: str) -> tuple[str, ...]:
    """Markdown body -> plain paragraphs: markup, images and HTML tags removed, link text kept
    (the transcript is shown as text, never as HTML)."""
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
