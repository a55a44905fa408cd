"""The archive: `/` lists the episodes newest first, `/feed.atom` is the same list as an Atom
feed (RFC 4287, written by feedgen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from feedgen.feed import FeedGenerator
from sqlalchemy import select

from ..db import session_scope
from ..digest import truncate_words
from ..episodes import Episode
from ..models import EpisodeRecord
from ..settings import Settings
from .auth import AppSettings
from .pages import render_page

router = APIRouter(tags=["public"])
PAGE_SIZE = 30
SUMMARY_CHARS = 280


@dataclass(frozen=True)
class ArchiveEntry:
    """One episode as the archive lists it."""

    slug: str
    title: str
    number: int | None
    date: date
    date_text: str  # "23 November 2023"
    summary: str  # at most SUMMARY_CHARS characters
    stored_at: datetime  # when it was stored here (aware)


def archive_entries(settings: Settings, page: int = 1, size: int | None = None) -> tuple[list[ArchiveEntry], bool]:
    """Episodes newest first (by the episode's date — `published_on` — then the latest stored
    first): page `page` (1-based) of `size` (default PAGE_SIZE), and whether an older page exists."""
    size = size or PAGE_SIZE
    with session_scope(settings) as session:
        rows = session.scalars(
            select(EpisodeRecord)
            .order_by(EpisodeRecord.published_on.desc(), EpisodeRecord.id.desc())
            .offset((page - 1) * size)
            .limit(size + 1)
        ).all()
        entries = []
        for row in rows[:size]:
            ep = Episode.from_json(row.data)
            summary = ep.summary or " ".join(ep.intro)
            entries.append(
                ArchiveEntry(
                    slug=ep.slug,
                    title=ep.title,
                    number=ep.number,
                    date=ep.date,
                    date_text=f"{ep.date.day} {ep.date.strftime('%B %Y')}",
                    summary=truncate_words(summary, SUMMARY_CHARS),
                    stored_at=_aware(row.created_at),
                )
            )
    return entries, len(rows) > size


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/", response_class=HTMLResponse)
def archive(request: Request, settings: AppSettings, page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> HTMLResponse:
    """The archive page: PAGE_SIZE episodes a page, newest first, with a link to older ones."""
    entries, more = archive_entries(settings, page)
    return render_page(request, "archive.html", episodes=entries, older_url=f"/?page={page + 1}" if more else None)


@router.get("/feed.atom", response_class=Response)
def atom_feed(settings: AppSettings) -> Response:
    """The newest PAGE_SIZE episodes as an Atom feed (application/atom+xml), each entry linking
    to its episode page."""
    entries, _ = archive_entries(settings)
    fg = FeedGenerator()
    fg.id(f"{settings.base_url}/")
    fg.title(settings.list_name)
    fg.link(href=f"{settings.base_url}/", rel="alternate")
    fg.link(href=f"{settings.base_url}/feed.atom", rel="self")
    fg.language("en")
    # feedgen prepends entries: add oldest first so the document lists newest first.
    for e in reversed(entries):
        url = f"{settings.base_url}/episodes/{e.slug}"
        updated = datetime.combine(e.date, time(0, 0), settings.tz)
        fe = fg.add_entry()
        fe.id(url)
        fe.title(e.title)
        fe.link(href=url, rel="alternate")
        fe.published(updated)
        fe.updated(max(updated, e.stored_at))
        if e.summary:
            fe.summary(e.summary)
    fg.updated(max((e.stored_at for e in entries), default=datetime.combine(date(2000, 1, 1), time(), settings.tz)))
    return Response(fg.atom_str(pretty=True), media_type="application/atom+xml; charset=utf-8")
