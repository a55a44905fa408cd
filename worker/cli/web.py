"""`newsletter web`: serve the web side with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import app, ready


@app.command()
def web(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the episode archive, unsubscribe pages and staff tools."""
    import uvicorn

    from ..web import create_app

    settings = ready()
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True, log_level="info")
