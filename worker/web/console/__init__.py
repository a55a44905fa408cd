"""The staff console (`/console`): server-rendered pages for campaigns, subscribers and feeds,
behind a sign-in with the staff token (`session`). Every button is a form with a CSRF token and
calls the same domain function as its API operation and its `newsletter` command."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from ..errors import error_page
from . import campaigns, people, signin
from .session import SignInRequired

ROUTERS = [signin.router, campaigns.router, people.router]


async def sign_in_required(request: Request, exc: Exception) -> Response:
    """A console page without a session: GET goes to the sign-in page (and back after), JSON
    polls get 401, anything else 403."""
    assert isinstance(exc, SignInRequired)
    if request.method == "GET" and not request.url.path.endswith(".json"):
        from urllib.parse import quote

        return RedirectResponse(f"/console/sign-in?next={quote(exc.next_path, safe='/')}", status_code=303)
    if request.url.path.endswith(".json"):
        return Response('{"detail": "sign in first"}', 401, media_type="application/json")
    return error_page(request, 403, "Sign in to the console first.")


def install(app: FastAPI) -> None:
    """Add the console's routers and its sign-in redirect to `app`."""
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(SignInRequired, sign_in_required)
