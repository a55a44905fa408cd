"""`newsletter subscribers set-status`: staff changes of status, by the rules of
`worker.subscriptions` (the only way a bounced or complained address comes back)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import out, ready, subscribers_app


@subscribers_app.command("set-status")
def subscribers_set_status(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    status: Annotated[str, typer.Argument(help="pending, active, unsubscribed, bounced, complained or suppressed.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the status).")] = "set by staff",
) -> None:
    """Change a subscriber's status as staff. A change the rules refuse (anything out of erased,
    for one) is an input error (exit 2)."""
    from ..db import session_scope
    from ..subscriptions import Actor, transition

    settings = ready()
    with session_scope(settings) as session:
        change = transition(session, status.strip().lower(), Actor.STAFF, email=email, reason=reason)
    word = "now" if change.changed else "already"
    out.print(f"{email} is {word} {change.after}", markup=False, highlight=False, soft_wrap=True)
