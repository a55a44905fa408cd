"""`newsletter web`: serve the web side with uvicorn."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from ..errors import InputError
from ._common import app, ready


@app.command()
def web(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the episode archive, unsubscribe pages and staff tools."""
    import uvicorn

    from ..web import create_app

    settings = ready()
    _check_free(host, port)
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True, log_level="info")


def _check_free(host: str, port: int) -> None:
    """Fail with one line (exit 2) when HOST:PORT cannot be bound, before uvicorn starts and logs
    a traceback-like shutdown. The probe socket is closed at once; a race with another program
    taking the port in between still ends in uvicorn's own error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
