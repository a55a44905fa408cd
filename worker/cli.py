"""The `newsletter` command. Each command is a thin shell over plain functions in the package."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import InputError, NewsletterError
from .settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Turn podcast episodes into email digests and send them to subscribers.")
subscribers_app = typer.Typer(no_args_is_help=True, help="Manage the subscriber list.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True, soft_wrap=True)


def main() -> None:
    """Entry point: input errors are one line on stderr and exit code 2, never a traceback."""
    try:
        app(standalone_mode=True)
    except InputError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except NewsletterError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


def fail(message: str) -> None:
    raise InputError(message)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), get_settings().tz)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--as-of: expected a date like 2023-11-23 or 2023-11-23T18:00, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=get_settings().tz)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path` and rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
def render(
    episode: Annotated[Path, typer.Argument(help="Episode file: page layout (.txt) or Markdown with front matter.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for body.html, body.txt, message.eml, event.ics.")],
    to: Annotated[str, typer.Option(help="The recipient to personalise for.")] = "subscriber@example.com",
    name: Annotated[str, typer.Option(help="The recipient's name.")] = "",
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Send time (date or date-time); "
                                                 "an event over by then is left out. Default: the episode's date.")] = None,
) -> None:
    """Render one episode into the exact email a subscriber would receive."""
    from .episodes import load_episode
    from .message import Recipient, compose
    from .subscribers import normalise_email

    settings = get_settings()
    address = normalise_email(to, where="--to")
    ep = load_episode(episode, settings.tz)
    template = compose(ep, settings, _as_of(as_of))
    recipient = Recipient(address, name)
    message, _ = template.build(recipient)
    html, text = template.personalised(recipient)
    files = {"body.html": html.encode(), "body.txt": text.encode(), "message.eml": message}
    if template.ics:
        files["event.ics"] = template.ics
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        write_atomic(out_dir / fname, data)
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


if __name__ == "__main__":  # pragma: no cover
    main()
