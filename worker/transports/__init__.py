"""Pick the transport from `NEWSLETTER_MAIL_URL`."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from ..settings import Settings
from .base import Transport


def get_transport(settings: Settings) -> Transport:
    url = settings.mail_url
    scheme = url.split(":", 1)[0].lower()
    if scheme == "maildir":
        from .maildir import MaildirTransport

        path = url.split(":", 1)[1]
        path = urlsplit(url).path if path.startswith("//") else path
        if not path:
            raise ConfigError(f"NEWSLETTER_MAIL_URL {url!r} names no folder")
        return MaildirTransport(settings.path(path))
    if scheme in ("smtp", "smtps"):
        from .smtp import SMTPTransport

        return SMTPTransport(url, timeout=settings.smtp_timeout)
    raise ConfigError(f"NEWSLETTER_MAIL_URL {url!r}: use smtp://, smtps:// or maildir:")


__all__ = ["Transport", "get_transport"]
