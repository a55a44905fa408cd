"""`newsletter poll`: one pass over the feeds and the drop folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from ._common import app, err, fail, out, ready


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
    # Each failure comes back in a report and is printed below, once; the log line beat's
    # worker needs would only say it a second time here.
    logging.getLogger("worker.feeds").setLevel(logging.CRITICAL)
    if feed:
        _check_source(feed)  # a mistyped path is reported, never recorded as a feed
        reports = [poll_feed(feed, settings, send_backlog=send_backlog).as_dict()]
    elif not settings.feed_list and not settings.episodes_dir:
        fail("nothing to poll: give a FEED, or set NEWSLETTER_FEEDS or NEWSLETTER_EPISODES_DIR")
    else:
        reports = poll_all(settings)["reports"]
    failed = False
    for r in reports:
        if r["error"]:
            failed = True
            # Errors already start with the path or URL they are about: name it once.
            message = r["error"] if r["error"].startswith(_named(r["source"])) else f"{r['source']}: {r['error']}"
            err.print(message, markup=False, highlight=False)
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


def _named(source: str) -> tuple[str, ...]:
    """How an error message may name a source: as given, or as the path of a file: URL."""
    parts = urlsplit(source)
    return (source, parts.path) if parts.scheme == "file" else (source,)


def _check_source(feed: str) -> None:
    """InputError (exit 2, nothing recorded) for a file that is not there or a scheme no poll
    can read; http(s) URLs are left to the poll, which records their failures."""
    parts = urlsplit(feed)
    if parts.scheme in ("http", "https"):
        return
    if parts.scheme not in ("", "file"):
        fail(f"{feed}: only http, https and local files are polled")
    path = Path(parts.path if parts.scheme == "file" else feed)
    if not path.is_file():
        fail(f"{feed}: {'not a file' if path.exists() else 'no such file'}")
