"""Reading published episodes for the web side (404 when a slug is unknown), and the type of a
row id in a URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException
from fastapi import Path as FastPath
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import session_scope
from ..episodes import Episode
from ..models import MAX_ID, EpisodeRecord
from ..settings import Settings

# A campaign's or subscriber's id in a path: 1 to the column's largest (422 outside it).
RowId = Annotated[int, FastPath(ge=1, le=MAX_ID)]


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
