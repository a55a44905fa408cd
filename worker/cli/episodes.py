"""Commands that take an episode file: `render` and `send-test`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import InputError
from ..settings import get_settings
from ._common import app, err, out, parse_as_of, ready, write_atomic


@app.command()
def render(
    episode: Annotated[Path, typer.Argument(help="Episode file: page layout (.txt) or Markdown with front matter.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for body.html, body.txt, message.eml, event.ics.")],
    to: Annotated[str, typer.Option(help="The recipient to personalise for.")] = "subscriber@example.com",
    name: Annotated[str, typer.Option(help="The recipient's name.")] = "",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Send time (date or date-time); an event over by then is left out. Default: now."),
    ] = None,
) -> None:
    """Render one episode into the exact email a subscriber would receive."""
    from ..episodes import load_episode
    from ..message import Recipient, compose
    from ..subscribers import normalise_email

    settings = get_settings()
    address = normalise_email(to, where="--to")
    ep = load_episode(episode, settings.tz)
    template = compose(ep, settings, parse_as_of(as_of))
    recipient = Recipient(address, name)
    message, _ = template.build(recipient)
    html, text = template.personalised(recipient)
    files = {"body.html": html.encode(), "body.txt": text.encode(), "message.eml": message}
    if template.ics:
        files["event.ics"] = template.ics
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            write_atomic(out_dir / fname, data)
    except OSError as exc:  # a file where the folder should be, no permission, a full disk
        raise InputError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    if not template.ics:
        (out_dir / "event.ics").unlink(missing_ok=True)  # a stale one from an earlier render would mislead
    for w in ep.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    table = Table(show_header=True, box=None)
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for fname, data in files.items():
        table.add_row(fname, f"{len(data):,}")
    out.print(f"{ep.title} → {address}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"written to {out_dir.resolve()}", markup=False, highlight=False, soft_wrap=True)
    out.print(table)


@app.command("send-test")
def send_test_cmd(
    episode: Annotated[Path, typer.Argument(help="Episode file.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient on NEWSLETTER_STAFF_ALLOWLIST (repeatable).")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Send time (date or date-time) the email is judged at. Default: now."),
    ] = None,
) -> None:
    """Send the email to staff, marked [TEST]; never touches the campaign ledger."""
    from ..episodes import load_episode
    from ..staff import send_test

    settings = ready()
    ep = load_episode(episode, settings.tz)
    results = send_test(ep, to, settings, requested_by="cli", as_of=parse_as_of(as_of))
    for r in results:
        out.print(
            f"{r.recipient}: {'sent ' + (r.message_id or '') if r.ok else 'FAILED ' + (r.error or '')}",
            markup=False,
            highlight=False,
        )
    if not all(r.ok for r in results):
        raise typer.Exit(1)
