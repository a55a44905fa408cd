"""The confirmation and welcome emails: one recipient each, so built whole per message.

Templates: `templates/email/confirm/` and `templates/email/welcome/` ({subject.txt, body.txt,
body.html}) over `_base/`, rendered with the digest's Jinja2 environment and inlined by the same
premailer settings (`render.inline_css`). `send_joining_email` is what the Celery task
`worker.tasks.send_joining_email` runs: it checks the subscriber's status again right before
sending, so a suppressed address is never mailed, whatever was queued.
"""

from __future__ import annotations

import logging
import re
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from types import SimpleNamespace

from sqlalchemy import select

from . import headers
from .db import session_scope
from .errors import ConfigError, InputError, PermanentFailure
from .joining import ConfirmLinks
from .message import Identities
from .models import Subscriber
from .models import SubscriberStatus as S
from .ratelimit import RateLimiter
from .render import DARK, FONTS, LIGHT, _environment, inline_css
from .settings import Settings
from .subscriptions import suppress
from .text import clean_line
from .transports import get_transport

log = logging.getLogger(__name__)

# One unfolded List-Unsubscribe line (a folded one breaks one-click; see FIELD-NOTES).
_POLICY = policy.SMTP.clone(max_line_length=998)
KINDS = ("confirm", "welcome")


def links_for(settings: Settings, email: str, nonce: str | None = None) -> dict[str, str]:
    """The URLs an email to `email` carries: manage, unsubscribe and (with a nonce) confirm."""
    ids = Identities(settings)
    base = settings.base_url
    out = {
        "manage_url": f"{base}/manage/{ids.manage_token(email)}",
        "unsubscribe_url": f"{base}/unsubscribe/{ids.unsubscribe_token(email)}",
    }
    if nonce:
        out["confirm_url"] = f"{base}/confirm/{ConfirmLinks(settings).make(email, nonce)}"
    return out


def render_joining(settings: Settings, kind: str, email: str, name: str, links: dict[str, str]) -> tuple[str, str, str]:
    """(subject, html, text) of the `kind` email ("confirm" or "welcome") for one person; the
    HTML has its CSS inlined. Raises jinja2.TemplateNotFound for a missing template."""
    env = _environment(settings.templates_dir)
    first = clean_line(name).split(" ")[0] if clean_line(name) else "there"
    days = settings.confirm_link_days
    context = {
        "list_name": settings.list_name,
        "sender_postal": settings.sender_postal,
        "email": email,
        "greeting": first,
        "link_days": f"{days:g} day" + ("" if days == 1 else "s"),
        "base_url": settings.base_url,
        "base_url_label": re.sub(r"^https?://", "", settings.base_url),
        "web_url": settings.base_url,
        "recipient": SimpleNamespace(
            email=email, greeting=first, unsubscribe_url=links["manage_url"], manage_url=links["manage_url"]
        ),
        "c": LIGHT,
        "d": DARK,
        "fonts": FONTS,
        **links,
    }
    subject = " ".join(env.get_template(f"{kind}/subject.txt").render(context).split())
    context["subject"] = subject
    context["preheader"] = (
        "One click to confirm, and you're in." if kind == "confirm" else "Your subscription is confirmed."
    )
    text = env.get_template(f"{kind}/body.txt").render(context)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    html = inline_css(env.get_template(f"{kind}/body.html").render(context))
    return subject, html, text


def build_joining(settings: Settings, kind: str, email: str, name: str, links: dict[str, str]) -> bytes:
    """The MIME bytes (multipart/alternative, text and HTML) of one confirmation or welcome email.
    The welcome email carries List-Unsubscribe with RFC 8058 one-click; the confirmation email
    does not (nobody is subscribed yet). Raises ConfigError for a bad NEWSLETTER_FROM_ADDR."""
    subject, html, text = render_joining(settings, kind, email, name, links)
    msg = EmailMessage(policy=_POLICY)
    # Text headers folded by worker.headers (encoded-words of at most 75 characters) and set raw:
    # the stdlib would refold them at the policy's 998 columns into one overlong encoded-word.
    sender_name, sender_addr = parseaddr(settings.from_addr)
    try:
        msg.set_raw("From", _value(headers.address_field("From", sender_name, sender_addr)))
    except InputError as exc:
        raise ConfigError(f"NEWSLETTER_FROM_ADDR is not an address: {settings.from_addr!r}") from exc
    msg.set_raw("To", _value(headers.address_field("To", name, email)))
    msg.set_raw("Subject", _value(headers.text_field("Subject", subject)))
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(kind, domain=settings.sender_domain)
    msg["Auto-Submitted"] = "auto-generated"
    if kind == "welcome":
        msg["List-Id"] = f"<{settings.list_id}>"
        msg["List-Unsubscribe"] = f"<{links['unsubscribe_url']}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def _value(folded: str) -> str:
    """A folded `Name: value` field from `worker.headers` as the value `set_raw` takes."""
    return folded.split(": ", 1)[1] + "\r\n"


#: Who may get each kind: a confirmation only while pending or unsubscribed, a welcome only
#: once active. Bounced, complained, suppressed and erased addresses get nothing.
MAILABLE = {"confirm": (S.PENDING, S.UNSUBSCRIBED), "welcome": (S.ACTIVE,)}


def send_joining_email(settings: Settings, kind: str, subscriber_id: int) -> bool:
    """Send one confirmation or welcome email now, if the subscriber may still get it (status
    in MAILABLE, and for a confirmation a live nonce). Returns whether it was sent. A permanent
    refusal of the address (5xx) marks it bounced; temporary ones (TemporaryFailure) propagate
    for the task to retry."""
    if kind not in KINDS:
        raise ValueError(f"unknown joining email {kind!r}")
    with session_scope(settings) as session:
        row = session.execute(
            select(Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.confirm_nonce).where(
                Subscriber.id == subscriber_id
            )
        ).first()
    if row is None or row.status not in MAILABLE[kind] or (kind == "confirm" and not row.confirm_nonce):
        log.info("%s email for subscriber #%s not sent: no longer due", kind, subscriber_id)
        return False
    message = build_joining(settings, kind, row.email, row.name, links_for(settings, row.email, row.confirm_nonce))
    RateLimiter(settings.send_rate, settings.limiter_redis_url).acquire()
    try:
        with get_transport(settings) as transport:
            transport.send(settings.envelope_from, row.email, message)
    except PermanentFailure as exc:
        # A 5xx to the address itself: suppressed like a campaign's hard bounce, never tried again.
        if exc.suppress:
            with session_scope(settings) as session:
                suppress(session, subscriber_id, S.BOUNCED, str(exc))
        log.warning("%s email to subscriber #%s refused for good: %s", kind, subscriber_id, exc)
        return False
    log.info("%s email sent to subscriber #%s", kind, subscriber_id)
    return True
