"""`/manage/{token}`: a subscriber's own page, linked from every email's footer.

Shows the address and status; lets the person unsubscribe, resubscribe (they confirm again from a
new email: `worker.joining.request_resubscribe`), change their name, and download their data as
JSON. The token is the signed manage token (`message.Identities.manage_token`); an unsubscribe
token works too, so the unsubscribe pages can link here. Forms carry CSRF tokens (`csrf`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse
from itsdangerous import BadSignature
from sqlalchemy import select

from .. import joining, subscriptions
from ..db import session_scope
from ..errors import NotFound, TransitionRefused
from ..message import Identities
from ..models import Subscriber
from ..models import SubscriberStatus as S
from ..privacy import person_data
from ..settings import Settings
from .auth import AppSettings
from .csrf import check_csrf, csrf_token
from .pages import render_page

log = logging.getLogger(__name__)
router = APIRouter(tags=["joining"])

_LABELS = {
    S.ACTIVE: ("Subscribed", "You get an email when a new episode comes out."),
    S.PENDING: (
        "Waiting for your confirmation",
        "We sent you an email with a link to confirm. Nothing else is sent until you click it.",
    ),
    S.UNSUBSCRIBED: (
        "Unsubscribed",
        "You get no emails from us. You can come back at any time: we will send you a link to confirm.",
    ),
    S.BOUNCED: (
        "Not receiving emails",
        "Email to this address bounced, so we stopped sending to it. Only our "
        "team can turn it back on: reply to one of our emails from another address.",
    ),
    S.COMPLAINED: (
        "Not receiving emails",
        "One of our emails was reported as unwanted from this address, so we "
        "stopped sending to it. Only our team can turn it back on.",
    ),
    S.SUPPRESSED: (
        "Not receiving emails",
        "Our team stopped sending to this address. Reply to one of our emails if you think this is a mistake.",
    ),
}


class _Gone(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


def _address(settings: Settings, token: str) -> str:
    try:
        email = Identities(settings).read_manage_token(token)
    except BadSignature:
        raise _Gone(400, "this link is not valid") from None
    return email


def _problem(request: Request, exc: _Gone) -> HTMLResponse:
    return render_page(
        request,
        "notice.html",
        exc.status,
        no_store=True,
        heading="This link does not work",
        paragraphs=[f"{exc.detail[0].upper()}{exc.detail[1:]}. Nothing was changed."],
    )


def _page(request: Request, settings: Settings, token: str, notice: str = "", status_code: int = 200) -> HTMLResponse:
    email = _address(settings, token)
    with session_scope(settings) as session:
        sub = session.execute(
            select(Subscriber.email, Subscriber.name, Subscriber.status).where(Subscriber.email_key == email)
        ).first()
    if sub is None or sub.status == S.ERASED:
        raise _Gone(404, "there is no subscription for this link")
    label, explanation = _LABELS[sub.status]
    return render_page(
        request,
        "manage.html",
        status_code,
        no_store=True,
        email=sub.email,
        person_name=sub.name,
        status_label=label,
        explanation=explanation,
        notice=notice,
        base=f"/manage/{token}",
        csrf=csrf_token(settings, token),
        can_unsubscribe=sub.status in (S.ACTIVE, S.PENDING),
        can_resubscribe=sub.status in (S.UNSUBSCRIBED, S.PENDING),
        resubscribe_label="Resubscribe" if sub.status == S.UNSUBSCRIBED else "Send the confirmation email again",
        can_rename=sub.status in (S.ACTIVE, S.PENDING),
    )


@router.get("/manage/{token}", response_class=HTMLResponse)
def manage_page(request: Request, token: str, settings: AppSettings) -> HTMLResponse:
    """The address, its status and what the person can do. Changes nothing."""
    try:
        return _page(request, settings, token)
    except _Gone as exc:
        return _problem(request, exc)


@router.post("/manage/{token}/unsubscribe", response_class=HTMLResponse)
def manage_unsubscribe(
    request: Request, token: str, settings: AppSettings, csrf: Annotated[str | None, Form(max_length=400)] = None
) -> HTMLResponse:
    """Unsubscribe from the manage page (idempotent)."""
    check_csrf(request, settings, token, csrf)
    try:
        email = _address(settings, token)
        with session_scope(settings) as session:
            subscriptions.unsubscribe(session, email, reason="manage page")
        return _page(request, settings, token, "You are unsubscribed: no more emails will be sent to you.")
    except (_Gone, NotFound) as exc:
        return _problem(
            request, exc if isinstance(exc, _Gone) else _Gone(404, "there is no subscription for this link")
        )


@router.post("/manage/{token}/resubscribe", response_class=HTMLResponse)
def manage_resubscribe(
    request: Request, token: str, settings: AppSettings, csrf: Annotated[str | None, Form(max_length=400)] = None
) -> HTMLResponse:
    """Ask to come back: a confirmation email (at most one an hour); bounced or complained
    addresses are refused (409), only staff can bring them back."""
    check_csrf(request, settings, token, csrf)
    try:
        email = _address(settings, token)
        with session_scope(settings) as session:
            outcome = joining.request_resubscribe(session, email)
            sid = session.scalar(select(Subscriber.id).where(Subscriber.email_key == email))
    except _Gone as exc:
        return _problem(request, exc)
    except NotFound:
        return _problem(request, _Gone(404, "there is no subscription for this link"))
    except TransitionRefused:
        return _page(request, settings, token, "We cannot resubscribe this address from here.", 409)
    if outcome == "sent" and sid is not None:
        joining.enqueue_email(settings, "confirm", [sid])
    notice = {
        "sent": f"We sent an email to {email}. Click the link in it to confirm.",
        "recently": "We sent you a confirmation email less than an hour ago: use the link in it (and check "
        "your spam folder).",
        "already": "You are already subscribed.",
    }[outcome]
    return _page(request, settings, token, notice)


@router.post("/manage/{token}/name", response_class=HTMLResponse)
def manage_name(
    request: Request,
    token: str,
    settings: AppSettings,
    name: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str | None, Form(max_length=400)] = None,
) -> HTMLResponse:
    """Change the name emails greet you by (one line, up to 200 characters; empty is fine)."""
    check_csrf(request, settings, token, csrf)
    try:
        email = _address(settings, token)
        with session_scope(settings) as session:
            joining.rename(session, email, name)
        return _page(request, settings, token, "Your name is saved.")
    except _Gone as exc:
        return _problem(request, exc)
    except NotFound:
        return _problem(request, _Gone(404, "there is no subscription for this link"))


@router.get("/manage/{token}/export")
def manage_export(token: str, settings: AppSettings) -> JSONResponse:
    """Everything we hold about you, as JSON (a download). 400 for a bad link, 404 for nobody."""
    try:
        email = _address(settings, token)
        with session_scope(settings) as session:
            data = person_data(session, email)
    except _Gone as exc:
        return JSONResponse({"detail": exc.detail}, exc.status)
    except NotFound:
        return JSONResponse({"detail": "there is no subscription for this link"}, 404)
    return JSONResponse(
        data,
        headers={"Cache-Control": "no-store", "Content-Disposition": 'attachment; filename="my-subscription.json"'},
    )
