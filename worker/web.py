"""The web side (FastAPI): the episode archive the email links to, unsubscribe, staff tools.

    newsletter web            # uvicorn on 127.0.0.1:8000

A GET never changes anything (link scanners follow GETs); unsubscribing is a POST, which is also
RFC 8058 one-click. Staff endpoints need NEWSLETTER_STAFF_TOKEN as a bearer token or as the
password of HTTP basic auth, and answer 401 without it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi import Path as FastPath
from fastapi.responses import HTMLResponse, JSONResponse, Response
from itsdangerous import BadSignature
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from starlette.types import ASGIApp, Receive, Scope, Send

from .db import session_scope
from .digest import build_digest
from .episodes import Episode
from .errors import InputError, NewsletterError, NotAllowed, RateLimited
from .message import Recipient, compose, read_unsubscribe_token
from .models import Campaign, EpisodeRecord, Subscriber, SubscriberStatus, utcnow
from .settings import Settings, get_settings

log = logging.getLogger(__name__)


class BodyLimit:
    """413 for request bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await JSONResponse({"detail": "request body too large"}, 413)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, "request body too large")
            return message

        try:
            await self.app(scope, limited, send)
        except HTTPException as exc:
            if exc.status_code != 413:
                raise
            await JSONResponse({"detail": "request body too large"}, 413)(scope, receive, send)


class TestSendRequest(BaseModel):
    episode: str = Field(description="Slug of a published episode", max_length=300)
    to: list[str] = Field(min_length=1, max_length=20, description="Recipients (must be on the staff allowlist)")


