"""Public pages: the episode pages the email links to, their calendar files, the health check."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import text

from ..db import session_scope
from ..digest import build_digest
from ..models import utcnow
from .auth import AppSettings
from .lookup import load_episode
from .pages import render_page

router = APIRouter()


@router.get("/healthz", tags=["ops"])
def healthz(settings: AppSettings) -> dict:
    """`{"ok": true}` once the database answers `SELECT 1`; a database error is a 500."""
    with session_scope(settings) as session:
        session.execute(text("SELECT 1"))
    return {"ok": True}


@router.get("/episodes/{slug}", response_class=HTMLResponse, tags=["public"])
def episode_page(request: Request, slug: str, settings: AppSettings) -> HTMLResponse:
    """The episode's web page with its full transcript; 404 for an unknown slug."""
    ep = load_episode(settings, slug)
    digest = build_digest(ep, settings, as_of=utcnow())
    return render_page(
        request,
        "episode.html",
        episode=ep,
        event=digest.event,
        page_url=digest.web_url,
        episode_date=f"{ep.date.day} {ep.date.strftime('%B %Y')}",
    )


@router.get("/episodes/{slug}/event.ics", tags=["public"])
def event_ics(slug: str, settings: AppSettings) -> Response:
    """The event's iCalendar file (RFC 5545, text/calendar); 404 for an unknown slug or an
    episode without an event."""
    ep = load_episode(settings, slug)
    digest = build_digest(ep, settings, as_of=datetime.combine(ep.date, datetime.min.time(), settings.tz))
    if not digest.ics:
        raise HTTPException(404, "this episode advertises no event")
    return Response(
        digest.ics,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="event.ics"'},
    )
