"""Read returned mail from NEWSLETTER_BOUNCE_MAILBOX and record what it reports.

- `imaps://user:pass@host[:port]/FOLDER` or `imap://…` (IMAP4rev1, RFC 3501): unseen messages,
  each marked \\Seen and \\Deleted once recorded, expunged at the end;
- `pop3s://user:pass@host[:port]` or `pop3://…` (POP3, RFC 1939): every message, deleted once
  recorded;
- `maildir:PATH`: messages in new/ and unflagged ones in cur/, moved to cur/ with the S (seen)
  flag once recorded.

A message is removed or flagged only after its reports are committed; one that fails to parse
is left where it is and logged. Recording is idempotent, so reading a message twice is harmless.
"""

from __future__ import annotations

import imaplib
import logging
import mailbox as stdlib_mailbox
import poplib
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..db import session_scope
from ..errors import ConfigError, TemporaryFailure
from ..settings import Settings
from .dsn import parse_returned
from .events import record
from .verp import verp_for

log = logging.getLogger(__name__)
TIMEOUT = 30.0


@dataclass
class PollResult:
    """What one mailbox poll did: messages read, bounce reports found in them, reports recorded
    and how many had each effect."""

    messages: int = 0
    reports: int = 0
    recorded: int = 0
    effects: dict[str, int] = field(default_factory=dict)


def poll_mailbox(settings: Settings, limit: int = 1000) -> PollResult:
    """One pass over the bounce mailbox (up to `limit` messages). Raises ConfigError for an
    unusable URL and TemporaryFailure when the server cannot be reached or refuses the login."""
    url = settings.bounce_mailbox
    if not url:
        raise ConfigError("NEWSLETTER_BOUNCE_MAILBOX is not set")
    scheme = url.split(":", 1)[0].lower()
    result = PollResult()
    handle = _Handler(settings, result)
    if scheme == "maildir":
        _maildir(settings.path(url.split(":", 1)[1]), handle, limit)
    elif scheme in ("imap", "imaps"):
        _imap(url, handle, limit)
    elif scheme in ("pop3", "pop3s"):
        _pop3(url, handle, limit)
    else:
        raise ConfigError(
            f"NEWSLETTER_BOUNCE_MAILBOX: use imaps://, imap://, pop3s://, pop3:// or maildir:, not {scheme}:"
        )
    return result


class _Handler:
    def __init__(self, settings: Settings, result: PollResult):
        self.settings, self.result, self.verp = settings, result, verp_for(settings)

    def __call__(self, raw: bytes) -> bool:
        """Record one message; True when it may be removed."""
        self.result.messages += 1
        try:
            reports = parse_returned(raw, self.settings, self.verp)
        except Exception as exc:  # noqa: BLE001 - one odd message must not stop the pass
            log.warning("bounce mailbox: a message could not be read (%s); left in place", exc)
            return False
        with session_scope(self.settings) as session:
            for report in reports:
                done = record(session, report, self.settings)
                self.result.reports += 1
                if not done.duplicate:
                    self.result.recorded += 1
                    self.result.effects[done.effect] = self.result.effects.get(done.effect, 0) + 1
        return True


def _credentials(url: str) -> tuple[str, int | None, str, str, str]:
    parts = urlsplit(url)
    if not parts.hostname or not parts.username:
        raise ConfigError("NEWSLETTER_BOUNCE_MAILBOX needs user:password@host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"NEWSLETTER_BOUNCE_MAILBOX: bad port ({exc})") from exc
    return (
        parts.hostname,
        port,
        unquote(parts.username),
        unquote(parts.password or ""),
        unquote(parts.path.lstrip("/")) or "INBOX",
    )


def _imap(url: str, handle: _Handler, limit: int) -> None:
    host, port, user, password, folder = _credentials(url)
    secure = url.lower().startswith("imaps")
    try:
        conn = (
            imaplib.IMAP4_SSL(host, port or 993, timeout=TIMEOUT)
            if secure
            else imaplib.IMAP4(host, port or 143, timeout=TIMEOUT)
        )
        conn.login(user, password)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise TemporaryFailure(f"bounce mailbox {host}: {exc}") from exc
    try:
        status, _ = conn.select(f'"{folder}"')
        if status != "OK":
            raise ConfigError(f"bounce mailbox: no folder {folder!r}")
        _, found = conn.search(None, "UNSEEN")
        numbers = (found[0] or b"").split()[:limit]
        done = []
        for num in numbers:
            status, data = conn.fetch(num.decode(), "(BODY.PEEK[])")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if status == "OK" and raw and handle(raw):
                done.append(num)
        for num in done:
            conn.store(num.decode(), "+FLAGS", "(\\Seen \\Deleted)")
        if done:
            conn.expunge()
    finally:
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _pop3(url: str, handle: _Handler, limit: int) -> None:
    host, port, user, password, _ = _credentials(url)
    secure = url.lower().startswith("pop3s")
    try:
        conn = (
            poplib.POP3_SSL(host, port or 995, timeout=TIMEOUT)
            if secure
            else poplib.POP3(host, port or 110, timeout=TIMEOUT)
        )
        conn.user(user)
        conn.pass_(password)
    except (OSError, poplib.error_proto) as exc:
        raise TemporaryFailure(f"bounce mailbox {host}: {exc}") from exc
    try:
        count, _ = conn.stat()
        for num in range(1, min(count, limit) + 1):
            _, lines, _ = conn.retr(num)
            if handle(b"\r\n".join(lines) + b"\r\n"):
                conn.dele(num)
    finally:
        conn.quit()  # deletions take effect only on QUIT (RFC 1939 UPDATE state)


def _maildir(path, handle: _Handler, limit: int) -> None:  # noqa: ANN001
    if not (path / "new").is_dir() and not (path / "cur").is_dir():
        raise ConfigError(f"NEWSLETTER_BOUNCE_MAILBOX: {path} is not a Maildir")
    box = stdlib_mailbox.Maildir(str(path), factory=None, create=False)
    for key in list(box.keys())[:limit]:
        msg = box.get_message(key)
        if "S" in msg.get_flags():
            continue
        if handle(box.get_bytes(key)):
            msg.set_subdir("cur")
            msg.add_flag("S")
            box[key] = msg
