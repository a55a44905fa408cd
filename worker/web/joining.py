"""Signing up (double opt-in): the form, `POST /subscribe`, and the confirmation link's page.

`POST /subscribe` takes a form post (the embeddable `<form>` in the README, from the show's own
site) or JSON. Whatever happened — new address, already subscribed, suppressed, blocked domain,
honeypot filled, too many requests for that address — the answer is the same "check your inbox",
so it never tells whether an address is on the list. Only an invalid address (422) and too many
requests from one client IP (429) answer differently. See `worker.joining` for the rules.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from .. import joining
from ..db import session_scope
from ..errors import BadLink, InputError, LinkExpired, TransitionRefused
from ..message import Identities
from ..settings import Settings
from ..subscribers import normalise_email
from ..throttle import Throttle
from .auth import AppSettings
from .csrf import check_csrf, csrf_token
from .pages import render_page

log = logging.getLogger(__name__)
router = APIRouter(tags=["joining"])

HONEYPOT = "website"  # a field people never see; bots fill it in
CHECK_INBOX = "Check your inbox"


class SignupRequest(BaseModel):
    """A signup: the address (at most 320 characters), an optional name, and a honeypot field
    that people leave empty."""

    email: str = Field(max_length=320, description="The address to subscribe", json_schema_extra={"format": "email"})
    name: str = Field("", max_length=200, description="Optional display name")
    website: str = Field("", max_length=200, description="Honeypot: leave empty")


class SignupReply(BaseModel):
    """The answer to a signup: `ok` and a message to show the person."""

    ok: bool = True
    message: str


_FORM_SCHEMA = {
    "type": "object",
    "required": ["email"],
    "properties": {
        "email": {"type": "string", "format": "email", "maxLength": 320},
        "name": {"type": "string", "maxLength": 200},
        HONEYPOT: {"type": "string", "maxLength": 200},
    },
}
_SIGNUP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SignupRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
        },
    }
}


@lru_cache(maxsize=4)
def _throttle(redis_url: str) -> Throttle:
    return Throttle(redis_url)


def _reply_message(settings: Settings) -> str:
    return (
        f"If that address can join {settings.list_name}, an email is on its way with a link to confirm. "
        "Nothing is sent to you until you click it."
    )


async def _read_signup(request: Request) -> tuple[dict[str, Any], bool]:
    """(fields, is_json). InputError for a body that is neither a valid form nor a JSON object."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise InputError("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InputError("the body must be a JSON object")
        try:
            return SignupRequest.model_validate(data).model_dump(), True
        except ValueError as exc:
            raise InputError(str(exc).splitlines()[0]) from None
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        fields = {k: form.get(k, "") for k in ("email", "name", HONEYPOT)}
        if not all(isinstance(v, str) for v in fields.values()):
            raise InputError("form fields must be text")
        return {k: str(v)[:400] for k, v in fields.items()}, False
    raise InputError("send a form (application/x-www-form-urlencoded) or JSON")


def _answer(request: Request, settings: Settings, is_json: bool, status: int = 202, error: str = "") -> Response:
    if is_json:
        if error:
            return JSONResponse({"detail": error}, status_code=status)
        return JSONResponse(SignupReply(message=_reply_message(settings)).model_dump(), status_code=status)
    if error:
        return render_page(request, "subscribe.html", status, error=error)
    return render_page(request, "notice.html", 200, heading=CHECK_INBOX, paragraphs=[_reply_message(settings)])


@router.get("/subscribe", response_class=HTMLResponse)
def subscribe_page(request: Request) -> HTMLResponse:
    """The signup form (the same plain `<form>` the README shows for embedding)."""
    return render_page(request, "subscribe.html")