class TestSendReply(BaseModel):
    recipient: str
    ok: bool
    message_id: str | None = None
    error: str | None = None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="newsletter-worker", version="0.1.0",
                  description="Episode archive, unsubscribe (RFC 8058) and staff tools.")
    pages = Environment(loader=FileSystemLoader(str(settings.templates_dir / "web")),
                        autoescape=select_autoescape(default=True, default_for_string=True))

    def page(name: str, status: int = 200, **context) -> HTMLResponse:  # noqa: ANN003
        html = pages.get_template(name).render(list_name=settings.list_name, sender_postal=settings.sender_postal,
                                               **context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"}
                            if name == "message.html" else None)

    def staff(request: Request) -> str:
        """Bearer token, or basic auth with the token as password. Compared in constant time."""
        token = settings.staff_token
        header = request.headers.get("authorization", "")
        given = ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        elif scheme.lower() == "basic":
            try:
                _user, _, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                given = ""
        if not token or not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "staff credentials required",
                                headers={"WWW-Authenticate": 'Basic realm="newsletter staff", charset="UTF-8"'})
        return "staff"

    # (a default, not an Annotated alias: annotations are strings here and this one is local)
    staff_only = Depends(staff)

    def record_for(session, slug: str) -> EpisodeRecord:  # noqa: ANN001
        record = session.scalar(select(EpisodeRecord).where(EpisodeRecord.slug == slug))
        if record is None:
            raise HTTPException(404, "no such episode")
        return record

    def load(slug: str) -> Episode:
        with session_scope(settings) as session:
            return Episode.from_json(record_for(session, slug).data)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        with session_scope(settings) as session:
            session.execute(text("SELECT 1"))
        return {"ok": True}

    @app.get("/episodes/{slug}", response_class=HTMLResponse, tags=["public"])
    def episode_page(slug: str) -> HTMLResponse:
        ep = load(slug)
        digest = build_digest(ep, settings, as_of=utcnow())
        return page("episode.html", episode=ep, event=digest.event, page_url=digest.web_url,
                    episode_date=f"{ep.date.day} {ep.date.strftime('%B %Y')}")

    @app.get("/episodes/{slug}/event.ics", tags=["public"])
    def event_ics(slug: str) -> Response:
        ep = load(slug)
        digest = build_digest(ep, settings, as_of=datetime.combine(ep.date, datetime.min.time(), settings.tz))
        if not digest.ics:
            raise HTTPException(404, "this episode advertises no event")
        return Response(digest.ics, media_type="text/calendar; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="event.ics"'})

    def _address(token: str) -> str:
        try:
            email = read_unsubscribe_token(settings, token)
        except BadSignature:
            raise HTTPException(400, "this unsubscribe link is not valid") from None
        with session_scope(settings) as session:
            if session.scalar(select(Subscriber.id).where(Subscriber.email_key == email)) is None:
                raise HTTPException(404, "no subscription for this link")
        return email

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["public"])
    def unsubscribe_page(token: str) -> HTMLResponse:
        """A confirmation page. It changes nothing: link scanners follow GETs."""
        try:
            email = _address(token)
        except HTTPException as exc:
            return page("message.html", exc.status_code, heading="This link does not work",
                        paragraphs=[exc.detail + ". If you want to stop these emails, reply to one of them."])
        return page("message.html", heading=f"Unsubscribe from {settings.list_name}?",
                    paragraphs=[f"{email} will get no more emails from {settings.list_name}."],
                    form_action=f"/unsubscribe/{token}", button="Unsubscribe")

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse, tags=["public"])
    def unsubscribe(token: str, one_click: Annotated[str | None, Form(alias="List-Unsubscribe")] = None) -> HTMLResponse:
        """RFC 8058 one-click (form body `List-Unsubscribe=One-Click`) and the page's button.
        Idempotent; no cookies, no login."""
        try:
            email = _address(token)
        except HTTPException as exc:
            return page("message.html", exc.status_code, heading="This link does not work",
                        paragraphs=[exc.detail + "."])
        with session_scope(settings) as session:
            sub = session.scalars(select(Subscriber).where(Subscriber.email_key == email)).one()
            if sub.status == SubscriberStatus.ACTIVE:
                sub.status, sub.status_reason, sub.updated_at = (SubscriberStatus.UNSUBSCRIBED,
                                                                 "one-click" if one_click else "web", utcnow())
                log.info("unsubscribed %s (%s)", email, "one-click" if one_click else "web")
        return page("message.html", heading="You are unsubscribed",
                    paragraphs=[f"{email} will get no more emails from {settings.list_name}."])

    def _test_target() -> HTMLResponse:
        return page("message.html", heading="This was a test email",
                    paragraphs=["Its unsubscribe link is harmless: nothing was changed."])

    @app.get("/unsubscribe-test", response_class=HTMLResponse, tags=["public"])
    def unsubscribe_test_page() -> HTMLResponse:
        """Where test emails' unsubscribe links point: nothing happens."""
        return _test_target()

    @app.post("/unsubscribe-test", response_class=HTMLResponse, tags=["public"])
    def unsubscribe_test_post() -> HTMLResponse:
        """One-click on a test email: nothing happens."""
        return _test_target()

    @app.get("/campaigns/{campaign_id}", tags=["staff"])
    def campaign(campaign_id: Annotated[int, FastPath(ge=1, le=2**63 - 1)], _: str = staff_only) -> dict:
        from .ledger import status

        with session_scope(settings) as session:
            try:
                return status(session, campaign_id)
            except NewsletterError:
                raise HTTPException(404, "no such campaign") from None

    @app.get("/preview/{slug}", response_class=HTMLResponse, tags=["staff"])
    def preview(slug: str, _: str = staff_only) -> HTMLResponse:
        with session_scope(settings) as session:
            record = record_for(session, slug)
            ep = Episode.from_json(record.data)
            sent = session.scalar(select(Campaign).where(Campaign.episode_id == record.id))
            as_of = sent.as_of if sent else utcnow()
        template = compose(ep, settings, as_of=as_of)
        html, _ = template.personalised(Recipient("subscriber@example.com", "Sample Subscriber"))
        # The dark view switches the email's own dark-mode rules on, as a dark-mode client would.
        dark = html.replace("@media (prefers-color-scheme: dark)", "@media all")
        return page("preview.html", episode=ep, subject=template.rendered.subject, email_html=html,
                    email_dark_html=dark)

    @app.post("/staff/test-sends", response_model=list[TestSendReply], tags=["staff"])
    def test_sends(body: TestSendRequest, who: str = staff_only) -> list[TestSendReply]:
        return _send_test(body.episode, body.to, who)

    @app.post("/preview/{slug}/send-test", response_class=HTMLResponse, tags=["staff"])
    def preview_send(request: Request, slug: str, to: Annotated[str, Form(max_length=320)],
                     who: str = staff_only) -> HTMLResponse:
        # Browsers replay cached basic-auth credentials on cross-site form posts: refuse those.
        origin = request.headers.get("origin")
        if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "cross-site form post refused")
        results = _send_test(slug, [to], who)
        return page("message.html", heading="Test email sent" if results[0].ok else "Test email failed",
                    paragraphs=[f"{r.recipient}: {'sent' if r.ok else r.error}" for r in results])

    def _send_test(slug: str, to: list[str], who: str) -> list[TestSendReply]:
        from .staff import send_test

        ep = load(slug)
        try:
            results = send_test(ep, to, settings, requested_by=who)
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except RateLimited as exc:
            raise HTTPException(429, str(exc)) from None
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
        return [TestSendReply(recipient=r.recipient, ok=r.ok, message_id=r.message_id, error=r.error)
                for r in results]

    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    return app
