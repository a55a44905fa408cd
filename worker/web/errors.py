"""Errors as people and programs want them: an HTML page in the site's style for a browser on a
page route, JSON (`{"detail": ...}`, FastAPI's shape) for the API.

The choice: a route declared with `response_class=HTMLResponse` gets HTML; an API route gets JSON;
a path that matches no route gets HTML when the Accept header asks for `text/html`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from .pages import render_page

log = logging.getLogger(__name__)

#: What a person is told per status; `detail` from the raised error follows it.
HEADINGS = {
    400: "This link does not work",
    401: "Staff sign-in needed",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    413: "Too much data",
    422: "Something in the form is not right",
    429: "Too many requests",
    500: "Something went wrong on our side",
}


def wants_html(request: Request) -> bool:
    """True when an error for this request should be an HTML page (see the module docstring)."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        return route.response_class is HTMLResponse
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
    """The HTML error page: a heading for the status, the detail, a way back home."""
    response = render_page(
        request,
        "error.html",
        status,
        no_store=True,
        heading=HEADINGS.get(status, "Something went wrong"),
        detail=detail,
        code=status,
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    """HTTPException (ours and Starlette's 404/405) as a page or as FastAPI's JSON."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    if wants_html(request):
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this address."
        return error_page(request, exc.status_code, detail, dict(exc.headers or {}))
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    """422: for a page, the first problem in one line; for the API, FastAPI's error list."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if wants_html(request):
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        return error_page(request, 422, f"{field}: {first.get('msg', 'not valid')}")
    return JSONResponse({"detail": [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in errors]}, 422)


async def server_error(request: Request, exc: Exception) -> Response:
    """500, logged with its traceback; the person sees no internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    if wants_html(request):
        return error_page(request, 500, "The error has been logged. Please try again in a little while.")
    return JSONResponse({"detail": "internal server error"}, 500)


def install(app: FastAPI) -> None:
    """Register the three handlers on `app`."""
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)
