"""What every `newsletter` sub-command shares: the Typer apps, the consoles and argument helpers."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from ..errors import InputError
from ..models import MAX_ID
from ..settings import Settings, get_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Turn podcast episodes into email digests and send them to subscribers.",
)
subscribers_app = typer.Typer(no_args_is_help=True, help="Manage the subscriber list.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(db_app, name="db")


def _console(stderr: bool = False) -> Console:
    # Piped into a file or another program, rich cannot ask a terminal for its width and would
    # wrap every line at 80 columns: there, lines stay whole.
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, soft_wrap=True, width=None if tty else 10_000)


out = _console()
err = _console(stderr=True)


def _row_id(value: int | None) -> int | None:
    # A callback rather than min/max: the same check without "[1<=x<=2147483647]" in every
    # help line. Past INTEGER the database would fail the statement instead.
    if value is not None and not 1 <= value <= MAX_ID:
        raise typer.BadParameter(f"{value} is not a campaign id (1 to {MAX_ID})")
    return value


def campaign_arg(help: str) -> typer.models.ArgumentInfo:  # noqa: A002 - Typer's own keyword
    """A campaign id argument: a whole number from 1 to the ids' INTEGER (`models.MAX_ID`)."""
    return typer.Argument(help=help, callback=_row_id)


CampaignArg = Annotated[int, campaign_arg("The campaign's id (see `newsletter campaigns list`).")]


def fail(message: str) -> NoReturn:
    """Stop the command with a usage error: one line on stderr, exit code 2 (see `main`)."""
    raise InputError(message)


def parse_as_of(value: str | None) -> datetime | None:
    """`--as-of` as an aware datetime: a date alone is its midnight in NEWSLETTER_TIMEZONE.

    Raises InputError naming the option for anything not ISO 8601.
    """
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), get_settings().tz)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--as-of: expected a date like 2023-11-23 or 2023-11-23T18:00, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=get_settings().tz)


def _umask() -> int:
    """The process's umask (reading it means setting it; the CLI is one thread)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path` and rename: a reader never sees half a file. The
    file gets the permissions any new file gets under the umask (mkstemp's would be 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ready() -> Settings:
    """Settings plus a migrated database: every command that touches the ledger starts here."""
    from ..db import migrate
    from ..settings import check_database

    settings = get_settings()
    check_database(settings)
    migrate(settings)
    return settings
