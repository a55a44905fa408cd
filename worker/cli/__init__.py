"""The `newsletter` command. Each command is a thin shell over plain functions in the package.

Sub-modules group the commands by subject and register them on one Typer app:
`episodes` (render, send-test), `subscribers`, `campaigns` (publish, status, send, resend, sweep,
demo), `feeds` (poll), `web` and `db`.
"""

from __future__ import annotations

import sys

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
    """Entry point: input errors are one line on stderr and exit code 2, never a traceback.

    Exit codes: 0 done, 1 an operational failure (`NewsletterError`), 2 a usage or input error,
    including a setting that cannot work (`ConfigError`: a mail URL, a key file, a mailbox).
    """
    try:
        app(standalone_mode=True)
    except (InputError, NotFound, ConfigError) as exc:  # a bad argument or setting: a file, a field, an id
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except NewsletterError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)
