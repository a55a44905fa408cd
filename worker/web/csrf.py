"""CSRF protection for the forms on our own pages (confirm, manage).

Each form carries a hidden `csrf` field: the page's link token, hashed and signed with a
timestamp (itsdangerous, salt "newsletter.csrf"), valid for a day. A cross-site page cannot read
it (same-origin policy), so it cannot forge the POST; a request whose `Origin` header names
another site is refused as well. The signup form is cross-site by design and has no token: it is
protected by the honeypot, the rate limits and double opt-in. RFC 8058 one-click has none
either: mail clients post it without any page.
"""

from __future__ import annotations

import hashlib

from fastapi import HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..settings import Settings

MAX_AGE = 86400


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key, salt="newsletter.csrf")


def _bind(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def csrf_token(settings: Settings, link_token: str) -> str:
    """The hidden field value for forms on the page of `link_token`."""
    return _serializer(settings).dumps(_bind(link_token))


def check_csrf(request: Request, settings: Settings, link_token: str, given: str | None) -> None:
    """HTTPException(403) unless `given` was made for `link_token` within MAX_AGE seconds and the
    request does not come from another site (Origin header, when the browser sends one)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin and origin.rstrip("/") not in (own, settings.base_url):
        raise HTTPException(403, "cross-site form post refused")
    try:
        bound = _serializer(settings).loads(given or "", max_age=MAX_AGE)
    except BadSignature:
        raise HTTPException(403, "this form has expired; reload the page and try again") from None
    if bound != _bind(link_token):
        raise HTTPException(403, "this form has expired; reload the page and try again")
