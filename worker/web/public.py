"""Public pages: the episode pages the email links to, the web copy of the email, calendar files
and the health check."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select, text

from ..db import session_scope
from ..digest import Digest, build_digest
from ..episodes import Episode
from ..ledger import stored_email as ledger_stored_email
from ..message import compose
from ..models import Campaign, utcnow
from ..render import RenderedEmail
from ..settings import Settings
from .auth import AppSettings
from .lookup import load_episode, record_for
from .pages import render_page

router = APIRouter()


@router.get("/healthz", tags=["ops"])
def healthz(settings: AppSettings) -> dict:
    """`{"ok": true}` once the database answers `SELECT 1`; a database error is a 500."""
    with session_scope(settings) as session:
        session.execute(text("SELECT 1"))
    return {"ok": True}


def event_digest(ep: Episode, settings: Settings) -> tuple[Digest, bool]:
    """The episode's digest for its web page and calendar file, and whether its event is over.

    The page keeps the event section the email linked to, so a finished event is built as of
    just before it started (and said to be over) instead of being dropped."""
    now = utcnow()
    over = bool(ep.event and ep.event.finishes <= now)
    as_of = ep.event.starts - timedelta(seconds=1) if ep.event and over else now
    return build_digest(ep, settings, as_of=as_of), over


@router.get("/episodes/{slug}", response_class=HTMLResponse, tags=["public"])
def episode_page(request: Request, slug: str, settings: AppSettings) -> HTMLResponse:
    """The episode's web page with its full transcript, and its event section (the email's
    "Event details" link points at `#event`), kept once the event is over and marked as finished.
    404 for an unknown slug."""
    ep = load_episode(settings, slug)
    digest, event_over = event_digest(ep, settings)
    return render_page(
        request,
        "episode.html",
        episode=ep,
        event=digest.event,
        event_over=event_over,
        page_url=digest.web_url,
        episode_date=f"{ep.date.day} {ep.date.strftime('%B %Y')}",
    )


def stored_email(settings: Settings, slug: str) -> RenderedEmail:
    """The email as the campaign stored it (rendered and inlined, placeholders in it), or, for an
    episode with no campaign yet, rendered now. HTTPException(404) for an unknown slug."""
    with session_scope(settings) as session:
        record = record_for(session, slug)
        campaign = session.scalar(select(Campaign).where(Campaign.episode_id == record.id))
        if campaign is not None:
            return ledger_stored_email(campaign)[0]
        ep = Episode.from_json(record.data)
    return compose(ep, settings, as_of=utcnow()).rendered


#: What the web copy shows where a recipient's own values would be: nobody's address, no token.
WEB_COPY_VALUES = {
    "greeting": "there",
    "email": "your address",
    "unsubscribe_url": "/unsubscribe",
    "manage_url": "/unsubscribe",
}


@router.get("/episodes/{slug}/email", response_class=HTMLResponse, tags=["public"])
def email_copy(slug: str, settings: AppSettings) -> HTMLResponse:
    """ "View this email in your browser": the HTML part of the email itself, as sent, filled with
    neutral values (`WEB_COPY_VALUES`): not personalised, no token, no tracking. 404 for an
    unknown slug."""
    values = dict(
        WEB_COPY_VALUES,
        unsubscribe_url=f"{settings.base_url}/unsubscribe",
        manage_url=f"{settings.base_url}/unsubscribe",
    )
    html, _text = stored_email(settings, slug).personaliser().fill(values)
    return HTMLResponse(
        html,
        headers={"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex", "Cache-Control": "public, max-age=300"},
    )


@router.get("/episodes/{slug}/event.ics", tags=["public"])
def event_ics(slug: str, settings: AppSettings) -> Response:
    """The event's iCalendar file (RFC 5545, text/calendar), the same event the page shows; 404
    for an unknown slug or an episode without an event."""
    digest, _over = event_digest(load_episode(settings, slug), settings)
    if not digest.ics:
        raise HTTPException(404, "this episode advertises no event")
    return Response(
        digest.ics,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="event.ics"'},
    )
