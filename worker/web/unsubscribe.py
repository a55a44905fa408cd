"""Unsubscribing: a GET shows a confirmation page and changes nothing (link scanners follow GETs);
a POST unsubscribes, which is also RFC 8058 one-click (`List-Unsubscribe=One-Click`)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from itsdangerous import BadSignature
from sqlalchemy import select

from .. import subscriptions
from ..db import session_scope
from ..message import read_unsubscribe_token
from ..models import Subscriber
from ..settings import Settings
from .auth import AppSettings
from .pages import render_page

log = logging.getLogger(__name__)
router = APIRouter(tags=["public"])


def address_for(settings: Settings, token: str) -> str:
    """The subscriber address a token was signed for. HTTPException(400) for a tampered, foreign
    or malformed token, (404) for a valid token whose address is not subscribed here."""
    try:
        email = read_unsubscribe_token(settings, token)
    except BadSignature:
        raise HTTPException(400, "this unsubscribe link is not valid") from None
    with session_scope(settings) as session:
        if session.scalar(select(Subscriber.id).where(Subscriber.email_key == email)) is None:
            raise HTTPException(404, "no subscription for this link")
    return email


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, settings: AppSettings) -> HTMLResponse:
    """A confirmation page with a button. It changes nothing."""
    try:
        email = address_for(settings, token)
    except HTTPException as exc:
        return render_page(
            request,
            "message.html",
            exc.status_code,
            no_store=True,
            heading="This link does not work",
            paragraphs=[exc.detail + ". If you want to stop these emails, reply to one of them."],
        )
    return render_page(
        request,
        "message.html",
        no_store=True,
        heading=f"Unsubscribe from {settings.list_name}?",
        paragraphs=[f"{email} will get no more emails from {settings.list_name}."],
        form_action=f"/unsubscribe/{token}",
        button="Unsubscribe",
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(
    request: Request,
    token: str,
    settings: AppSettings,
    one_click: Annotated[str | None, Form(alias="List-Unsubscribe")] = None,
) -> HTMLResponse:
    """RFC 8058 one-click (form body `List-Unsubscribe=One-Click`) and the page's button.
    Idempotent; no cookies, no login. 400/404 as `address_for`."""
    try:
        email = address_for(settings, token)
    except HTTPException as exc:
        return render_page(
            request,
            "message.html",
            exc.status_code,
            no_store=True,
            heading="This link does not work",
            paragraphs=[exc.detail + "."],
        )
    with session_scope(settings) as session:
        subscriptions.unsubscribe(session, email, reason="one-click" if one_click else "web")
    return render_page(
        request,
        "message.html",
        no_store=True,
        heading="You are unsubscribed",
        paragraphs=[f"{email} will get no more emails from {settings.list_name}."],
    )


def _test_target(request: Request) -> HTMLResponse:
    return render_page(
        request,
        "message.html",
        heading="This was a test email",
        paragraphs=["Its unsubscribe link is harmless: nothing was changed."],
    )


@router.get("/unsubscribe-test", response_class=HTMLResponse)
def unsubscribe_test_page(request: Request) -> HTMLResponse:
    """Where test emails' unsubscribe links point: nothing happens."""
    return _test_target(request)


@router.post("/unsubscribe-test", response_class=HTMLResponse)
def unsubscribe_test_post(request: Request) -> HTMLResponse:
    """One-click on a test email: nothing happens."""
    return _test_target(request)
