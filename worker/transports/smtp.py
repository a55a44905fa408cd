"""`smtp://[user:pass@]host[:port][?starttls=auto|require|off]` and `smtps://` (implicit TLS).

One persistent connection, checked with NOOP before reuse after idling, reopened after any
failure. SMTP replies map onto the exception tree: 4xx, a dropped connection or a timeout is
temporary; 5xx is permanent.

Addresses go out in their wire form (`worker.headers.wire_address`): an internationalised
domain in ASCII (IDNA); a local part that is not ASCII only with SMTPUTF8 (RFC 6531), and a
permanent failure for that recipient when the server does not offer it.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import (
    ConfigError,
    DeliveryUncertain,
    InputError,
    PermanentFailure,
    SenderRefused,
    TemporaryFailure,
    Throttled,
)
from ..headers import needs_smtputf8, wire_address
from .base import Transport

log = logging.getLogger(__name__)

IDLE_CHECK_AFTER = 15.0  # seconds; a connection unused for longer gets a NOOP first
_UNSAFE = re.compile(r"[\x00-\x20<>\x7f]")  # anything that could end or split `RCPT TO:<...>`


class SMTPTransport(Transport):
    """Sends over SMTP or SMTPS to the server in `url`, keeping one connection; `timeout` is in
    seconds. Raises ConfigError for a bad port or `starttls` value."""

    def __init__(self, url: str, timeout: float = 30.0, local_hostname: str | None = None):
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        try:
            self.port = parts.port or (465 if self.implicit_tls else 25)
        except ValueError as exc:
            raise ConfigError(f"bad port in mail URL: {exc}") from exc
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        query = parse_qs(parts.query)
        self.starttls = (query.get("starttls", ["auto"])[0]).lower()
        if self.starttls not in ("auto", "require", "off"):
            raise ConfigError("starttls must be auto, require or off")
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._pending: str | None = None  # the recipient whose final reply is still unread
        # False once the server lost an envelope sent behind a final dot (`_stream`): it says
        # PIPELINING but drops what follows the dot, so each message goes on its own from then on.
        self.streams = True

    # -- connection --------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        try:
            if self.implicit_tls:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname, context=context
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
            if conn.ehlo()[0] != 250:
                conn.helo()  # a plain-SMTP server: no extensions, so no STARTTLS and no pipelining
            if not self.implicit_tls and self.starttls != "off":
                if conn.has_extn("starttls"):
                    conn.starttls(context=context)
                    conn.ehlo()
                elif self.starttls == "require":
                    conn.close()
                    raise TemporaryFailure(f"{self.host}:{self.port} does not offer STARTTLS")
            if self.username:
                conn.login(self.username, self.password or "")
            # Pipelined writes go out at once: Nagle's algorithm would hold a short envelope
            # behind the unacknowledged end of the previous message, a round trip per message.
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(f"login refused by {self.host}: {exc.smtp_code}", code=exc.smtp_code) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_CHECK_AFTER and not self.check():
            self._drop()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def check(self) -> bool:
        if self._conn is None:
            return False
        try:
            return self._conn.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _drop(self) -> None:
        self._pending = None
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.finish()  # the last streamed message's verdict, so QUIT does not cut it short
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    # -- sending -----------------------------------------------------------------------------

    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool:
        """MAIL, RCPT, DATA for one recipient. The addresses were validated when they entered
        the system, so they go out as they are (smtplib's sendmail would re-parse both with
        email.utils on every message, a tenth of a millisecond each). They are still checked for
        what would let them end the command line they are written into."""
        if self._pending is not None:
            raise RuntimeError("a streamed message's verdict is pending: finish() comes first")
        envelope_from, recipient = _wire(envelope_from, recipient)
        conn = self._connection()
        options = self._mail_options(conn, envelope_from, recipient, message)
        try:
            if conn.has_extn("pipelining"):
                delivered = self._send_pipelined(conn, envelope_from, recipient, message, confirm, options)
            else:
                delivered = self._send_stepwise(conn, envelope_from, recipient, message, confirm, options)
        except (PermanentFailure, TemporaryFailure, DeliveryUncertain):
            raise
        except smtplib.SMTPResponseException as exc:  # data() raises for a 4xx/5xx after DATA
            raise self._refused(exc.smtp_code, exc.smtp_error, recipient, "data") from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TemporaryFailure(f"connection lost while sending to {recipient}: {exc}") from exc
        self._last_used = time.monotonic()
        return delivered

    def send_streaming(
        self,
        envelope_from: str,
        recipient: str,
        message: bytes,
        begin: Callable[[Exception | None], Callable[[], bool]],
    ) -> bool:
        """RFC 2920 across messages: this message's MAIL/RCPT/DATA go out behind the previous
        message's final dot before that dot's reply is read, and this message's own reply is
        left for the next call (or `finish`). One round trip per message instead of two; the
        previous verdict still reaches `begin` before this message's ledger write is made, so
        the guarantees of `send` hold. Servers without PIPELINING get `send`."""
        began = False

        def go(previous: Exception | None) -> Callable[[], bool]:
            nonlocal began
            began = True
            return begin(previous)

        try:
            return self._stream(envelope_from, recipient, message, go)
        except BaseException as exc:
            if not began:  # nothing of this message went out: the connection is clean
                go(self.finish())
            elif not isinstance(exc, PermanentFailure | TemporaryFailure | DeliveryUncertain):
                # Not the server's answer but ours failing mid-transaction (the ledger write in
                # `begin`): the server may sit in DATA, so the connection is never reused; a
                # reused one would take the next envelope as this message's content.
                self._drop()
            raise

    def _stream(
        self,
        envelope_from: str,
        recipient: str,
        message: bytes,
        begin: Callable[[Exception | None], Callable[[], bool]],
    ) -> bool:
        sender, rcpt = _wire(envelope_from, recipient)
        conn = self._conn if self._pending is not None and self._conn is not None else self._connection()
        options = self._mail_options(conn, sender, rcpt, message)
        if not conn.has_extn("pipelining") or not self.streams:
            return self.send(envelope_from, recipient, message, confirm=begin(self.finish()))
        behind_a_dot = self._pending is not None
        try:
            conn.send(f"MAIL FROM:<{sender}>{options}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        except OSError as exc:
            previous = self.finish()
            begin(previous)  # its write records the previous verdict; this one fails below
            self._drop()
            raise _unanswered(previous, f"connection lost while sending to {rcpt}: {exc}") from exc
        body = _dot_stuffed(message)  # while the server answers
        previous = self.finish()  # the previous message's reply came back with this envelope's
        ours = begin(previous)
        if self._conn is None:  # that reply broke the connection: this envelope went with it
            raise _unanswered(previous, f"connection lost before the envelope for {rcpt} was answered")
        try:
            try:
                mail = conn.getreply()
            except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
                if behind_a_dot and _timed_out(exc):
                    # The dot was answered, the envelope behind it never: a server that discards
                    # input after a dot would cost a timeout (and an attempt) every other message.
                    self.streams = False
                    log.warning("%s lost an envelope sent behind a final dot: no more streaming to it", self.host)
                raise
            to, data = conn.getreply(), conn.getreply()
            self._envelope_verdict(conn, mail, to, data, rcpt)
            if not self._confirmed(ours):
                self._drop()  # inside DATA there is no clean way back (see _send_pipelined)
                return False
            conn.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        except (PermanentFailure, TemporaryFailure):
            raise
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TemporaryFailure(f"connection lost while sending to {rcpt}: {exc}") from exc
        self._pending = rcpt
        self._last_used = time.monotonic()
        return True

    def finish(self) -> Exception | None:
        recipient, self._pending = self._pending, None
        if recipient is None or self._conn is None:
            return None
        return self._verdict(self._conn, recipient)

    def _verdict(self, conn: smtplib.SMTP, recipient: str) -> Exception | None:
        """Read the reply to a final dot: None when the message was accepted, else the
        exception it failed with.

        A server that stays silent past the timeout after the final dot may well have taken the
        message (RFC 1047 is about exactly this): DeliveryUncertain, reported and never resent by
        itself. A connection closed instead is retried, as Postfix does ("message may be sent
        more than once"): servers close mid-DATA, before the dot arrives, far more often than
        between accepting a message and saying so. No RSET here: with pipelining the next
        envelope may already be on its way."""
        if conn.sock is None:
            # smtplib closed the connection itself when a write failed (the next pipelined
            # envelope hit a reset): the reply went with it, and `getreply` on a closed
            # connection is an AttributeError, which would pass for no verdict at all.
            self._drop()
            return TemporaryFailure(f"connection lost after the content for {recipient}")
        try:
            code, resp = conn.getreply()
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            if _timed_out(exc):
                return DeliveryUncertain(
                    f"no reply from {self.host} within {self.timeout:.0f} s of the content for {recipient}"
                )
            return TemporaryFailure(f"connection lost after the content for {recipient}: {exc}")
        self._last_used = time.monotonic()
        if code == 250:
            return None
        if code == 421:
            self._drop()
        return _classify(code, resp, recipient, "data")

    @staticmethod
    def _mail_options(conn: smtplib.SMTP, envelope_from: str, recipient: str, message: bytes) -> str:
        """ " SMTPUTF8 BODY=8BITMIME" when an address is not ASCII (RFC 6531), else "". Raises
        PermanentFailure (the address is not held against the subscriber) when the server does
        not offer SMTPUTF8: nothing was sent."""
        if not (needs_smtputf8(recipient) or needs_smtputf8(envelope_from)):
            return ""
        if not conn.has_extn("smtputf8"):
            raise PermanentFailure(
                f"{recipient}: the part before the @ is not ASCII and the server does not offer SMTPUTF8 "
                "(RFC 6531), so it cannot be addressed",
                suppress=False,
            )
        conn.command_encoding = "utf-8"
        return " SMTPUTF8" + (" BODY=8BITMIME" if conn.has_extn("8bitmime") and not message.isascii() else "")

    def _send_stepwise(
        self,
        conn: smtplib.SMTP,
        envelope_from: str,
        recipient: str,
        message: bytes,
        confirm: Callable[[], bool] | None,
        options: str = "",
    ) -> bool:
        code, resp = conn.docmd("mail", f"FROM:<{envelope_from}>{options}")
        if code != 250:
            raise self._refused(code, resp, recipient, "mail")
        code, resp = conn.docmd("rcpt", f"TO:<{recipient}>")
        if code not in (250, 251):
            raise self._refused(code, resp, recipient, "rcpt")
        if not self._confirmed(confirm):
            conn.rset()
            return False
        code, resp = conn.docmd("data")
        if code != 354:
            raise self._refused(code, resp, recipient, "data")
        return self._send_content(conn, _dot_stuffed(message), recipient)

    def _send_pipelined(
        self,
        conn: smtplib.SMTP,
        envelope_from: str,
        recipient: str,
        message: bytes,
        confirm: Callable[[], bool] | None,
        options: str = "",
    ) -> bool:
        """RFC 2920: MAIL, RCPT and DATA in one write, then their three replies in order: two
        round trips a message instead of four."""
        conn.send(f"MAIL FROM:<{envelope_from}>{options}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        body = _dot_stuffed(message)  # while the server answers
        mail, rcpt, data = conn.getreply(), conn.getreply(), conn.getreply()
        self._envelope_verdict(conn, mail, rcpt, data, recipient)
        if not self._confirmed(confirm):
            # Inside DATA there is no clean way back; a connection closed before the final dot
            # delivers nothing (RFC 5321 4.1.1.4), and the next message opens a new one.
            self._drop()
            return False
        return self._send_content(conn, body, recipient)

    def _envelope_verdict(
        self,
        conn: smtplib.SMTP,
        mail: tuple[int, bytes],
        rcpt: tuple[int, bytes],
        data: tuple[int, bytes],
        recipient: str,
    ) -> None:
        """Raise for a pipelined envelope the server refused (MAIL, RCPT, then DATA's 354)."""
        failed = next(
            ((r, stage) for r, ok, stage in ((mail, (250,), "mail"), (rcpt, (250, 251), "rcpt")) if r[0] not in ok),
            None,
        )
        if failed is not None:
            if data[0] == 354:
                # A server that opened DATA with no recipient: end it empty; it must refuse that.
                conn.send(b".\r\n")
                conn.getreply()
            (code, resp), stage = failed
            raise self._refused(code, resp, recipient, stage)
        if data[0] != 354:
            raise self._refused(data[0], data[1], recipient, "data")

    def _send_content(self, conn: smtplib.SMTP, body: bytes, recipient: str) -> bool:
        """The dot-stuffed content and the final dot, then the server's verdict (`_verdict`)."""
        conn.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        failure = self._verdict(conn, recipient)
        if failure is not None:
            if self._conn is not None:
                self._rset()  # a refusal leaves the connection usable once reset
            raise failure
        return True

    def _confirmed(self, confirm: Callable[[], bool] | None) -> bool:
        """The caller's go-ahead; whatever it raises leaves a transaction half-open, so the
        connection goes with it."""
        if confirm is None:
            return True
        try:
            return confirm()
        except BaseException:
            self._drop()
            raise

    def _refused(self, code: int, resp: bytes | str, recipient: str, stage: str) -> Exception:
        """Reset the transaction so the connection can carry the next message; a server that
        said 421 (closing) or broke off leaves nothing to reuse."""
        if code == 421:
            self._drop()
        else:
            self._rset()
        self._last_used = time.monotonic()
        return _classify(code, resp, recipient, stage)

    def _rset(self) -> None:
        """RSET, so the connection can carry the next message; dropped if even that fails."""
        try:
            if conn := self._conn:
                conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()


def _wire(envelope_from: str, recipient: str) -> tuple[str, str]:
    """Both addresses in their wire form, refused when they could end the command line they are
    written into: ConfigError for our sender, PermanentFailure for a recipient."""
    if _UNSAFE.search(envelope_from):
        raise ConfigError(f"the envelope sender {envelope_from!r} is not a plain address")
    if _UNSAFE.search(recipient):
        raise PermanentFailure(f"not a plain address: {recipient!r}", suppress=True)
    try:
        return wire_address(envelope_from), wire_address(recipient)
    except InputError as exc:
        raise PermanentFailure(f"cannot address {recipient!r}: {exc}", suppress=False) from None


def _timed_out(exc: BaseException) -> bool:
    """A read timeout (smtplib reports one as SMTPServerDisconnected raised from TimeoutError)."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _unanswered(previous: Exception | None, why: str) -> TemporaryFailure:
    """The failure of a pipelined envelope the server never answered because the connection went
    with the previous message's verdict: Throttled when that verdict was (a 421 "rate" closes the
    connection), so this message too waits out the pause without spending an attempt; it was
    never judged."""
    if isinstance(previous, Throttled):
        return Throttled(f"{why} ({previous})", code=previous.code, retry_after=previous.retry_after)
    return TemporaryFailure(why)


def _dot_stuffed(message: bytes) -> bytes:
    """RFC 5321 4.5.2: a line that starts with a dot gets another. (`bytes.replace`: a
    multi-line regex took ~0.1 ms over a 19 KB message, the largest CPU cost of a send.)"""
    stuffed = message.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


# Enhanced status codes (RFC 3463) that say the mailbox itself is bad: 5.1.x addressing,
# 5.2.1 mailbox disabled.
_MAILBOX_STATUS = re.compile(r"^\s*5\.(?:1\.\d+|2\.1)\b")


# How servers say "too fast" (Gmail 421 4.7.28 "unusual rate", Outlook 451 4.7.500 "throttled",
# Yahoo 421 4.7.0 "[TS01] Messages from x temporarily deferred due to user complaints" is not
# one — that is reputation, retried as usual).
_RATE_WORDS = re.compile(r"\brate\b|rate.?limit|too many|throttl|slow down|quota|4\.7\.28", re.I)


def _classify(code: int | None, response: bytes | str, recipient: str, stage: str) -> Exception:
    """4xx is temporary. 5xx depends on the stage: refusing the *sender* (MAIL) is about our
    configuration, never a reason to suppress a subscriber, so it is retried like a 4xx (and shows
    up in the log); refusing the recipient (RCPT) suppresses the address; refusing the content
    (end of DATA: size, spam) fails this delivery but keeps the address, unless the enhanced status
    says the mailbox is bad."""
    text = response.decode("utf-8", "replace") if isinstance(response, bytes) else str(response)
    message = f"{code} {text}".strip() + f" ({recipient})"
    if code in (421, 451, 454) and _RATE_WORDS.search(text):
        # The server asks us to slow down: every worker pauses (the shared limiter), no attempt spent.
        return Throttled(message, code=code)
    if code is None or not 500 <= code < 600:
        return TemporaryFailure(message, code=code)
    if stage == "mail":
        return SenderRefused(f"the server refused the sender: {message}", code=code)
    suppress = stage == "rcpt" or bool(_MAILBOX_STATUS.match(text))
    return PermanentFailure(message, code=code, suppress=suppress)
