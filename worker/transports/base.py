"""The transport interface: open once, send many prebuilt messages, close."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable


class Transport(abc.ABC):
    """Sends one message to one recipient at a time, so every outcome maps to one ledger row.

    `send` returns True once the message is delivered, and raises `TemporaryFailure` (try later)
    or `PermanentFailure` (never again); anything else it raises is a bug, or comes from
    `confirm`. Implementations keep their connection between calls.

    `confirm`, when given, is called exactly once after the server has accepted the envelope and
    before any of the content leaves, and not at all when the envelope is refused. If it returns
    False the transaction is abandoned with nothing delivered and `send` returns False. The
    sender uses it to wait for its own ledger write while the envelope is on the wire.

    Errors (worker/errors.py): `Throttled` (slow down, nothing sent, not an attempt),
    `TemporaryFailure`, `RecipientRejected` / `MessageRejected` (both `PermanentFailure`), and
    `TransportConfigError` (nothing can be sent as configured: the campaign pauses), and
    `DeliveryUncertain` (sent, no answer: the row becomes 'uncertain', never resent by itself).

    A transport whose provider names each accepted message (SES, Postmark, Mailgun) records that
    id with `_accepted(id)`; the sender reads `provider_message_id` right after `send` returns, in
    the same thread, and stores it on the delivery row."""

    _ids = threading.local()

    @property
    def provider_message_id(self) -> str | None:
        """The provider's id for the message this thread last sent through this transport."""
        return getattr(self._ids, str(id(self)), None)

    def _accepted(self, provider_id: str | None) -> None:
        setattr(self._ids, str(id(self)), provider_id)

    @abc.abstractmethod
    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool: ...

    def send_streaming(
        self,
        envelope_from: str,
        recipient: str,
        message: bytes,
        begin: Callable[[Exception | None], Callable[[], bool]],
    ) -> bool:
        """`send` for a stream of messages, where a transport may hand a message over and learn
        the server's verdict only during the next call (or `finish`), so a session waits one
        round trip per message instead of two (SMTP: RFC 2920 pipelining across messages).

        `begin(previous)` is called exactly once per call, before anything of this message but
        its envelope has left and before any exception for it: `previous` is the verdict on the
        message handed over before (None: accepted, else the exception it failed with, as `send`
        raises them; None too when there was none). It returns the `confirm` callable for this
        message. Returns True once the message is handed over (its verdict follows later),
        False as `send` does. This default is `send` itself, with nothing left pending."""
        return self.send(envelope_from, recipient, message, confirm=begin(self.finish()))

    def finish(self) -> Exception | None:
        """The verdict on the message `send_streaming` handed over last, if it is still pending
        (None: accepted, or nothing pending). Reads it; the stream is then empty."""
        return None

    def check(self) -> bool:
        """Is the connection still usable? (Cheap: called before reuse after idling.)"""
        return True

    def close(self) -> None:  # noqa: B027 - optional for transports without a connection
        pass

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
