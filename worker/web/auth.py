"""Who may call the staff endpoints: the dependency every staff router declares.

The API takes NEWSLETTER_STAFF_TOKEN as a bearer token (`Authorization: Bearer TOKEN`) or as the
password of HTTP basic auth (RFC 7617; any user name). Without a configured token every staff
request is refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ..settings import Settings

CHALLENGE = {"WWW-Authenticate": 'Basic realm="newsletter staff", charset="UTF-8"'}


def settings_of(request: Request) -> Settings:
    """The settings the app was created with (`app.state.settings`)."""
    return request.app.state.settings


AppSettings = Annotated[Settings, Depends(settings_of)]


def given_token(request: Request) -> str:
    """The token a request presents: the bearer token, or the basic-auth password; "" if none
    (a malformed basic header counts as none)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def token_matches(given: str, settings: Settings) -> bool:
    """True when `given` equals NEWSLETTER_STAFF_TOKEN, compared in constant time; always False
    when no token is configured."""
    token = settings.staff_token
    return bool(token and given and hmac.compare_digest(given.encode(), token.encode()))


def cross_site(request: Request) -> bool:
    """True when the browser says the request came from another site: `Sec-Fetch-Site:
    cross-site`, or an Origin (including "null") that is not this site. API clients send
    neither, so they are never refused."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    return origin is not None and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}"


def require_staff(request: Request, settings: AppSettings) -> str:
    """FastAPI dependency: returns "staff" (who asked, for the logs) or raises
    HTTPException(401) with a Basic challenge. A signed-in console session also counts, for
    GET and HEAD only (so the console can link to the preview; a POST needs the token or the
    console's own CSRF-checked forms). 403 for a POST (or other unsafe method) that a browser
    marks as cross-site: browsers replay cached basic-auth credentials on a form post from any
    site, so the token alone does not show that staff meant it (OWASP CSRF cheat sheet)."""
    if token_matches(given_token(request), settings):
        if request.method not in ("GET", "HEAD", "OPTIONS") and cross_site(request):
            raise HTTPException(403, "cross-site post refused")
        return "staff"
    if request.method in ("GET", "HEAD"):
        from .console.session import COOKIE, read_session

        if read_session(settings, request.cookies.get(COOKIE)) is not None:
            return "staff (console)"
    raise HTTPException(401, "staff credentials required", headers=CHALLENGE)


Staff = Annotated[str, Depends(require_staff)]
