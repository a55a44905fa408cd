"""Pick the transport from `NEWSLETTER_MAIL_URL`.

| URL | module |
|---|---|
| `smtp://[user:pass@]host[:port]`, `smtps://…` | smtp |
| `maildir:PATH` | maildir |
| `ses://REGION[?configuration_set=NAME]` | ses (Amazon SES v2, raw MIME) |
| `postmark://TOKEN@[?stream=broadcast]` | postmark (Postmark Email API) |
| `mailgun://KEY@DOMAIN[?region=eu]` | mailgun (Mailgun messages.mime) |

A daily cap (`NEWSLETTER_<SCHEME>_DAILY_CAP`) wraps any of them; DKIM signing
(`NEWSLETTER_DKIM_*`) wraps SMTP and Maildir (the providers sign with their own DKIM set-up).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from ..settings import Settings
from .base import Transport

PROVIDERS = ("ses", "postmark", "mailgun")


def transport_name(settings: Settings) -> str:
    """`smtp` (for smtp and smtps), `maildir`, `ses`, `postmark` or `mailgun`."""
    scheme = settings.mail_url.split(":", 1)[0].lower()
    return "smtp" if scheme == "smtps" else scheme


def transport_rate(settings: Settings) -> float:
    """Messages per second over all workers: the lower of NEWSLETTER_SEND_RATE and the
    transport's own rate, where set (0 = unlimited)."""
    rates = [r for r in (settings.send_rate, getattr(settings, f"{transport_name(settings)}_send_rate", 0)) if r > 0]
    return min(rates) if rates else 0.0


def get_transport(settings: Settings) -> Transport:
    """The configured transport, wrapped with the daily cap and DKIM signing where set.
    Raises ConfigError for a URL or setting that cannot work."""
    transport = _base_transport(settings)
    name = transport_name(settings)
    if name in ("smtp", "maildir") and (settings.dkim_selector or settings.dkim_domain or settings.dkim_key_file):
        from ..dkim import DKIMSigning

        transport = DKIMSigning(transport, settings)
    cap = getattr(settings, f"{name}_daily_cap", 0)
    if cap > 0:
        from .wrappers import DailyCap

        transport = DailyCap(transport, cap, name, settings.limiter_redis_url)
    return transport


def _base_transport(settings: Settings) -> Transport:
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
    if scheme == "ses":
        from .ses import SESTransport

        return SESTransport(url, timeout=settings.smtp_timeout)
    if scheme == "postmark":
        from .postmark import PostmarkTransport

        return PostmarkTransport(url, timeout=settings.smtp_timeout)
    if scheme == "mailgun":
        from .mailgun import MailgunTransport

        return MailgunTransport(url, timeout=settings.smtp_timeout)
    raise ConfigError(
        f"NEWSLETTER_MAIL_URL {url.split(':', 1)[0]!r}: use smtp://, smtps://, maildir:, "
        "ses://, postmark:// or mailgun://"
    )


__all__ = ["Transport", "get_transport", "transport_name", "transport_rate"]
