"""Console sign-in and sign-out (`/console/sign-in`, `/console/sign-out`)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...throttle import Throttle
from ..auth import AppSettings, token_matches
from ..pages import render_page
from .session import (
    SIGN_IN_LIMIT,
    SIGN_IN_WINDOW,
    Console,
    check_post,
    clear_cookie,
    new_session,
    same_origin,
    set_cookie,
)

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
LOGIN_COOKIE = "nl_login"  # double-submit token for the sign-in form itself (login CSRF)


@lru_cache(maxsize=4)
def _throttle(redis_url: str) -> Throttle:
    # One per process and Redis URL: without Redis the counts live in this object.
    return Throttle(redis_url)


def _safe_next(next_path: str | None) -> str:
    # Only back into the console: never an open redirect.
    if next_path and next_path.startswith("/console") and not next_path.startswith("//"):
        return next_path
    return "/console"


def _form(request: Request, next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(16)
    response = render_page(
        request,
        "console/sign_in.html",
        status,
        no_store=True,
        next_path=_safe_next(next_path),
        login=token,
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, path="/console", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: Annotated[str, Query(max_length=500)] = "/console") -> HTMLResponse:  # noqa: A002
    """The sign-in form (the staff token)."""
    return _form(request, next)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    settings: AppSettings,
    token: Annotated[str, Form(max_length=500)],
    login: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=500)] = "/console",  # noqa: A002
) -> Response:
    """Check the staff token; on success set the session cookie and go to `next` (a console
    path). 403 for a cross-site post or a stale form, 429 after SIGN_IN_LIMIT attempts from one
    address in SIGN_IN_WINDOW seconds, 401 for a wrong token."""
    client = request.client.host if request.client else "?"
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not same_origin(request) or not cookie or not secrets.compare_digest(cookie, login):
        raise HTTPException(403, "the sign-in form has expired or did not come from this site: reload it")
    if not _throttle(settings.limiter_redis_url).hit(f"console-sign-in:{client}", SIGN_IN_LIMIT, SIGN_IN_WINDOW):
        return _form(request, next, "Too many attempts: wait ten minutes and try again.", 429)
    if not token_matches(token.strip(), settings):
        return _form(request, next, "That is not the staff token.", 401)
    value, _ = new_session(settings)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_cookie(response, request, value)
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
def sign_out(request: Request, staff: Console, csrf: Annotated[str, Form(max_length=100)]) -> Response:
    """End the session (the cookie is removed) and go back to the sign-in page."""
    check_post(request, staff, csrf)
    response = RedirectResponse("/console/sign-in", status_code=303)
    clear_cookie(response, request)
    return response
