"""`newsletter poll`: one pass over the feeds and the drop folder."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import app, err, out, ready


@app.command()
def poll(
    feed: Annotated[
        str | None,
        typer.Argument(help="One feed URL or file (default: NEWSLETTER_FEEDS and NEWSLETTER_EPISODES_DIR)."),
    ] = None,
    send_backlog: Annotated[
        bool,
        typer.Option(
            "--send-backlog",
            help="On a feed's first poll, send its existing items too (normally only recorded as seen).",
        ),
    ] = False,
) -> None:
    """One polling pass by hand: new episodes become campaigns. Exit code 1 when a feed failed."""
    from ..feeds import poll_all, poll_feed

    settings = ready()
    if feed:
        reports = [poll_feed(feed, settings, send_backlog=send_backlog).as_dict()]
    else:
        reports = poll_all(settings)["reports"]
    failed = False
    for r in reports:
        if r["error"]:
            failed = True
            err.print(f"{r['source']}: {r['error']}", markup=False, highlight=False)
        else:
            note = " (first poll: back catalogue recorded, nothing sent)" if r["primed"] and not send_backlog else ""
            out.print(
                f"{r['source']}: {len(r['new'])} new, {r['seen']} already seen{note}", markup=False, highlight=False
            )
            for slug in r["new"]:
                out.print(f"  new: {slug}", markup=False, highlight=False)
        for note in r.get("notes", []):
            err.print(f"{r['source']}: {note}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)
