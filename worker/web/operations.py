"""Campaign operations for programs (`/campaigns/...`, staff bearer or basic auth): the API twins
of the console's buttons and of `newsletter campaigns ...`, each calling the same
`worker.control` function. Every answer is the campaign's report (as `GET /campaigns/{id}`);
404 for an unknown campaign, 409 when its state does not allow the operation (`detail` says
why), 422 for a bad body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, Field

from .. import control
from ..errors import InputError, NotFound
from .auth import AppSettings, require_staff
from .lookup import RowId

router = APIRouter(tags=["staff"], dependencies=[Depends(require_staff)])
CampaignId = RowId


class CancelBody(BaseModel):
    """Why the campaign is cancelled (kept with it)."""

    reason: str = Field(default="cancelled through the API", max_length=500)


class ScheduleBody(BaseModel):
    """When to start: ISO 8601 date-time; without an offset it is in NEWSLETTER_TIMEZONE."""

    at: str = Field(max_length=40, examples=["2030-01-20T18:00"])


def _run(fn, *args: Any) -> dict[str, Any]:  # noqa: ANN001
    try:
        return fn(*args).as_dict()
    except NotFound:
        raise HTTPException(404, "no such campaign") from None
    except InputError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/campaigns")
def list_campaigns(settings: AppSettings) -> list[dict[str, Any]]:
    """The newest campaigns (up to 30), newest first, each as `GET /campaigns/{id}` plus `rate`
    (msg/s), `scheduled` and `reason`."""
    return control.campaign_rows(settings)


@router.post("/campaigns/{campaign_id}/cancel")
def cancel(campaign_id: CampaignId, settings: AppSettings, body: Annotated[CancelBody | None, Body()] = None) -> dict:
    """Cancel: no row stays queued; sent rows stay sent; the reason is recorded."""
    return _run(control.cancel, settings, campaign_id, (body or CancelBody()).reason)


@router.post("/campaigns/{campaign_id}/schedule")
def schedule(campaign_id: CampaignId, settings: AppSettings, body: ScheduleBody) -> dict:
    """Schedule a draft, or move a scheduled campaign that has not started; beat starts it."""
    try:
        at = control.parse_local_time(body.at, settings)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    return _run(control.schedule, settings, campaign_id, at)


# after the specific routes: a path matching this one never falls through to them
@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(
    campaign_id: CampaignId,
    action: Literal["send", "pause", "resume", "unschedule", "retry-failed", "resend-uncertain"],
    settings: AppSettings,
) -> dict[str, Any]:
    """send (a draft or scheduled campaign, now), pause, resume, unschedule, retry-failed
    (temporary failures only), resend-uncertain (same Message-IDs)."""
    fn = {
        "send": control.send_now,
        "pause": control.pause,
        "resume": control.resume,
        "unschedule": control.unschedule,
        "retry-failed": control.retry_failed,
        "resend-uncertain": control.resend_uncertain,
    }[action]
    return _run(fn, settings, campaign_id)
