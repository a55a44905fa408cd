"""`newsletter campaigns list|send|pause|resume|cancel|schedule|unschedule|retry-failed`: the
command-line twins of the console's buttons, each calling the same `worker.control` function."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._common import CampaignArg, app, out, ready

campaigns_app = typer.Typer(no_args_is_help=True, help="List campaigns and control them (pause, schedule...).")
app.add_typer(campaigns_app, name="campaigns")


def _show(report) -> None:  # noqa: ANN001 - a CampaignReport
    d = report.as_dict()
    out.print(
        f"campaign {d['campaign']} ({d['title'] or d['episode']}): {d['state']}; "
        f"{d['sent']} of {d['total']} sent, {d['queued']} queued, {d['retry']} to retry, "
        f"{d['failed']} failed, {d['uncertain']} uncertain",
        markup=False,
        highlight=False,
    )


@campaigns_app.command("list")
def campaigns_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False) -> None:
    """The newest 30 campaigns, newest first, with their state and counts."""
    from ..control import campaign_rows

    rows = campaign_rows(ready())
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, default=str))
        return
    if not rows:
        out.print("no campaigns yet")
    for r in rows:
        when = f" starts {r['scheduled']['local']} ({r['scheduled']['utc']})" if r["scheduled"] else ""
        out.print(
            f"{r['campaign']:>5}  {r['state']:<10} {r['sent']:>7}/{r['total']:<7} "
            f"failed {r['failed']:<5} uncertain {r['uncertain']:<4}{when}  {r['title'] or r['episode']}",
            markup=False,
            highlight=False,
        )


@campaigns_app.command("send")
def campaigns_send(campaign: CampaignArg) -> None:
    """Start a draft or scheduled campaign now."""
    from .. import control

    _show(control.send_now(ready(), campaign))


@campaigns_app.command("pause")
def campaigns_pause(campaign: CampaignArg) -> None:
    """Stop new messages of a sending campaign; batches under way finish their current message."""
    from .. import control

    _show(control.pause(ready(), campaign))


@campaigns_app.command("resume")
def campaigns_resume(campaign: CampaignArg) -> None:
    """Continue a paused campaign where it stopped (nobody gets it twice)."""
    from .. import control

    _show(control.resume(ready(), campaign))


@campaigns_app.command("cancel")
def campaigns_cancel(
    campaign: CampaignArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Kept with the campaign.")
    ] = "cancelled from the command line",
) -> None:
    """Cancel a campaign that is not done: no row stays queued; sent rows stay sent."""
    from .. import control

    _show(control.cancel(ready(), campaign, reason))


@campaigns_app.command("schedule")
def campaigns_schedule(
    campaign: CampaignArg,
    at: Annotated[str, typer.Argument(help="YYYY-MM-DDTHH:MM in NEWSLETTER_TIMEZONE, or with an offset.")],
) -> None:
    """Schedule a draft (or move a scheduled campaign); beat starts it at that time, once."""
    from .. import control

    settings = ready()
    _show(control.schedule(settings, campaign, control.parse_local_time(at, settings)))


@campaigns_app.command("unschedule")
def campaigns_unschedule(campaign: CampaignArg) -> None:
    """A scheduled campaign that has not started goes back to draft."""
    from .. import control

    _show(control.unschedule(ready(), campaign))


@campaigns_app.command("retry-failed")
def campaigns_retry_failed(campaign: CampaignArg) -> None:
    """Queue again the deliveries that failed on temporary errors (never suppressed addresses)."""
    from .. import control

    _show(control.retry_failed(ready(), campaign))
