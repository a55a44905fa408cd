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
from ..models import Subscriber, SubscriberStatus
from ..settings import Settings
from .auth import AppSettings
from .pages import render_page

log = logging.getLogger(__name__)
router = APIRouter(tags=["public"])


def address_for(settings: Settings, token: str) -> tuple[str, str]:
    """(address, subscriber status) for the address a token was signed for. HTTPException(400)
    for a tampered, foreign or malformed token, (404) for a valid token whose address is not
    subscribed here."""
    try:
        email = read_unsubscribe_token(settings, token)
    except BadSignature:
        raise HTTPException(400, "this unsubscribe link is not valid") from None
    with session_scope(settings) as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.email_key == email))
    if status is None:
        raise HTTPException(404, "no subscription for this link")
    return email, str(status)


def resubscribe_url(token: str) -> str:
    """Where a person who unsubscribed can join again (the manage pages, same signed token)."""
    return f"/manage/{token}"


def _bad_link(request: Request, exc: HTTPException) -> HTMLResponse:
    return render_page(
        request,
        "message.html",
        exc.status_code,
        no_store=True,
        heading="This link does not work",
        paragraphs=[
            exc.detail[:1].upper() + exc.detail[1:] + ".",
            "If you want to stop these emails, use the unsubscribe link in a recent one, or reply to it.",
        ],
        links=[("/", "See all episodes")],
    )


def _unsubscribed(request: Request, settings: Settings, email: str, token: str, heading: str) -> HTMLResponse:
    return render_page(
        request,
        "message.html",
        no_store=True,
        heading=heading,
        paragraphs=[
            f"{email} will get no more emails from {settings.list_name}.",
            "Changed your mind? You can subscribe again.",
        ],
        links=[(resubscribe_url(token), "Resubscribe"), ("/", "See all episodes")],
    )


@router.get("/unsubscribe", response_class=HTMLResponse)
def unsubscribe_help(request: Request, settings: AppSettings) -> HTMLResponse:
    """Where the web copy of the email points its unsubscribe link: how to unsubscribe (each
    email carries its recipient's own link). Changes nothing."""
    return render_page(
        request,
        "message.html",
        heading=f"Unsubscribe from {settings.list_name}",
        paragraphs=[
            "Every email we send has its own unsubscribe link at the bottom: open it from "
            "the email you received and press the button.",
            "You can also reply to any of our emails and ask to be removed.",
        ],
        links=[("/", "See all episodes")],
    )


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, settings: AppSettings) -> HTMLResponse:
    """A confirmation page with a button, or, when the address is already unsubscribed, a page
    that says so and offers to resubscribe. It changes nothing. 400/404 as `address_for`."""
    try:
        email, status = address_for(settings, token)
    except HTTPException as exc:
        return _bad_link(request, exc)
    if status == SubscriberStatus.UNSUBSCRIBED:
        return _unsubscribed(request, settings, email, token, "You are already unsubscribed")
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
        email, _status = address_for(settings, token)
    except HTTPException as exc:
        return _bad_link(request, exc)
    with session_scope(settings) as session:
        subscriptions.unsubscribe(session, email, reason="one-click" if one_click else "web")
    return _unsubscribed(request, settings, email, token, "You are unsubscribed")


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
