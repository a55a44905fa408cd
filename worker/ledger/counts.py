"""Deliveries per (campaign, status), as the database keeps them (migration 0005).

Triggers on `deliveries` add every row's moves to `campaign_counts`, so reading a campaign's
counts is a handful of rows whatever its size (a million deliveries: ~0.3 s to count, every
time; a few hundred microseconds to read). PostgreSQL keeps one row per backend `slot` to spare
concurrent workers from waiting on one another: a reader sums them.
"""

from __future__ import annotations

from sqlalchemy import Subquery, case, column, func, select, table
from sqlalchemy.orm import Session

from ..models import DeliveryStatus

campaign_counts = table("campaign_counts", column("campaign_id"), column("status"), column("slot"), column("n"))


def status_counts(session: Session, campaign_id: int) -> dict[DeliveryStatus, int]:
    """{status: rows} of one campaign; statuses with no row are left out."""
    c = campaign_counts.c
    rows = session.execute(select(c.status, func.sum(c.n)).where(c.campaign_id == campaign_id).group_by(c.status)).all()
    return {DeliveryStatus(status): int(n) for status, n in rows if n}


def per_status(campaign_id: int) -> Subquery:
    """One row whatever the campaign: a column per `DeliveryStatus` (rows of that status, 0 when
    none), for a caller to join into a statement of its own (`worker.ledger.status`)."""
    c = campaign_counts.c
    return (
        select(*(func.coalesce(func.sum(case((c.status == s, c.n), else_=0)), 0).label(s) for s in DeliveryStatus))
        .where(c.campaign_id == campaign_id)
        .subquery("counts")
    )


def open_rows(session: Session, campaign_id: int) -> int:
    """Rows not settled yet (queued, claimed, sending, awaiting retry)."""
    c = campaign_counts.c
    is_open = c.status.in_(list(DeliveryStatus.OPEN))
    n = session.scalar(select(func.coalesce(func.sum(c.n), 0)).where(c.campaign_id == campaign_id, is_open))
    return int(n or 0)
