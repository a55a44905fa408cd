"""The `newsletter` command. Each command is a thin shell over plain functions in the package.

Sub-modules group the commands by subject and register them on one Typer app:
`episodes` (render, send-test), `subscribers`, `campaigns` (publish, status, send, resend, sweep,
demo), `feeds` (poll), `web` and `db`.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from ..errors import ConfigError, InputError, NewsletterError, NotFound
from . import (  # noqa: F401  (they register the commands)
    campaigns,
    control,
    db,
    delivery,
    episodes,
    feeds,
    privacy,
    statuses,
    subscribers,
    web,
)
from ._common import app, err

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: input errors are one line on stderr and exit code 2, never a traceback; a
    malformed command line too (Typer's own error box is several lines).

    Exit codes: 0 done, 1 an operational failure (`NewsletterError`), 2 a usage or input error,
    including a setting that cannot work (`ConfigError`: a mail URL, a key file, a mailbox).
    """
    try:
        code = app(standalone_mode=False, prog_name="newsletter")  # also as `python -m worker.cli`
    except typer.Abort:  # Ctrl-C at a prompt
        err.print("aborted", markup=False, highlight=False)
        sys.exit(1)
    except TyperException as exc:  # the command line itself: a missing or malformed argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # `newsletter campaigns` alone: help shown
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err.print(f"error: {exc.format_message()}{hint}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except (InputError, NotFound, ConfigError) as exc:  # a bad argument or setting: a file, a field, an id
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except NewsletterError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
