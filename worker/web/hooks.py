"""Provider webhooks: POST /hooks/ses, /hooks/postmark, /hooks/mailgun.

Only bytes and headers pass through here; verification and parsing are in
`worker.bounces.webhooks`, effects in `worker.bounces.events`. A post that is forged, stale or
malformed changes nothing and gets the 4xx its check names; one whose every report was already
recorded (a replay) gets the provider's "do not retry" answer (SNS: 409, Postmark: 403,
Mailgun: 406). The app's `state.sns` (a `SNSEndpoint`) may replace the certificate fetch and the
subscription confirmation (tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..bounces.events import Report
from ..bounces.webhooks import SNSEndpoint, intake, parse_mailgun, parse_postmark, parse_ses
from ..errors import WebhookRejected
from ..throttle import Throttle
from .auth import AppSettings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/hooks", tags=["webhooks"])
_default_sns = SNSEndpoint()


def _too_many() -> JSONResponse:
    return JSONResponse({"detail": "too many webhook posts from this address"}, 429, headers={"Retry-After": "60"})


def _within_rate(request: Request, settings) -> bool:  # noqa: ANN001
    """NEWSLETTER_WEBHOOK_POSTS_PER_MINUTE per client address, over all web processes."""
    throttle = getattr(request.app.state, "hooks_throttle", None)
    if throttle is None:
        throttle = request.app.state.hooks_throttle = Throttle(settings.limiter_redis_url, prefix="newsletter:hooks:")
    client = request.client.host if request.client else "unknown"
    return throttle.hit(f"hooks:{client}", settings.webhook_posts_per_minute, 60)


def _answer(settings, parse: Callable[[], list[Report]], replay_status: int, who: str) -> JSONResponse:  # noqa: ANN001
    """Parse (verifying), record, answer; runs in the thread pool (signature checks, database)."""
    try:
        reports = parse()
    except WebhookRejected as exc:
        log.warning("%s webhook refused (%d): %s", who, exc.status, exc)
        return JSONResponse({"detail": str(exc)}, exc.status)
    recorded, duplicates = intake(settings, reports)
    if reports and not recorded:
        return JSONResponse({"detail": "already recorded", "duplicates": duplicates}, replay_status)
    return JSONResponse({"recorded": recorded, "duplicates": duplicates})


@router.post("/ses", summary="Amazon SES bounce, complaint and delivery notifications (SNS)")
async def ses(request: Request, settings: AppSettings) -> JSONResponse:
    """Amazon SES events delivered by SNS; the SNS signature is verified. A replay gets 409,
    too many posts 429."""
    if not _within_rate(request, settings):
        return _too_many()
    body = await request.body()
    sns = getattr(request.app.state, "sns", None) or _default_sns
    return await run_in_threadpool(
        _answer, settings, lambda: parse_ses(body, request.headers, settings, sns), 409, "SES"
    )


@router.post("/postmark", summary="Postmark bounce, spam complaint and delivery webhooks")
async def postmark(request: Request, settings: AppSettings) -> JSONResponse:
    """Postmark webhooks, authenticated by HTTP basic auth. A replay gets 403, too many posts 429."""
    if not _within_rate(request, settings):
        return _too_many()
    body = await request.body()
    auth = request.headers.get("authorization", "")
    return await run_in_threadpool(_answer, settings, lambda: parse_postmark(body, auth, settings), 403, "Postmark")


@router.post("/mailgun", summary="Mailgun failed, complained and delivered webhooks")
async def mailgun(request: Request, settings: AppSettings) -> JSONResponse:
    """Mailgun webhooks, authenticated by their HMAC signature. A replay gets 406, too many posts
    429."""
    if not _within_rate(request, settings):
        return _too_many()
    body = await request.body()
    return await run_in_threadpool(_answer, settings, lambda: parse_mailgun(body, settings), 406, "Mailgun")
