"""`mailgun://API_KEY@DOMAIN[?region=eu]`: Mailgun's raw-MIME sending API.

POST /v3/DOMAIN/messages.mime as multipart/form-data with `to` (the one recipient) and `message`
(our bytes, unchanged) — https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Messages/
— authenticated by HTTP basic auth as `api:KEY`. `region=eu` uses api.eu.mailgun.net. The key and
domain also come from MAILGUN_API_KEY and MAILGUN_DOMAIN; `?endpoint=` another API base (tests).
Mailgun's click and open tracking is turned off for these messages (`o:tracking=no`): the links
stay ours.

Answers: 200 {"id": "<…>", "message": "Queued. Thank you."} is accepted (the id kept); 429 is
throttling; 401 (bad key), 403 (domain not allowed to send, e.g. sandbox or disabled) and 404
(unknown domain) are configuration; 400 about the `to` address is permanent for the recipient,
other 400s and 413 (too large) for the message; 5xx and 402 ("request failed") are temporary.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx

from ..errors import ConfigError, MessageRejected, RecipientRejected, TemporaryFailure, TransportConfigError
from .provider import ProviderTransport

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


class MailgunTransport(ProviderTransport):
    """Sends through Mailgun's messages.mime API (see the module docstring for the URL and the
    answers). Raises ConfigError when the key or domain is missing or the region is not us/eu."""

    name = "mailgun"

    def __init__(self, url: str, *, timeout: float = 30.0):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        key = unquote(parts.username or "") or os.environ.get("MAILGUN_API_KEY", "")
        self.domain = (parts.hostname or "") or os.environ.get("MAILGUN_DOMAIN", "")
        region = query.get("region", ["us"])[0].lower()
        if not key or not self.domain:
            raise ConfigError(
                "NEWSLETTER_MAIL_URL mailgun://KEY@DOMAIN needs an API key and a sending domain "
                "(or MAILGUN_API_KEY and MAILGUN_DOMAIN)"
            )
        if region not in REGIONS:
            raise ConfigError(f"NEWSLETTER_MAIL_URL: mailgun region must be us or eu, not {region!r}")
        super().__init__(query.get("endpoint", [REGIONS[region]])[0], timeout=timeout, auth=("api", key))

    def build_request(self, envelope_from: str, recipient: str, message: bytes) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": f"/v3/{quote(self.domain)}/messages.mime",
            "data": {"to": recipient, "o:tracking": "no"},
            "files": {"message": ("message.mime", message, "message/rfc822")},
        }

    def parse_accepted(self, response: httpx.Response) -> str | None:
        try:
            mid = response.json().get("id")
        except (ValueError, AttributeError):
            return None
        return str(mid).strip("<>") if mid else None

    def classify(self, response: httpx.Response, recipient: str) -> Exception:
        status = response.status_code
        try:
            text = str(response.json().get("message", ""))
        except (ValueError, AttributeError):
            text = self.text(response)
        what = f"{status} {text}".strip()
        if status == 429:
            return self.throttled(response, text)
        if status in (401, 403, 404):
            return TransportConfigError(f"mailgun refused our key or domain {self.domain} ({what})", code=status)
        if status == 400 and re.search(r"\bto\b|recipient", text, re.I):
            return RecipientRejected(f"mailgun: {recipient}: {what}", code=status)
        if status in (400, 413):
            return MessageRejected(f"mailgun: {what}", code=status)
        return TemporaryFailure(f"mailgun: {what}", code=status)
