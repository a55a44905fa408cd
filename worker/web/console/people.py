"""Console pages for subscribers (search, filter, one subscriber's deliveries, status changes
within `worker.subscriptions`' rules, CSV import and export) and feeds (last poll, last new
item, failures, Poll now)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, or_, select

from ...control import when
from ...db import session_scope
from ...errors import InputError, NotFound, TransitionRefused
from ...models import Campaign, Delivery, EpisodeRecord, Feed, SeenItem, Subscriber, SubscriberStatus
from ...subscribers import MAX_CSV_BYTES, count_by_status, export_cell, import_rows, read_csv
from ...subscriptions import TRANSITIONS, Actor, transition
from ..auth import AppSettings
from ..lookup import RowId
from ..pages import render_page
from .session import Console, check_post

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
PAGE = 50


@router.get("/subscribers", response_class=HTMLResponse)
def subscribers_page(
    request: Request,
    settings: AppSettings,
    staff: Console,
    q: Annotated[str, Query(max_length=320)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    did: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """Subscribers matching `q` (address or name, case-insensitive) and `status`, 50 a page."""
    if status and status not in SubscriberStatus.ALL:
        raise HTTPException(422, f"status must be one of {', '.join(SubscriberStatus.ALL)}")
    with session_scope(settings) as session:
        query = _filtered(q, status)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(Subscriber.id.desc()).offset((page - 1) * PAGE).limit(PAGE)).all()
        people = [{"id": s.id, "email": s.email, "name": s.name, "status": s.status,
                   "since": when(settings, s.updated_at)} for s in rows]  # fmt: skip
        counts = count_by_status(session)
    return render_page(
        request, "console/subscribers.html", no_store=True, section="subscribers", csrf=staff.csrf, people=people,
        total=total, q=q, filter_status=status, page=page, more=total > page * PAGE, counts=counts,
        statuses=list(SubscriberStatus.ALL), flash=did,
    )  # fmt: skip


def _filtered(q: str, status: str):  # noqa: ANN202
    query = select(Subscriber)
    if status:
        query = query.where(Subscriber.status == status)
    if q.strip():
        like = f"%{q.strip().lower()}%"
        query = query.where(or_(Subscriber.email_key.like(like), func.lower(Subscriber.name).like(like)))
    return query


@router.get("/subscribers.csv")
def subscribers_export(
    settings: AppSettings,
    staff: Console,
    q: Annotated[str, Query(max_length=320)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The matching subscribers as CSV (email, name, status), formulas neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "status"])
    with session_scope(settings) as session:
        for s in session.scalars(_filtered(q, status).order_by(Subscriber.id)):
            writer.writerow([export_cell(s.email), export_cell(s.name), s.status])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'})  # fmt: skip


@router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(
    request: Request, settings: AppSettings, staff: Console, subscriber_id: RowId,
    did: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:  # fmt: skip
    """One subscriber: status, the changes staff may make from it, their deliveries."""
    with session_scope(settings) as session:
        s = session.get(Subscriber, subscriber_id) if 0 < subscriber_id < 2**62 else None
        if s is None:
            raise HTTPException(404, "no such subscriber")
        deliveries = session.execute(
            select(Delivery, EpisodeRecord.title)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .join(EpisodeRecord, EpisodeRecord.id == Campaign.episode_id)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.campaign_id.desc())
            .limit(100)
        ).all()
        person = {"id": s.id, "email": s.email, "name": s.name, "status": s.status, "reason": s.status_reason,
                  "since": when(settings, s.updated_at), "created": when(settings, s.created_at)}  # fmt: skip
        rows = [{"campaign": d.campaign_id, "title": title, "status": d.status, "error": d.last_error or "",
                 "sent": when(settings, d.sent_at)} for d, title in deliveries]  # fmt: skip
    targets = sorted(
        to for (before, to), who in TRANSITIONS.items() if before == person["status"] and Actor.STAFF in who
    )
    return render_page(
        request, "console/subscriber.html", no_store=True, section="subscribers", csrf=staff.csrf, person=person,
        deliveries=rows, targets=targets, flash=did,
    )  # fmt: skip


@router.post("/subscribers/{subscriber_id}/status")
def subscriber_status(
    request: Request, settings: AppSettings, staff: Console, subscriber_id: RowId,
    csrf: Annotated[str, Form(max_length=100)], to: Annotated[str, Form(max_length=20)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:  # fmt: skip
    """Change a subscriber's status as staff (`worker.subscriptions.transition`, Actor.STAFF).
    409 when the rules do not allow it, 404 for an unknown subscriber."""
    check_post(request, staff, csrf)
    try:
        with session_scope(settings) as session:
            change = transition(session, to, Actor.STAFF, subscriber_id=subscriber_id,
                                reason=reason.strip() or "changed in the console")  # fmt: skip
    except NotFound:
        raise HTTPException(404, "no such subscriber") from None
    except TransitionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    note = f"Now {change.after}." if change.changed else f"Already {change.after}."
    return RedirectResponse(f"/console/subscribers/{subscriber_id}?did={note}", status_code=303)


@router.post("/subscribers/import", response_class=HTMLResponse)
async def subscribers_import(
    request: Request, settings: AppSettings, staff: Console,
    csrf: Annotated[str, Form(max_length=100)], file: Annotated[UploadFile, File()],
) -> HTMLResponse:  # fmt: skip
    """Import an uploaded CSV with the CLI's validation: bad rows are reported by line, good rows
    go in, all in one transaction; a file that is unusable as a whole changes nothing (422)."""
    check_post(request, staff, csrf)
    data = await file.read(MAX_CSV_BYTES + 1)
    name = Path(file.filename or "upload.csv").name
    try:
        if len(data) > MAX_CSV_BYTES:
            raise InputError(f"the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB", source=name)
        rows, report = read_csv(Path(name), data)
        with session_scope(settings) as session:
            import_rows(session, rows, report)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    return render_page(
        request, "console/imported.html", no_store=True, section="subscribers", csrf=staff.csrf, report=report,
        file_name=name,
    )  # fmt: skip


@router.get("/feeds", response_class=HTMLResponse)
def feeds_page(
    request: Request, settings: AppSettings, staff: Console, did: Annotated[str, Query(max_length=40)] = ""
) -> HTMLResponse:
    """Each feed (and the drop folder) with its last poll, last success, last new item and failure."""
    with session_scope(settings) as session:
        feeds: list[dict[str, Any]] = []
        for f in session.scalars(select(Feed).order_by(Feed.id)):
            newest = session.execute(
                select(SeenItem.seen_at, EpisodeRecord.title, EpisodeRecord.slug)
                .join(EpisodeRecord, EpisodeRecord.id == SeenItem.episode_id)
                .where(SeenItem.source == f.url)
                .order_by(SeenItem.seen_at.desc())
                .limit(1)
            ).first()
            feeds.append({
                "url": f.url, "title": f.title, "polled": when(settings, f.last_polled_at),
                "ok": when(settings, f.last_ok_at), "error": f.last_error or "", "failures": f.failures,
                "newest": {"at": when(settings, newest[0]), "title": newest[1], "slug": newest[2]} if newest else None,
            })  # fmt: skip
    return render_page(
        request, "console/feeds.html", no_store=True, section="feeds", csrf=staff.csrf, feeds=feeds,
        configured=settings.feed_list, folder=str(settings.episodes_dir or ""), interval=settings.poll_interval,
        flash="A poll has been queued: reload in a few seconds." if did == "poll" else "",
    )  # fmt: skip


@router.post("/feeds/poll")
def poll_now(
    request: Request, settings: AppSettings, staff: Console, csrf: Annotated[str, Form(max_length=100)]
) -> Response:
    """Queue one pass over every feed and the drop folder (the beat task, now). 503 when the
    broker cannot be reached."""
    check_post(request, staff, csrf)
    try:
        from ...queue import poll_now as queue_poll

        queue_poll()
    except Exception as exc:  # noqa: BLE001 - the broker's own error, shown to staff
        raise HTTPException(503, f"could not queue the poll: {exc}") from None
    return RedirectResponse("/console/feeds?did=poll", status_code=303)
