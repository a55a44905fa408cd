"""Staff tools: the email preview, test emails and a campaign's status as JSON.

Every route here depends on `auth.require_staff` (401 without the staff token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from ..db import session_scope
from ..episodes import Episode
from ..errors import InputError, NewsletterError, NotAllowed, RateLimited
from ..message import Recipient, compose
from ..models import Campaign, utcnow
from ..settings import Settings
from .auth import AppSettings, Staff, require_staff
from .lookup import RowId, load_episode, record_for
from .pages import render_page

router = APIRouter(tags=["staff"], dependencies=[Depends(require_staff)])


class TestSendRequest(BaseModel):
    """Body of `POST /staff/test-sends`."""

    episode: str = Field(description="Slug of a published episode", max_length=300)
    to: list[str] = Field(min_length=1, max_length=20, description="Recipients (must be on the staff allowlist)")


class TestSendReply(BaseModel):
    """One recipient's outcome: `ok`, the Message-ID sent, or the transport's error."""

    recipient: str
    ok: bool
    message_id: str | None = None
    error: str | None = None


@router.get("/campaigns/{campaign_id}")
def campaign(campaign_id: RowId, settings: AppSettings) -> dict:
    """The JSON of `newsletter status CAMPAIGN --json`; 404 for an unknown campaign."""
    from ..ledger import status

    with session_scope(settings) as session:
        try:
            return status(session, campaign_id).as_dict()
        except NewsletterError:
            raise HTTPException(404, "no such campaign") from None


def scheme_views(html: str) -> tuple[str, str]:
    """(light, dark) copies of an email's HTML whose colour scheme no longer depends on the
    browser's: the light one turns the email's `prefers-color-scheme: dark` rules off and asks for a
    light canvas, the dark one turns them on, as a dark-mode mail client would."""
    light = (
        html.replace("@media (prefers-color-scheme: dark)", "@media not all")
        .replace('content="light dark"', 'content="light"')
        .replace("color-scheme: light dark", "color-scheme: light")
    )
    dark = (
        html.replace("@media (prefers-color-scheme: dark)", "@media all")
        .replace('content="light dark"', 'content="dark"')
        .replace("color-scheme: light dark", "color-scheme: dark")
    )
    return light, dark


@router.get("/preview/{slug}", response_class=HTMLResponse)
def preview(
    request: Request,
    slug: str,
    settings: AppSettings,
    as_of: Annotated[
        datetime | None, Query(description="ISO date-time; default: the campaign's send time, or now")
    ] = None,
) -> HTMLResponse:
    """The email as a sample subscriber gets it, in a frame with desktop/mobile and light/dark
    toggles and a send-test form, saying which "as of" time it is rendered for; 404 for an unknown
    slug, 422 for a bad `as_of`."""
    with session_scope(settings) as session:
        record = record_for(session, slug)
        ep = Episode.from_json(record.data)
        sent = session.scalar(select(Campaign).where(Campaign.episode_id == record.id))
    if as_of is not None:
        moment, why = (as_of if as_of.tzinfo else as_of.replace(tzinfo=settings.tz)), "as asked"
    elif sent is not None:
        moment, why = sent.as_of, f"campaign {sent.id}'s send time"
    else:
        moment, why = utcnow(), "now: no campaign yet"
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    template = compose(ep, settings, as_of=moment)
    html, _ = template.personalised(Recipient("subscriber@example.com", "Sample Subscriber"))
    light, dark = scheme_views(html)
    local = moment.astimezone(settings.tz)
    return render_page(
        request,
        "preview.html",
        episode=ep,
        subject=template.rendered.subject,
        email_light=light,
        email_dark=dark,
        as_of_text=f"{local:%A} {local.day} {local:%B %Y, %H:%M %Z}",
        as_of_iso=local.isoformat(timespec="minutes"),
        as_of_why=why,
    )


@router.post("/staff/test-sends", response_model=list[TestSendReply])
def test_sends(body: TestSendRequest, settings: AppSettings, who: Staff) -> list[TestSendReply]:
    """Send `[TEST]` copies to allowlisted addresses, outside the ledger. 403 when any address is
    off NEWSLETTER_STAFF_ALLOWLIST (nothing is sent), 429 over the hourly limit, 422 for a bad
    address, 404 for an unknown episode."""
    return send_tests(settings, body.episode, body.to, who)


@router.post("/preview/{slug}/send-test", response_class=HTMLResponse)
def preview_send(
    request: Request, slug: str, to: Annotated[str, Form(max_length=320)], settings: AppSettings, who: Staff
) -> HTMLResponse:
    """The preview page's form. 403 for a cross-site post (browsers replay cached basic-auth
    credentials on those), then as `test_sends`."""
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "cross-site form post refused")
    back = [(f"/preview/{slug}", "Back to the preview")]
    try:
        results = send_tests(settings, slug, [to], who)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise
        return render_page(
            request,
            "message.html",
            exc.status_code,
            no_store=True,
            heading="Test email not sent",
            paragraphs=[str(exc.detail)],
            links=back,
        )
    return render_page(
        request,
        "message.html",
        no_store=True,
        heading="Test email sent" if results[0].ok else "Test email failed",
        paragraphs=[f"{r.recipient}: {'sent' if r.ok else r.error}" for r in results],
        links=back,
    )


def send_tests(settings: Settings, slug: str, to: list[str], who: str) -> list[TestSendReply]:
    """`worker.staff.send_test` for a stored episode, its errors mapped to HTTP statuses."""
    from ..staff import send_test

    ep = load_episode(settings, slug)
    try:
        results = send_test(ep, to, settings, requested_by=who)
    except NotAllowed as exc:
        raise HTTPException(403, str(exc)) from None
    except RateLimited as exc:
        raise HTTPException(429, str(exc)) from None
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    return [TestSendReply(recipient=r.recipient, ok=r.ok, message_id=r.message_id, error=r.error) for r in results]
