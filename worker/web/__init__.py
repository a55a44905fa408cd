"""The web side (FastAPI): the episode archive the email links to, unsubscribe, staff tools.

    newsletter web            # uvicorn on 127.0.0.1:8000

A GET never changes anything (link scanners follow GETs); unsubscribing is a POST, which is also
RFC 8058 one-click. Staff endpoints need NEWSLETTER_STAFF_TOKEN (see `auth`).

Layout: one router per audience — `archive` (`/`, the Atom feed), `public` (episode pages, the
web copy of the email, health), `unsubscribe`, `staff` (preview, test sends, campaign JSON) —
each a module-level `APIRouter` that reads the app's settings through the `auth.AppSettings`
dependency; `create_app` only wires them together. Errors are HTML pages for people and JSON for
the API (`errors`); `/docs` is served without a CDN (`docs`); the staff console is its own
package (`console`: sign-in, campaigns, subscribers, feeds).
To add pages, write a module with `router = APIRouter(...)` and add it to `ROUTERS`.
"""

from __future__ import annotations

from fastapi import FastAPI

from ..settings import Settings, get_settings
from . import archive, console, docs, errors, hooks, joining, manage, operations, public, staff, unsubscribe
from .limits import BodyLimit
from .pages import page_environment

ROUTERS = [
    archive.router,
    public.router,
    unsubscribe.router,
    staff.router,
    operations.router,
    joining.router,
    manage.router,
    hooks.router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving every router in ROUTERS with `settings` (default: `get_settings()`),
    stored on `app.state.settings`, and bodies over NEWSLETTER_MAX_REQUEST_BYTES refused (413)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="newsletter-worker",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        description="Episode archive, unsubscribe (RFC 8058) and staff tools.",
    )
    app.state.settings = settings
    app.state.pages = page_environment(settings)
    for router in ROUTERS:
        app.include_router(router)
    console.install(app)
    docs.install(app)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    return app


__all__ = ["create_app", "ROUTERS"]
