"""Server-rendered pages: one Jinja2 environment over `templates/web/`, autoescaped."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, select_autoescape

from ..settings import Settings
from ..templating import TemplateFiles


def page_environment(settings: Settings) -> Environment:
    """The Jinja2 environment for `templates/web/` (autoescape on for every template)."""
    return Environment(
        loader=TemplateFiles(settings.templates_dir, "web"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def render_page(
    request: Request, name: str, status: int = 200, *, no_store: bool = False, **context: Any
) -> HTMLResponse:
    """Render `templates/web/NAME` with the list's name and postal line added to `context`.

    `no_store` sets `Cache-Control: no-store` (pages that show an address). Raises
    jinja2.TemplateNotFound for a missing template."""
    settings: Settings = request.app.state.settings
    env: Environment = request.app.state.pages
    html = env.get_template(name).render(list_name=settings.list_name, sender_postal=settings.sender_postal, **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"} if no_store else None)
