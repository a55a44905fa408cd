"""Publishing an episode: record it, render its email once, create its one campaign, queue it.

This is where rendering meets the ledger: `create_campaign` composes the email and hands the
rendered result to `worker.ledger`, which only records it.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from . import ledger, queue
from .db import session_scope
from .episodes import Episode, load_episode
from .ledger import PublishResult
from .message import compose
from .models import utcnow
from .settings import Settings

log = logging.getLogger(__name__)

__all__ = ["PublishResult", "create_campaign", "publish_episode", "publish_file", "start"]


def create_campaign(
    session: Session, episode: Episode, settings: Settings, *, as_of: datetime | None = None, draft: bool = False
) -> PublishResult:
    """One campaign per episode, rendered once (as of `as_of`, default now), its audience frozen
    into delivery rows unless `draft`. An episode that already has a campaign gets that campaign
    back (`created` False). Does not commit; raises what rendering raises (ConfigError for a
    missing template) before anything is written."""
    record, _ = ledger.record_episode(session, episode)
    existing = ledger.campaign_for_episode(session, record.id)
    if existing:
        return PublishResult(existing, False, record)
    if record.slug != episode.slug:
        episode = dataclasses.replace(episode, slug=record.slug)  # the web link must match the record
    as_of = as_of or utcnow()
    template = compose(episode, settings, as_of)
    return ledger.add_campaign(session, record, template.rendered, template.ics, as_of=as_of, draft=draft)


def publish_episode(
    episode: Episode, settings: Settings, *, as_of: datetime | None = None, draft: bool = False, enqueue: bool = True
) -> PublishResult:
    """Idempotent: the second call for the same episode creates nothing and returns the first
    campaign. The ledger is committed before anything is queued, so a broker that is down loses
    nothing: the sweeper queues the work when it can."""
    with session_scope(settings) as session:
        result = create_campaign(session, episode, settings, as_of=as_of, draft=draft)
        campaign_id = result.campaign.id
    if result.created:
        log.info("campaign %d created for %s with %d recipients", campaign_id, episode.slug, result.campaign.total)
    if result.created and not draft and enqueue:
        start(campaign_id)
    return result


def publish_file(
    path: Path, settings: Settings, *, as_of: datetime | None = None, draft: bool = False, enqueue: bool = True
) -> PublishResult:
    """`publish_episode` for an episode file; raises EpisodeError (an InputError) for a bad file."""
    return publish_episode(load_episode(path, settings.tz), settings, as_of=as_of, draft=draft, enqueue=enqueue)


def start(campaign_id: int) -> None:
    """Queue the campaign's work. Never raises: when the broker is down, the sweeper queues it later."""
    try:
        queue.enqueue(campaign_id)
    except Exception as exc:  # noqa: BLE001 - the sweeper re-enqueues; publishing must not fail here
        log.error("could not queue campaign %d (%s); the sweeper will retry", campaign_id, exc)