@router.post(
    "/subscribe",
    openapi_extra=_SIGNUP_BODY,
    responses={202: {"model": SignupReply}, 422: {"description": "not a valid address"}, 429: {}},
)
async def subscribe(request: Request, settings: AppSettings) -> Response:
    """Sign up: a form post or JSON with `email` and optional `name`. 202 (JSON) or a "check your
    inbox" page (form) whatever the address's standing; 422 for an invalid address; 429 when one
    client IP posts more than NEWSLETTER_SIGNUP_IP_LIMIT_PER_HOUR times an hour."""
    is_json = "json" in request.headers.get("content-type", "")
    try:
        fields, is_json = await _read_signup(request)
    except InputError as exc:
        return _answer(request, settings, is_json, 422, exc.message)
    throttle = _throttle(settings.limiter_redis_url)
    client = request.client.host if request.client else "unknown"
    if not throttle.hit(f"ip:{client}", settings.signup_ip_limit_per_hour):
        return _answer(request, settings, is_json, 429, "too many signups from your network; try again later")
    try:
        email = normalise_email(str(fields["email"]), where="email")
    except InputError as exc:
        return _answer(request, settings, is_json, 422, exc.message)
    if fields.get(HONEYPOT):
        log.info("signup ignored: honeypot filled")
        return _answer(request, settings, is_json)
    if not throttle.hit(f"address:{email.lower()}", settings.signup_address_limit_per_hour):
        return _answer(request, settings, is_json)  # silently: the answer must not differ
    with session_scope(settings) as session:
        result = joining.signup(session, settings, email, str(fields.get("name") or ""))
    log.info("signup %s (subscriber #%s)", result.outcome, result.subscriber_id)
    if result.send and result.subscriber_id is not None:
        joining.enqueue_email(settings, "confirm", [result.subscriber_id])
    return _answer(request, settings, is_json)


def _link_problem(request: Request, exc: BadLink) -> HTMLResponse:
    if isinstance(exc, LinkExpired):
        return render_page(
            request,
            "notice.html",
            410,
            no_store=True,
            heading="This link has expired",
            paragraphs=[
                "Confirmation links work for a limited time, and this one is too old. Nothing was changed.",
                "Sign up again and we will send you a fresh link.",
            ],
            link_url="/subscribe",
            link_text="Sign up again",
        )
    return render_page(
        request,
        "notice.html",
        400,
        no_store=True,
        heading="This link does not work",
        paragraphs=[f"{exc.message}. Nothing was changed.", "Check that you used the whole link from the email."],
    )


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, settings: AppSettings) -> HTMLResponse:
    """The confirmation link's page: the address and a button. Changes nothing (link scanners
    follow GETs). 410 when the link has expired, 400 when it is not valid."""
    try:
        with session_scope(settings) as session:
            email, status = joining.peek(session, settings, token)
    except BadLink as exc:
        return _link_problem(request, exc)
    if status == "active":
        return _done(request, settings, email, "You are already subscribed")
    return render_page(
        request,
        "confirm.html",
        no_store=True,
        email=email,
        form_action=f"/confirm/{token}",
        csrf=csrf_token(settings, token),
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(
    request: Request, token: str, settings: AppSettings, csrf: Annotated[str | None, Form(max_length=400)] = None
) -> HTMLResponse:
    """Confirm: pending or unsubscribed becomes active. A replayed link changes nothing."""
    check_csrf(request, settings, token, csrf)
    try:
        with session_scope(settings) as session:
            result = joining.confirm(session, settings, token)
    except BadLink as exc:
        return _link_problem(request, exc)
    except TransitionRefused:
        return render_page(
            request,
            "notice.html",
            409,
            no_store=True,
            heading="We cannot subscribe this address",
            paragraphs=[
                "Email to it has bounced or been reported, so we no longer send to it. Reply to one "
                "of our emails from another address if you think this is a mistake."
            ],
        )
    if result.outcome == "used":
        return render_page(
            request,
            "notice.html",
            409,
            no_store=True,
            heading="This link was already used",
            paragraphs=["Nothing was changed. To subscribe again, sign up on the form."],
            link_url="/subscribe",
            link_text="Sign up",
        )
    if result.welcome and result.subscriber_id is not None:
        joining.enqueue_email(settings, "welcome", [result.subscriber_id])
    return _done(request, settings, result.email, "You are subscribed")


def _done(request: Request, settings: Settings, email: str, heading: str) -> HTMLResponse:
    manage = f"/manage/{Identities(settings).manage_token(email)}"
    return render_page(
        request,
        "notice.html",
        no_store=True,
        heading=heading,
        paragraphs=[f"{email} will get {settings.list_name} when a new episode comes out."],
        link_url=manage,
        link_text="Manage your subscription",
    )
