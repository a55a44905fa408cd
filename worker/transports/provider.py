"""The base of the HTTP mail-provider transports (Postmark, Mailgun), after django-anymail's
`backends/base_requests.py`: one pooled `httpx.Client` per transport, and three hooks a provider
module fills in:

- `build_request(envelope_from, recipient, message)` -> keyword arguments for `httpx.Client.request`;
- `parse_accepted(response)` -> the provider's message id from a 2xx answer;
- `classify(response)` -> the exception from worker/errors.py for any other answer.

The caller's `confirm` runs before the request (an HTTP API has no envelope stage), so the ledger
row is durably 'sending' before anything leaves. A connection that cannot be made is temporary;
an answer that never comes after the request went out is temporary too (the provider may or may
not have accepted it: as with SMTP, the retry carries the same Message-ID).
"""

from __future__ import annotations

import email.utils
import functools
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import certifi
import httpx

from ..errors import DeliveryUncertain, TemporaryFailure, Throttled
from .base import Transport

USER_AGENT = "newsletter-worker/0.1"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One certificate-verifying TLS context per process, shared by every session's client: each
    context loads the CA bundle again (~0.8 MB a client measured here). SSLContext is
    thread-safe once configured."""
    return ssl.create_default_context(cafile=certifi.where())


class ProviderTransport(Transport):
    """One provider API endpoint. `name` is the NEWSLETTER_MAIL_URL scheme (for messages)."""

    name = "provider"

    def __init__(
        self, base_url: str, *, timeout: float = 30.0, auth: Any = None, headers: dict[str, str] | None = None
    ):
        self.base_url = base_url.rstrip("/")
        # Keep-alive connections for this sending session (each session has its own transport).
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            auth=auth,
            verify=_tls_context(),
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            # Idle connections are dropped before a provider would close them under us.
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=4.0),
        )

    # -- hooks --------------------------------------------------------------------------------

    def build_request(self, envelope_from: str, recipient: str, message: bytes) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client.request` (method, url relative to the base, body)."""
        raise NotImplementedError

    def parse_accepted(self, response: httpx.Response) -> str | None:
        """The provider's message id from a 2xx answer (None if it gives none)."""
        raise NotImplementedError

    def classify(self, response: httpx.Response, recipient: str) -> Exception:
        """The worker/errors.py exception for a non-2xx answer: Throttled, TemporaryFailure,
        RecipientRejected, MessageRejected or TransportConfigError."""
        raise NotImplementedError

    # -- the send -----------------------------------------------------------------------------

    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool:
        request = self.build_request(envelope_from, recipient, message)
        self._accepted(None)
        if confirm is not None and not confirm():
            return False
        try:
            response = self.client.request(**request)
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # The request was written; the provider may have accepted it.
            raise DeliveryUncertain(f"{self.name}: no answer for {recipient} after sending: {exc!r}") from exc
        except httpx.HTTPError as exc:  # could not connect or write: nothing was accepted
            raise TemporaryFailure(f"{self.name}: cannot reach {self.base_url}: {exc!r}") from exc
        if 200 <= response.status_code < 300:
            self._accepted(self.parse_accepted(response))
            return True
        raise self.classify(response, recipient)

    def close(self) -> None:
        self.client.close()

    # -- helpers for the hooks ----------------------------------------------------------------

    def throttled(self, response: httpx.Response, what: str) -> Throttled:
        return Throttled(
            f"{self.name}: {response.status_code} {what}",
            code=response.status_code,
            retry_after=retry_after(response.headers.get("retry-after")),
        )

    @staticmethod
    def text(response: httpx.Response, limit: int = 300) -> str:
        return " ".join(response.text.split())[:limit]


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """RFC 9110 10.2.3 Retry-After: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - now_dt).total_seconds())
