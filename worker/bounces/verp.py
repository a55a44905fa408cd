"""VERP envelope senders: `bounces+d<ID>-<SIG>@domain`, one per delivery.

With NEWSLETTER_VERP_ADDR = `bounces@news.example.com`, the envelope sender (MAIL FROM, so the
Return-Path every bounce goes to) of delivery 1234 is `bounces+d1234-3f9a0c27b1@news.example.com`:
a returned message names its delivery whatever the remote server writes in its report. SIG is an
HMAC of the id with NEWSLETTER_SECRET_KEY (hex, lower case: some servers lower-case local parts),
so nobody can make a bounce that names someone else's delivery. The mailbox must accept
`bounces+anything@` (Postfix `recipient_delimiter = +`, most hosted mailboxes do it already).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ..errors import ConfigError
from ..settings import Settings

_TOKEN = re.compile(r"\+d(\d{1,18})-([0-9a-f]{10})@", re.I)


class VERP:
    """Makes and reads the per-delivery envelope senders of one configuration."""

    def __init__(self, settings: Settings):
        local, _, domain = settings.verp_addr.strip().rpartition("@")
        if not local or not domain or "+" in local or any(c in settings.verp_addr for c in " <>\r\n"):
            raise ConfigError(
                f"NEWSLETTER_VERP_ADDR must be a plain address like bounces@example.com, not {settings.verp_addr!r}"
            )
        self.local, self.domain = local, domain.lower()
        self._key = hmac.new(settings.signing_key.encode(), b"newsletter.verp", hashlib.sha256).digest()

    def _sig(self, delivery_id: int) -> str:
        return hmac.new(self._key, str(delivery_id).encode(), hashlib.sha256).hexdigest()[:10]

    def address(self, delivery_id: int) -> str:
        """The envelope sender for one delivery."""
        return f"{self.local}+d{delivery_id}-{self._sig(delivery_id)}@{self.domain}"

    def delivery_id(self, address: str) -> int | None:
        """The delivery a VERP address names, or None (not ours, or the signature is wrong)."""
        match = _TOKEN.search(address or "")
        if not match or not address.lower().endswith("@" + self.domain):
            return None
        delivery_id = int(match.group(1))
        return delivery_id if hmac.compare_digest(self._sig(delivery_id), match.group(2).lower()) else None


def verp_for(settings: Settings) -> VERP | None:
    """The VERP maker when NEWSLETTER_VERP_ADDR is set, else None."""
    return VERP(settings) if settings.verp_addr else None
