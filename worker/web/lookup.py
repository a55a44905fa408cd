"""Reading published episodes for the web side (404 when a slug is unknown)."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import session_scope
from ..episodes import Episode
from ..models import EpisodeRecord
from ..settings import Settings


def record_for(session: Session, slug: str) -> EpisodeRecord:
    """The stored episode with this slug; HTTPException(404) when there is none."""
    record = session.scalar(select(EpisodeRecord).where(EpisodeRecord.slug == slug))
    if record is None:
        raise HTTPException(404, "no such episode")
    return record


def load_episode(settings: Settings, slug: str) -> Episode:
    """The Episode stored under `slug`; HTTPException(404) when there is none."""
    with session_scope(settings) as session:
        return Episode.from_json(record_for(session, slug).data)
