"""What staff can do to a campaign, one function per button: the console, the API
(`POST /campaigns/{id}/ACTION`) and `newsletter campaigns ACTION` all call these.

Each opens its own transaction, calls the ledger's state change (`worker.ledger.control`, one
conditional UPDATE) and, when there is now work to do, queues it by task name
(`worker.queue.enqueue`; a broker that cannot be reached is logged, and the sweeper picks the
campaign up within one sweep interval). Errors: NotFound for an unknown campaign,
CampaignStateError (an InputError) when its state does not allow the change.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import session_scope
from .errors import CampaignStateError, NotFound
from .ledger import control as ledger_control
from .ledger import get_campaign, send_draft, store_email
from .ledger import resend_uncertain as ledger_resend_uncertain
from .ledger import status as ledger_status
from .ledger.status import CampaignReport
from .models import Campaign, CampaignStatus, utcnow
from .settings import Settings

log = logging.getLogger(__name__)


def _enqueue(campaign_id: int) -> None:
    from .queue import enqueue

    try:
        enqueue(campaign_id)
    except Exception as exc:  # noqa: BLE001 - the sweeper re-enqueues campaigns with due work
        log.warning("campaign %d: could not queue its work now (%s); the sweeper will", campaign_id, exc)


def _report(settings: Settings, campaign_id: int) -> CampaignReport:
    with session_scope(settings) as session:
        return ledger_status(session, campaign_id)


def _render_as_of(session: Session, settings: Settings, campaign_id: int, as_of: datetime) -> None:
    """Render the campaign's email again as of its send time (one rule for every send: an event
    over by then is left out) and store it, in the caller's transaction."""
    from .episodes import Episode
    from .message import compose
    from .models import EpisodeRecord

    campaign = get_campaign(session, campaign_id)
    record = session.get(EpisodeRecord, campaign.episode_id)
    if record is None:
        raise NotFound(f"campaign {campaign_id} has no episode")
    template = compose(Episode.from_json(record.data), settings, as_of)
    store_email(campaign, template.rendered, template.ics)
    campaign.as_of = as_of


def send_now(settings: Settings, campaign_id: int) -> CampaignReport:
    """Start a draft or scheduled campaign now: rendered as of now, its audience frozen and its
    work queued."""
    with session_scope(settings) as session:
        if get_campaign(session, campaign_id).status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise CampaignStateError(f"campaign {campaign_id} is {get_campaign(session, campaign_id).status}: "
                                     "only a draft or scheduled campaign can be sent")  # fmt: skip
        ledger_control.unschedule_if_scheduled(session, campaign_id)
        _render_as_of(session, settings, campaign_id, utcnow())
        send_draft(session, campaign_id)
    _enqueue(campaign_id)
    return _report(settings, campaign_id)


def pause(settings: Settings, campaign_id: int) -> CampaignReport:
    """Pause a sending campaign (see `worker.ledger.control.pause`)."""
    with session_scope(settings) as session:
        ledger_control.pause(session, campaign_id)
    return _report(settings, campaign_id)


def resume(settings: Settings, campaign_id: int) -> CampaignReport:
    """Resume a paused campaign and queue its work."""
    with session_scope(settings) as session:
        ledger_control.resume(session, campaign_id)
    _enqueue(campaign_id)
    return _report(settings, campaign_id)


def cancel(settings: Settings, campaign_id: int, reason: str) -> CampaignReport:
    """Cancel a campaign that is not done, recording `reason`; sent rows stay sent."""
    with session_scope(settings) as session:
        ledger_control.cancel(session, campaign_id, reason)
    return _report(settings, campaign_id)


def schedule(settings: Settings, campaign_id: int, at: datetime) -> CampaignReport:
    """Schedule a draft (or move a scheduled campaign) to start at `at` (aware), rendered as of
    then; beat starts it."""
    with session_scope(settings) as session:
        ledger_control.schedule(session, campaign_id, at)
        _render_as_of(session, settings, campaign_id, at)
    return _report(settings, campaign_id)


def unschedule(settings: Settings, campaign_id: int) -> CampaignReport:
    """A scheduled campaign that has not started goes back to draft."""
    with session_scope(settings) as session:
        ledger_control.unschedule(session, campaign_id)
    return _report(settings, campaign_id)


def retry_failed(settings: Settings, campaign_id: int) -> CampaignReport:
    """Queue again the rows that failed on temporary errors (never suppressed addresses)."""
    with session_scope(settings) as session:
        n = ledger_control.retry_failed(session, campaign_id)
    if n:
        _enqueue(campaign_id)
    return _report(settings, campaign_id)


def resend_uncertain(settings: Settings, campaign_id: int) -> CampaignReport:
    """Queue again the uncertain rows, with the same Message-ID (as `newsletter resend --uncertain`)."""
    with session_scope(settings) as session:
        n = ledger_resend_uncertain(session, campaign_id)
    if n:
        _enqueue(campaign_id)
    return _report(settings, campaign_id)


def retryable_count(session: Session, campaign_id: int) -> int:
    """How many rows `retry_failed` would queue again now."""
    return ledger_control.retryable_count(session, campaign_id)


def parse_local_time(text: str, settings: Settings) -> datetime:
    """A date-time as staff type it ('2024-01-20T18:00', '2024-01-20 18:00', ISO with an offset):
    in the list's zone (NEWSLETTER_TIMEZONE) unless it has an offset. Raises CampaignStateError
    (an InputError) naming the value when it is not one."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CampaignStateError(f"not a date and time: {text!r} (use YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz)


def when(settings: Settings, moment: datetime | None) -> dict[str, str] | None:
    """A moment as staff see it: `local` (the list's zone), `utc`, `iso`, `input` (for a
    datetime-local field) and `short`; None for None."""
    if moment is None:
        return None
    from datetime import UTC

    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    local, utc = aware.astimezone(settings.tz), aware.astimezone(UTC)
    return {
        "local": f"{local:%a} {local.day} {local:%b %Y, %H:%M %Z}",
        "utc": f"{utc:%H:%M} UTC" if utc.date() == local.date() else f"{utc.day} {utc:%b, %H:%M} UTC",
        "iso": aware.isoformat(timespec="seconds"),
        "input": f"{local:%Y-%m-%dT%H:%M:%S}",
        "short": f"{local.day} {local:%b %H:%M}",
    }


def campaign_rows(settings: Settings, limit: int = 30) -> list[dict[str, Any]]:
    """The newest `limit` campaigns, newest first: each report's `as_dict()` plus `rate` (msg/s
    over the last minute, None when idle), `scheduled` (`when`), `reason` and `retryable` (rows
    `retry_failed` would queue). What `newsletter campaigns list`, GET /campaigns and the console show."""
    out = []
    with session_scope(settings) as session:
        campaigns = session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)).all()
        for c in campaigns:
            report = ledger_status(session, c.id).as_dict()
            eta = report.get("eta_seconds")
            open_rows = sum(report.get(s, 0) for s in ("queued", "claimed", "sending", "retry"))
            report.update(
                rate=round(open_rows / eta, 1) if eta else None,
                scheduled=when(settings, c.scheduled_at),
                reason=c.status_reason or "",
                retryable=retryable_count(session, c.id),
            )
            out.append(report)
    return out
