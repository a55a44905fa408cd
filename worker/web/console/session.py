"""Staff sign-in for the console: the staff token buys a session cookie; every form carries a
CSRF token; cross-site posts are refused.

- The cookie (`nl_staff`) is an itsdangerous-signed, timestamped value holding a random session
  id and a fingerprint of NEWSLETTER_STAFF_TOKEN, so changing the token signs everyone out. It is
  HttpOnly, SameSite=Lax, Secure when the request came over https, and expires after
  SESSION_SECONDS (the signature's age is checked too, so a kept cookie does not outlive it).
- The CSRF token is an HMAC of the session id (synchroniser token without server state); every
  POST also needs an Origin (or, without one, a Referer) of this site (OWASP CSRF cheat sheet).
- Sign-in attempts are limited per client address (SIGN_IN_LIMIT per SIGN_IN_WINDOW seconds,
  counted in Redis by `worker.throttle` when there is one).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ...settings import Settings
from ..auth import AppSettings

COOKIE = "nl_staff"
SESSION_SECONDS = 8 * 3600
SIGN_IN_LIMIT = 20
SIGN_IN_WINDOW = 600


class SignInRequired(Exception):
    """A console page asked for without a valid session: the app answers with a redirect to the
    sign-in page (GET) or 403 (anything else)."""

    def __init__(self, next_path: str):
        self.next_path = next_path
        super().__init__(next_path)


@dataclass(frozen=True)
class StaffSession:
    """A signed-in member of staff: the session id and the CSRF token its forms must carry."""

    sid: str
    csrf: str


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key, salt="newsletter-staff-session")


def _fingerprint(settings: Settings) -> str:
    return hashlib.sha256(f"staff-token|{settings.staff_token}".encode()).hexdigest()[:16]


def csrf_for(settings: Settings, sid: str) -> str:
    """The CSRF token for session `sid` (hex, 32 chars)."""
    return hmac.new(settings.signing_key.encode(), f"csrf|{sid}".encode(), hashlib.sha256).hexdigest()[:32]


def new_session(settings: Settings) -> tuple[str, StaffSession]:
    """(cookie value, session) for a member of staff who just proved the token."""
    sid = secrets.token_urlsafe(18)
    value = _serializer(settings).dumps({"sid": sid, "tk": _fingerprint(settings)})
    return value, StaffSession(sid, csrf_for(settings, sid))


def read_session(settings: Settings, value: str | None) -> StaffSession | None:
    """The session a cookie value stands for, or None: missing, tampered, older than
    SESSION_SECONDS, or signed while another staff token was configured."""
    if not value or not settings.staff_token:
        return None
    try:
        data = _serializer(settings).loads(value, max_age=SESSION_SECONDS)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("tk", "")), _fingerprint(settings)):
        return None
    sid = str(data.get("sid", ""))
    return StaffSession(sid, csrf_for(settings, sid)) if sid else None


def set_cookie(response: Response, request: Request, value: str) -> None:
    """Attach the session cookie (HttpOnly, SameSite=Lax, Secure over https, SESSION_SECONDS)."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    """Remove the session cookie."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")


def same_origin(request: Request) -> bool:
    """True when the request's Origin (or, without one, its Referer) is this site. A POST with
    neither is refused too: every browser sends Origin on a form POST."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def signed_in(request: Request, settings: AppSettings) -> StaffSession:
    """FastAPI dependency for console routes: the session, or SignInRequired."""
    session = read_session(settings, request.cookies.get(COOKIE))
    if session is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    return session


Console = Annotated[StaffSession, Depends(signed_in)]


def check_post(request: Request, session: StaffSession, csrf: str) -> None:
    """Refuse (HTTPException 403) a console POST from another site or without this session's CSRF
    token. Call it first in every console POST route."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site form post refused")
    if not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
        raise HTTPException(403, "the form has expired or did not come from this site: reload the page and try again")
