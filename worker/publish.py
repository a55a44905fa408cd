"""Publishing an episode: record it, create its one campaign, hand the work to Celery."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from .db import session_scope
from .episodes import Episode, load_episode
from .ledger import PublishResult, create_campaign
from .settings import Settings

log = logging.getLogger(__name__)


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


def publish_file(path: Path, settings: Settings, **kwargs) -> PublishResult:  # noqa: ANN003
    return publish_episode(load_episode(path, settings.tz), settings, **kwargs)


def start(campaign_id: int) -> None:
    from .tasks import enqueue

    try:
        enqueue(campaign_id)
    except Exception as exc:  # noqa: BLE001 - the sweeper re-enqueues; publishing must not fail here
        log.error("could not queue campaign %d (%s); the sweeper will retry", campaign_id, exc)
