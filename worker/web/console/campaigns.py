"""Console pages for campaigns: the list (live counts by polling `/console/campaigns.json`), one
campaign (recipients by status with search, failed and uncertain lists) and the buttons, each of
which calls the same `worker.control` function as the API and the CLI."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, or_, select

from ... import control
from ...bounces.stats import feedback_counts
from ...control import campaign_rows, when
from ...db import session_scope
from ...errors import InputError, NotFound
from ...ledger import status as campaign_status
from ...models import Campaign, Delivery, DeliveryEvent, DeliveryStatus, EpisodeRecord, EventKind
from ...settings import Settings
from ..auth import AppSettings
from ..lookup import RowId
from ..pages import render_page
from .session import Console, check_post

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
LIST_SIZE = 30
RECIPIENTS_PAGE = 50

#: What the page says after each button (the redirect carries the key, never free text).
DONE = {
    "send": "Sending started.",
    "pause": "Paused: no new message leaves; batches under way finish their current message.",
    "resume": "Resumed where it stopped.",
    "cancel": "Cancelled: nothing more will be sent.",
    "schedule": "Scheduled.",
    "unschedule": "Back to draft.",
    "retry-failed": "Failed deliveries are queued again.",
    "resend-uncertain": "Uncertain deliveries are queued again, with the same Message-ID.",
}


@router.get("", response_class=HTMLResponse)
def campaigns_page(
    request: Request, settings: AppSettings, staff: Console, did: Annotated[str, Query(max_length=40)] = ""
) -> HTMLResponse:
    """All recent campaigns, newest first, with their buttons."""
    return render_page(
        request, "console/campaigns.html", no_store=True, section="campaigns", csrf=staff.csrf,
        campaigns=campaign_rows(settings), flash=DONE.get(did, ""), zone=settings.timezone,
    )  # fmt: skip


@router.get("/campaigns.json")
def campaigns_json(settings: AppSettings, staff: Console) -> list[dict[str, Any]]:
    """What the list page polls: one report per campaign (as GET /campaigns/{id}) plus rate
    (msg/s over the last minute), scheduled time and reason."""
    return campaign_rows(settings)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(
    request: Request,
    settings: AppSettings,
    staff: Console,
    campaign_id: RowId,
    q: Annotated[str, Query(max_length=320)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    did: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """One campaign: counts, its email, recipients by status with search, failed and uncertain
    lists with their last error. 404 for an unknown campaign."""
    if status and status not in DeliveryStatus.ALL:
        raise HTTPException(422, f"status must be one of {', '.join(DeliveryStatus.ALL)}")
    with session_scope(settings) as session:
        c = session.get(Campaign, campaign_id)
        if c is None or campaign_id > 2**62:
            raise HTTPException(404, "no such campaign")
        slug = session.scalar(select(EpisodeRecord.slug).where(EpisodeRecord.id == c.episode_id))
        query = select(Delivery).where(Delivery.campaign_id == campaign_id)
        if status:
            query = query.where(Delivery.status == status)
        if q:
            like = f"%{q.strip().lower()}%"
            query = query.where(or_(func.lower(Delivery.email).like(like), func.lower(Delivery.name).like(like)))
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(Delivery.id).offset((page - 1) * RECIPIENTS_PAGE).limit(RECIPIENTS_PAGE))
        recipients = [_row(settings, d) for d in rows]
        problems = {
            s: [_row(settings, d) for d in session.scalars(
                select(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.status == s)
                .order_by(Delivery.updated_at.desc()).limit(100))]
            for s in (DeliveryStatus.FAILED, DeliveryStatus.UNCERTAIN)
        }  # fmt: skip
        report = campaign_status(session, campaign_id).as_dict()
        retryable = control.retryable_count(session, campaign_id)
        feedback = feedback_counts(session, campaign_id)
        events = [
            {"kind": e.kind.replace("_", " "), "email": e.email, "detail": e.detail, "source": e.source,
             "at": when(settings, e.occurred_at or e.created_at)}
            for e in session.scalars(
                select(DeliveryEvent)
                .where(DeliveryEvent.campaign_id == campaign_id, DeliveryEvent.kind != EventKind.DELIVERY)
                .order_by(DeliveryEvent.id.desc())
                .limit(100)
            )
        ]  # fmt: skip
        scheduled, reason = when(settings, c.scheduled_at), c.status_reason or ""
    return render_page(
        request, "console/campaign.html", no_store=True, section="campaigns", csrf=staff.csrf, report=report,
        slug=slug, recipients=recipients, total=total, q=q, filter_status=status, page=page,
        more=total > page * RECIPIENTS_PAGE, problems=problems, retryable=retryable, scheduled=scheduled,
        reason=reason, flash=DONE.get(did, ""), feedback=feedback, events=events,
        statuses=list(DeliveryStatus.ALL), zone=settings.timezone,
    )  # fmt: skip


def _row(settings: Settings, d: Delivery) -> dict[str, Any]:
    return {
        "email": d.email, "name": d.name, "status": d.status, "attempts": d.attempts,
        "error": d.last_error or "", "sent": when(settings, d.sent_at), "updated": when(settings, d.updated_at),
    }  # fmt: skip


ACTIONS = ("send", "pause", "resume", "cancel", "schedule", "unschedule", "retry-failed", "resend-uncertain")


@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(
    request: Request,
    settings: AppSettings,
    staff: Console,
    campaign_id: RowId,
    action: str,
    csrf: Annotated[str, Form(max_length=100)],
    at: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A button: send (a draft), pause, resume, cancel (with a reason), schedule (`at`, a local
    date-time in the list's zone), unschedule, retry-failed, resend-uncertain. 403 without a valid
    CSRF token or from another site; 404 for an unknown campaign or action; 409 when the campaign's
    state does not allow it (the page says why)."""
    check_post(request, staff, csrf)
    if action not in ACTIONS:
        raise HTTPException(404, "no such action")
    try:
        run_action(settings, campaign_id, action, at=at, reason=reason)
    except NotFound:
        raise HTTPException(404, "no such campaign") from None
    except InputError as exc:
        raise HTTPException(409, str(exc)) from None
    target = back if back.startswith("/console") and not back.startswith("//") else "/console"
    return RedirectResponse(f"{target.split('?')[0]}?did={action}", status_code=303)


def run_action(settings: Settings, campaign_id: int, action: str, *, at: str = "", reason: str = "") -> None:
    """Dispatch a console button to its `worker.control` function."""
    if action == "schedule":
        control.schedule(settings, campaign_id, control.parse_local_time(at, settings))
    elif action == "cancel":
        control.cancel(settings, campaign_id, reason or "cancelled from the console")
    else:
        {
            "send": control.send_now,
            "pause": control.pause,
            "resume": control.resume,
            "unschedule": control.unschedule,
            "retry-failed": control.retry_failed,
            "resend-uncertain": control.resend_uncertain,
        }[action](settings, campaign_id)
